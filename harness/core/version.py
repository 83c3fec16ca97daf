"""The package's version (pyproject.toml's ``project.version`` says the same; a test checks it)."""

__version__ = "0.1.0"

"""Where a result row came from: the code state that produced it.

Rows record the commit of the harness checkout and whether its tracked source differed from it.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def git_commit() -> str | None:
    """Short commit of the harness checkout, with ``+dirty`` when tracked files differ from it."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True,
            timeout=5,
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "harness"],
            cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=5,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None

"""Where a result row came from: the code that produced it, the libraries, the machine, the heap.

A row's ``code`` says the commit of the harness checkout (``commit``), whether its source under
``harness/`` differed from that commit (``dirty``: tracked files modified, or untracked ones added), a
content hash of every ``harness/**/*.py`` file (``source``) and, for the job's own code, a hash per
file (``files``, path -> 12 hex digits of its SHA-256) of the modules that make its numbers: the model's
module, the task's module and the training step and loop, each with every harness module it imports
(at module level or inside a function), transitively. Two rows' ``files`` tell whether two arms of a
comparison ran the same code for what they share (:func:`code_differences`), whatever the commits.

Nothing here imports torch; the import graph is read from the source with ``ast``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # harness/
PACKAGE_ROOT = PACKAGE_DIR.parent
# the numeric libraries whose versions a row records (distribution names)
LIBRARIES = ("torch", "numpy", "scipy", "scikit-learn", "scikit-image", "pycocotools", "fvcore")
# the modules of the training step and loop, whose closure every training or profile row depends on
STEP_MODULES = ("harness.run.train", "harness.run.execute")


def module_path(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of a harness module (``harness.x.y``), or None when there is none."""
    parts = module.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.Module) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every absolute import statement of a parsed module, wherever it sits
    (module level, inside a function, under ``TYPE_CHECKING``)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
    return out


def harness_deps(module: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The harness modules ``module`` imports directly (``from harness.x import y`` counts
    ``harness.x.y`` when that is a module, else ``harness.x``)."""
    path = module_path(module, package_dir)
    if path is None:
        return set()
    deps = set()
    for target, names, _ in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
        if target != "harness" and not target.startswith("harness."):
            continue
        for t in [target, *(f"{target}.{n}" for n in names)]:
            if t != "harness" and module_path(t, package_dir) is not None:
                deps.add(t)
    return deps


def closure(modules: Iterable[str], package_dir: Path = PACKAGE_DIR) -> set[str]:
    """``modules`` and every harness module they import, transitively (with each package's __init__)."""
    seen: set[str] = set()
    todo = [m for m in modules if module_path(m, package_dir) is not None]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parents = [".".join(m.split(".")[:i]) for i in range(2, len(m.split(".")))]
        todo += [d for d in [*harness_deps(m, package_dir), *parents] if d not in seen]
    return seen


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@functools.cache
def _files_of(modules: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for m in sorted(closure(modules)):
        path = module_path(m)
        if path is not None:
            out[path.relative_to(PACKAGE_ROOT).as_posix()] = file_hash(path)
    return out


def code_files(modules: Iterable[str]) -> dict[str, str]:
    """Path (from the repository root) -> hash of every file in the closure of ``modules``."""
    return dict(_files_of(tuple(sorted(set(modules)))))


@functools.cache
def source_hash() -> str:
    """One hash over every ``harness/**/*.py`` file, path and content."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.cache
def git_state() -> tuple[str | None, list[str]]:
    """(short commit of the checkout or None outside git, the files under harness/ that differ from it:
    modified, added, deleted or untracked and not ignored)."""
    sha = _git("rev-parse", "--short=12", "HEAD")
    if sha is None:
        return None, []
    status = _git("status", "--porcelain", "--untracked-files=all", "--", "harness") or ""
    changed = [line[3:].strip() for line in status.splitlines() if line.strip()]
    return sha.strip(), changed


def tracked_by_git(path: Path) -> bool:
    """Whether git tracks any file under ``path`` in the harness checkout (committed results)."""
    try:
        rel = Path(path).resolve().relative_to(PACKAGE_ROOT)
    except ValueError:
        return False
    return bool((_git("ls-files", "--", rel.as_posix() or ".") or "").strip())


def git_commit() -> str | None:
    """Short commit of the harness checkout, with ``+dirty`` when its source differs from it."""
    sha, changed = git_state()
    return None if sha is None else sha + ("+dirty" if changed else "")


def code_state(modules: Iterable[str] = ()) -> dict[str, Any]:
    """A row's ``code`` (module docstring): commit, dirty, source hash, and the files of ``modules``."""
    sha, changed = git_state()
    return {"commit": sha, "dirty": bool(changed), "source": source_hash(),
            "files": code_files([*modules, *STEP_MODULES])}


@functools.cache
def library_versions() -> dict[str, str | None]:
    """Installed versions of :data:`LIBRARIES` (None where one is not installed)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_differences(rows: Iterable[Any]) -> dict[str, Any]:
    """Whether ``rows`` (the arms of a comparison) ran the same code for everything they share.

    Returns ``{"unknown": n, "files": [paths]}``: ``unknown`` counts rows whose code is not known file by
    file (produced from a dirty tree, or before rows recorded it); ``files`` lists the files that two
    rows both depend on but hold in different versions. Both empty: the same code."""
    unknown = 0
    versions: dict[str, set[str]] = {}
    for row in rows:
        code = row.get("code") if isinstance(row, Mapping) else getattr(row, "code", None)
        files = code.get("files") if isinstance(code, Mapping) else None
        if not isinstance(code, Mapping) or not isinstance(files, Mapping) or code.get("dirty"):
            unknown += 1
            continue
        for path, digest in files.items():
            versions.setdefault(path, set()).add(digest)
    return {"unknown": unknown, "files": sorted(p for p, v in versions.items() if len(v) > 1)}


__all__ = ["LIBRARIES", "STEP_MODULES", "closure", "code_differences", "code_files", "code_state",
           "git_commit", "git_state", "harness_deps", "imported_modules", "library_versions", "module_path",
           "source_hash", "tracked_by_git"]

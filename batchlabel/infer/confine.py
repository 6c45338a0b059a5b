"""Keeping file access inside the document root: the one path-confinement check of batchlabel.

Label Studio serves ``storage.root`` to annotators, so a file batchlabel reads for a task must resolve (symlinks
followed) to a file inside that root; a symlink pointing elsewhere (``passwd.jpg -> /etc/passwd``) is refused, by
``serve``, ingestion (``run``/``watch``), ``encode``, ``check`` and ``build-dataset`` alike. Messages name the link,
never anything read from the file.

Two entry points:
- :func:`confine_relative`: a relative POSIX path *given by someone else* (a task URL's ``d`` parameter, already
  decoded exactly once): lexical checks (NUL, backslash, absolute, drive letter, ``..``), then :func:`confine_path`.
- :func:`confine_path`: a path found on disk under the root (discovery, encode): resolve and check containment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

_DRIVE = re.compile(r"^[A-Za-z]:")


class PathConfinementError(Exception):
    """A path that must not be read. ``reason`` is one line; ``outside`` is True when it (could) leave the root,
    False when it is merely malformed or missing (``missing`` True for a path that does not exist)."""

    def __init__(self, path: str | os.PathLike[str], reason: str, *, outside: bool, missing: bool = False) -> None:
        self.path = str(path)
        self.reason = reason
        self.outside = outside
        self.missing = missing
        super().__init__(f"{self.path}: {reason}")


def confine_path(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """``path`` resolved (symlinks followed), when it is an existing regular file inside ``root`` (also resolved).

    Raises :class:`PathConfinementError`: ``outside`` when the real path leaves ``root`` (a symlink out, a loop),
    ``missing`` when it does not exist, neither when it is not a regular file.
    """
    root_resolved = Path(root).resolve()
    candidate = Path(path)
    try:
        resolved = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise PathConfinementError(path, "does not exist (or is a dangling symlink)", outside=False,
                                   missing=True) from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on Python < 3.13
        raise PathConfinementError(path, f"cannot resolve the path ({exc.__class__.__name__})", outside=True) from None
    if not resolved.is_relative_to(root_resolved):
        what = "a symlink resolving" if candidate.is_symlink() or resolved != candidate.absolute() else "a path"
        raise PathConfinementError(path, f"{what} outside the document root {root_resolved}; refused", outside=True)
    if not resolved.is_file():
        raise PathConfinementError(path, "is not a regular file", outside=False)
    return resolved


def confine_relative(relative: str, root: str | os.PathLike[str]) -> Path:
    """The file ``root / relative`` for a relative POSIX path from outside (decoded once), confined to ``root``.

    Raises :class:`PathConfinementError` (``outside`` for NUL bytes, backslashes, absolute paths, drive letters and
    ``..``, which could leave the root on some layer; then as :func:`confine_path`).
    """
    if not relative:
        raise PathConfinementError(relative, "empty path", outside=False)
    for bad, reason in (("\x00", "NUL byte in path"), ("\\", "backslash in path")):
        if bad in relative:
            raise PathConfinementError(relative, reason, outside=True)
    if relative.startswith(("/", "~")) or _DRIVE.match(relative):
        raise PathConfinementError(relative, "absolute path", outside=True)
    parts = PurePosixPath(relative).parts
    if any(part == ".." for part in parts):
        raise PathConfinementError(relative, "'..' in path", outside=True)
    return confine_path(Path(root).resolve().joinpath(*parts), root)

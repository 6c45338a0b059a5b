"""A task's image URL -> where its bytes come from, with the defences a network-facing backend needs.

Three kinds of URL are accepted:
- ``/data/local-files/?d=<path>`` (with or without Label Studio's scheme and host): read from disk **under the
  document root only** (``config.storage.root``, the same folder Label Studio serves). ``..`` components, absolute
  paths, drive letters, backslashes, NUL bytes, percent-encoded traversal left after Label Studio's single decode,
  and symlinks resolving outside the root are refused with :class:`ImageSourceError` (403) and logged.
- ``/data/upload/...``: a file uploaded to Label Studio, fetched from ``config.label_studio.url`` with the API key.
- ``http(s)://...`` elsewhere: refused unless ``serve.allow_remote_urls``.

Nothing here decodes images; :mod:`batchlabel.serve.embedding_lookup` does, once per image content.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from batchlabel.sync.client import local_files_values

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "/data/upload/"
#: Percent-encoded dot, slash, backslash or percent left after the one decode Label Studio applies: a double-encoded
#: traversal attempt (no real file name of a labeling project looks like this).
_ENCODED_TRAVERSAL = re.compile(r"%(2e|2f|5c|25|00)", re.IGNORECASE)
_DRIVE = re.compile(r"^[A-Za-z]:")


class ImageSourceError(Exception):
    """A task's image cannot be used. ``status_code`` is the HTTP status to answer with (4xx, or 502 upstream)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class LocalImage:
    """An image file under the document root. ``path`` is resolved (symlinks followed) and inside ``root``."""

    path: Path
    relative: str


@dataclass(frozen=True)
class RemoteImage:
    """An image fetched over HTTP: ``url`` absolute; ``label_studio`` True when the API key must be sent."""

    url: str
    label_studio: bool


ImageSource = LocalImage | RemoteImage


def _refuse(url: str, reason: str, *, status_code: int = 403) -> ImageSourceError:
    log.warning("image refused reason=%r url=%r", reason, url[:300])
    return ImageSourceError(status_code, f"image URL {url[:200]!r} refused: {reason}")


def resolve_local_path(relative: str, root: Path, *, url: str | None = None) -> LocalImage:
    """Resolve the already-decoded ``d`` parameter of a local-files URL to an existing file inside ``root``.

    Raises :class:`ImageSourceError`: 403 for anything that could leave ``root`` (checked both lexically and after
    resolving symlinks), 404 when the file does not exist.
    """
    shown = url if url is not None else relative
    if not relative:
        raise _refuse(shown, "empty path", status_code=400)
    if "\x00" in relative:
        raise _refuse(shown, "NUL byte in path")
    if "\\" in relative:
        raise _refuse(shown, "backslash in path")
    if _ENCODED_TRAVERSAL.search(relative):
        raise _refuse(shown, "percent-encoded characters left in path (double encoding)")
    if relative.startswith("/") or relative.startswith("~") or _DRIVE.match(relative):
        raise _refuse(shown, "absolute path")
    parts = PurePosixPath(relative).parts
    if any(part == ".." for part in parts):
        raise _refuse(shown, "'..' in path")
    root_resolved = root.resolve()
    candidate = root_resolved.joinpath(*parts)
    try:
        resolved = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise ImageSourceError(404, f"image {relative!r} not found under the document root") from None
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on Python < 3.13
        raise _refuse(shown, f"cannot resolve path ({exc.__class__.__name__})") from None
    if not resolved.is_relative_to(root_resolved):
        raise _refuse(shown, "resolves outside the document root (symlink)")
    if not resolved.is_file():
        raise ImageSourceError(404, f"image {relative!r} is not a file under the document root")
    return LocalImage(path=resolved, relative=relative)


def resolve_image_url(
    url: object,
    *,
    root: Path,
    label_studio_url: str | None,
    allow_remote_urls: bool,
) -> ImageSource:
    """Classify and check a task's image URL (see the module docstring). Raises :class:`ImageSourceError`."""
    if not isinstance(url, str) or not url.strip():
        raise ImageSourceError(400, f"the task's image must be a URL string, got {url!r:.100}")
    url = url.strip()
    if url.startswith("data:"):
        raise _refuse(url, "inline data: URLs are not supported; use local files or uploads", status_code=400)
    parts = urlsplit(url)
    if parts.scheme not in ("", "http", "https"):
        raise _refuse(url, f"unsupported scheme {parts.scheme!r}", status_code=400)
    values = local_files_values(url)
    if values is not None:
        if len(values) != 1:
            raise _refuse(url, "expected exactly one 'd' query parameter", status_code=400)
        return resolve_local_path(values[0], root, url=url)
    if parts.path.startswith(UPLOAD_PREFIX):
        if label_studio_url is None:
            raise _refuse(url, "uploaded files need label_studio.url to fetch from", status_code=400)
        if ".." in PurePosixPath(parts.path).parts or _ENCODED_TRAVERSAL.search(parts.path):
            raise _refuse(url, "'..' in upload path")
        base = label_studio_url.rstrip("/")
        return RemoteImage(url=f"{base}{parts.path}", label_studio=True)
    if parts.scheme in ("http", "https"):
        if not allow_remote_urls:
            raise _refuse(url, "remote image URLs are disabled (set serve.allow_remote_urls: true to allow them)")
        if not parts.netloc:
            raise _refuse(url, "URL without a host", status_code=400)
        return RemoteImage(url=url, label_studio=False)
    raise _refuse(url, "expected /data/local-files/?d=..., /data/upload/... or an http(s) URL", status_code=400)

"""A task's image URL -> where its bytes come from, with the defences a network-facing backend needs.

Three kinds of URL are accepted:
- ``/data/local-files/?d=<path>`` (with or without Label Studio's scheme and host): read from disk **under the
  document root only** (``config.storage.root``, the same folder Label Studio serves). The ``d`` value is decoded
  once and checked by :mod:`batchlabel.infer.confine` (the check ingestion, encode, check and build-dataset share):
  ``..`` components, absolute paths, drive letters, backslashes, NUL bytes and symlinks resolving outside the root
  are refused with :class:`ImageSourceError` (403) and logged; a name that merely contains ``%2e`` is a name.
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

from batchlabel.infer.confine import PathConfinementError, confine_relative
from batchlabel.sync.client import local_files_values

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "/data/upload/"
#: Percent-encoded dot, slash, backslash or percent in an upload path, which Label Studio decodes again when
#: forwarded: a double-encoded traversal attempt.
_ENCODED_TRAVERSAL = re.compile(r"%(2e|2f|5c|25|00)", re.IGNORECASE)


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

    The path is decoded exactly once (by the URL parser): a file really named ``lit%2e%2e.jpg`` is served, and the
    decoded path is checked by :func:`batchlabel.infer.confine.confine_relative` (lexically and after resolving
    symlinks). Raises :class:`ImageSourceError`: 403 for anything that could leave ``root``, 404 when the file does
    not exist, 400 for an empty path.
    """
    shown = url if url is not None else relative
    try:
        path = confine_relative(relative, root)
    except PathConfinementError as exc:
        if exc.outside:
            raise _refuse(shown, exc.reason) from None
        if not relative:
            raise _refuse(shown, exc.reason, status_code=400) from None
        raise ImageSourceError(404, f"image {relative!r} not found under the document root ({exc.reason})") from None
    return LocalImage(path=path, relative=relative)


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

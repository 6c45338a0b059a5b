"""Fetch image bytes over HTTP: files uploaded to Label Studio (with the API key) and, when enabled, remote URLs.

Label Studio API keys come in two kinds (see ``docs/serve.md``): a legacy token, sent as ``Authorization: Token X``,
and a personal access token (a JWT refresh token), exchanged at ``/api/token/refresh/`` for a short-lived access
token sent as ``Authorization: Bearer A``. The access token is cached until shortly before it expires.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from batchlabel.serve.sources import ImageSourceError, RemoteImage

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 256 * 2**20  # in bytes; larger downloads are refused (decompression bombs are checked on decode)
ACCESS_TOKEN_TTL_S = 240.0  # Label Studio access tokens live 5 minutes; refresh a minute early


def _is_personal_access_token(key: str) -> bool:
    """A PAT is a JWT: three base64url segments separated by dots. Legacy tokens are 40 hex characters."""
    return key.count(".") == 2 and len(key) > 40


class ImageFetcher:
    """Downloads image bytes with bounded size and time. Thread-safe; one pooled ``httpx.Client``."""

    def __init__(
        self,
        *,
        label_studio_url: str | None,
        api_key: str | None,
        timeout_s: float,
        max_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        self._base = label_studio_url.rstrip("/") if label_studio_url else None
        self._api_key = api_key
        self._max_bytes = max_bytes
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._lock = threading.Lock()
        self._access: tuple[str, float] | None = None  # (token, expires at monotonic seconds)

    def close(self) -> None:
        self._client.close()

    def _auth_header(self) -> dict[str, str]:
        key = self._api_key
        if not key:
            return {}
        if not _is_personal_access_token(key):
            return {"Authorization": f"Token {key}"}
        with self._lock:
            if self._access is None or self._access[1] <= time.monotonic():
                try:
                    response = self._client.post(f"{self._base}/api/token/refresh/", json={"refresh": key})
                    response.raise_for_status()
                    token = response.json()["access"]
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    raise ImageSourceError(
                        502, f"cannot exchange the Label Studio personal access token: {exc.__class__.__name__}"
                    ) from None
                self._access = (str(token), time.monotonic() + ACCESS_TOKEN_TTL_S)
            return {"Authorization": f"Bearer {self._access[0]}"}

    def fetch(self, image: RemoteImage) -> bytes:
        """The bytes at ``image.url``. Raises :class:`ImageSourceError` (404/413 as upstream says, else 502)."""
        headers = self._auth_header() if image.label_studio else {}
        where = image.url.split("?", 1)[0]
        try:
            with self._client.stream("GET", image.url, headers=headers) as response:
                if response.status_code == 404:
                    raise ImageSourceError(404, f"image not found at {where}")
                if response.status_code in (401, 403) and image.label_studio:
                    raise ImageSourceError(
                        502, f"{where} answered {response.status_code}: check label_studio.api_key"
                    )
                if response.status_code != 200:
                    raise ImageSourceError(502, f"{where} answered HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise ImageSourceError(413, f"image at {where} is larger than {self._max_bytes} bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise ImageSourceError(502, f"cannot fetch {where}: {exc.__class__.__name__}: {exc}") from None
        log.debug("fetched url=%s bytes=%d", where, size)
        return b"".join(chunks)

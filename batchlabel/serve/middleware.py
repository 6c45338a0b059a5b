"""ASGI middleware for the backend: access log with latency, HTTP basic auth, request body size limit, and the last
resort for unexpected exceptions.

Pure ASGI (no ``BaseHTTPMiddleware``) so streaming and cancellation behave and the cost per request stays in
microseconds. Order in :func:`batchlabel.serve.app.create_app`: access log (outermost, sees every status) -> basic
auth -> body limit -> last resort -> routes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

log = logging.getLogger("batchlabel.serve.access")
#: Internal errors go to the module's own logger, not the access log (which operators may silence or route apart).
error_log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_request_ids = itertools.count(1)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                        *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


class AccessLogMiddleware:
    """One log line per request: ``request id=.. method=.. path=.. status=.. latency_ms=.. bytes_in=..``.

    The query string is never logged (it could carry tokens); nor are headers or bodies.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next(_request_ids)
        start = time.perf_counter()
        status = 0
        bytes_in = 0
        scope.setdefault("state", {})["request_id"] = request_id

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, counting_receive, status_send)
        finally:
            latency_ms = (time.perf_counter() - start) * 1000.0
            level = logging.WARNING if status >= 400 or status == 0 else logging.INFO
            log.log(
                level,
                "request id=%d method=%s path=%s status=%d latency_ms=%.1f bytes_in=%d",
                request_id, scope.get("method"), scope.get("path"), status, latency_ms, bytes_in,
            )


class BasicAuthMiddleware:
    """HTTP basic auth on every path (Label Studio sends the credentials configured per ML backend).

    Constant-time comparison; answers 401 with ``WWW-Authenticate`` when credentials are missing or wrong.
    """

    def __init__(self, app: ASGIApp, *, username: str, password: str, realm: str = "batchlabel") -> None:
        self.app = app
        self._expected = f"{username}:{password}".encode()
        self._challenge = f'Basic realm="{realm}", charset="UTF-8"'.encode()

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name != b"authorization":
                continue
            scheme, _, token = value.partition(b" ")
            if scheme.lower() != b"basic":
                return False
            try:
                given = base64.b64decode(token.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(given, self._expected)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        await _send_json(
            send, 401, {"error": "authentication required (HTTP basic auth)"},
            [(b"www-authenticate", self._challenge)],
        )


#: A request body must arrive within this many seconds (a slow client holds a connection no longer).
BODY_TIMEOUT_S = 30.0


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: by ``Content-Length`` up front, or while reading a chunked
    body (the body is read here, up to the limit, and replayed to the app: the app would buffer it anyway). A body
    that has not fully arrived after ``timeout_s`` is answered 408."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body larger than serve.max_request_mb ({self.max_bytes / 2**20:g} MB)"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, {"error": "invalid Content-Length header"})
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, {"error": too_large})
                    return
        chunks: list[bytes] = []
        received = 0
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                await _send_json(send, 408, {"error": f"request body not received within {self.timeout_s:g} s"},
                                 [(b"connection", b"close")])
                return
            if message["type"] != "http.request":  # client went away
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await _send_json(send, 413, {"error": too_large})
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class LastResortMiddleware:
    """No exception escapes a request: one the handlers did not map is logged with its traceback and an error id,
    and answered ``500 {"error": "internal error <id> ..."}``, so the server keeps the keep-alive connection
    (an exception reaching uvicorn makes it drop the connection, and the client's next request is reset)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last handler: log it, answer 500, keep serving
            error_id = uuid.uuid4().hex[:12]
            error_log.error("internal error id=%s path=%s: %s", error_id, scope.get("path"), exc.__class__.__name__,
                      exc_info=True)
            if started:
                return  # the response is half sent: nothing valid can follow on this connection
            await _send_json(send, 500, {"error": f"internal error {error_id} ({exc.__class__.__name__}); "
                                                  "see the backend log for this id"})

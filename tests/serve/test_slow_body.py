"""Issue 12, case 10: a client that never finishes its body is answered 408 after the body timeout (a real socket
to a real uvicorn server; the timeout shortened for the test)."""

from __future__ import annotations

import socket
import time

from batchlabel.serve.middleware import BodyLimitMiddleware
from batchlabel.serve.runner import BackgroundServer, bind_socket


async def _echo(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":  # uvicorn runs with lifespan "on"
        while True:
            event = await receive()
            await send({"type": event["type"] + ".complete"})
            if event["type"] == "lifespan.shutdown":
                return
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message.get("body", b"")})


def test_a_body_that_never_arrives_gets_408_and_the_connection_is_closed() -> None:
    app = BodyLimitMiddleware(_echo, max_bytes=1 << 20, timeout_s=0.5)
    with BackgroundServer(app, bind_socket("127.0.0.1", 0)) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100\r\n\r\n{\"tasks\"")
            started = time.monotonic()
            answer = b""
            while chunk := client.recv(4096):  # headers and body may come in two writes; the server then closes
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"not received within 0.5 s" in answer
            assert time.monotonic() - started < 5

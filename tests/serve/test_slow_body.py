"""Issue 12, case 10: slow clients are bounded. A client that never finishes its body is answered 408 after the body
timeout; one that never finishes its request headers (or sends nothing) is disconnected after the header timeout
while other clients are served. Real sockets to a real uvicorn server; the timeouts shortened for the test."""

from __future__ import annotations

import http.client
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
            while chunk := client.recv(4096):  # until the server closes (head and body may come in two reads)
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"not received within 0.5 s" in answer
            assert time.monotonic() - started < 5


def _closed_by_server(client: socket.socket) -> float:
    """Seconds until the server closes ``client`` (recv gives EOF; nothing is answered to a request head cut short)."""
    started = time.monotonic()
    assert client.recv(4096) == b""
    return time.monotonic() - started


def test_headers_that_never_finish_are_disconnected_while_others_are_served() -> None:
    with BackgroundServer(_echo, bind_socket("127.0.0.1", 0), header_timeout_s=0.5) as server:
        host, port = server.url.removeprefix("http://").split(":")
        address = (host, int(port))
        with (socket.create_connection(address, timeout=10) as partial,
              socket.create_connection(address, timeout=10) as silent):
            started = time.monotonic()
            partial.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
            served = http.client.HTTPConnection(host, int(port), timeout=10)
            for index in range(5):  # another client on its own kept-alive connection is answered meanwhile
                served.request("POST", "/predict", body=b"ping %d" % index)
                response = served.getresponse()
                assert (response.status, response.read()) == (200, b"ping %d" % index)
            served.close()
            waited = _closed_by_server(partial) + (time.monotonic() - started)
            assert 0.4 < waited < 5
            assert _closed_by_server(silent) + (time.monotonic() - started) < 5


def test_a_kept_alive_connection_that_starts_a_request_must_finish_its_headers() -> None:
    with BackgroundServer(_echo, bind_socket("127.0.0.1", 0), header_timeout_s=0.5) as server:
        host, port = server.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("POST", "/predict", body=b"ok")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"ok")
        kept = connection.sock
        kept.sendall(b"POST /predict HTTP/1.1\r\nHo")  # the next request's head on the same connection, cut short
        assert _closed_by_server(kept) < 5
        connection.close()

"""Run the app with uvicorn: in the foreground (``serve``) or in a background thread (tests, benchmarks, ``up``).

The listening socket is bound **before** the model is loaded, so a busy port fails in milliseconds with a clear
message instead of after the model load. Shutdown is graceful: on SIGINT/SIGTERM uvicorn stops accepting, lets
in-flight requests finish (up to ``GRACEFUL_SHUTDOWN_S``), then runs the app's lifespan shutdown.

Slow clients are bounded at each stage: request headers within ``HEADER_TIMEOUT_S`` (:class:`HeaderDeadlineProtocol`;
uvicorn has no header timeout), the body within the body timeout (``serve/middleware.py``), and an idle kept-alive
connection is closed after uvicorn's keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, cast

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``): a bind reachable from this machine
    only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

GRACEFUL_SHUTDOWN_S = 10  # in seconds: in-flight requests get this long after a stop signal
HEADER_TIMEOUT_S = 10.0  # in seconds: a new connection, or a kept-alive one that starts a request, sends its headers


class BindError(OSError):
    """The configured host/port cannot be bound. ``str(error)`` says which and why."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free port). Raises :class:`BindError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only when ``sock.proto == IPPROTO_TCP``
    # (accepted sockets inherit it). With proto 0 every keep-alive response (headers, then body) stalled 40 ms on
    # Nagle + the client's delayed ACK; Label Studio keeps its connection to the backend alive.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (set serve.port or --port)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the request headers: a client that has not sent a whole request
    head ``header_timeout_s`` after connecting, or after the first byte of its next request on a kept-alive
    connection, is disconnected (and logged). Without it, a client that never finishes its headers holds a
    connection and its buffer forever (uvicorn's keep-alive timer is off while bytes trickle in).

    Between requests (no byte yet) uvicorn's own keep-alive timeout applies; once the head is in, the body timeout.
    """

    def __init__(self, *args: Any, header_timeout_s: float = HEADER_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_deadline()  # bytes of a request head are in, the head is not complete
        else:
            self._cancel_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._header_deadline_passed)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.warning("closed a connection from %s: request headers not complete within %.1f s", client,
                        self.header_timeout_s)
            self.transport.close()


def uvicorn_config(app: Any, *, host: str, port: int, header_timeout_s: float = HEADER_TIMEOUT_S) -> uvicorn.Config:
    """uvicorn settings: our access log instead of uvicorn's, our logging config, graceful shutdown, the header
    deadline (:class:`HeaderDeadlineProtocol`)."""
    protocol = functools.partial(HeaderDeadlineProtocol, header_timeout_s=header_timeout_s)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=cast(type[asyncio.Protocol], protocol),  # uvicorn calls it like a class
        access_log=False,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )


class ForegroundServer(uvicorn.Server):
    """uvicorn's server for ``batchlabel serve``: a stop signal ends :meth:`run` normally after the graceful shutdown.

    (uvicorn re-raises the captured SIGTERM/SIGINT after shutting down, so the process would die by the signal
    instead of returning the command's exit code; ``stop_signals`` records them instead.)
    """

    stop_signals: list[int]

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        self.stop_signals = []
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                self.stop_signals = [int(sig) for sig in captured]
                captured.clear()


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


class BackgroundServer:
    """uvicorn serving ``app`` on an already bound socket in a daemon thread. A context manager; ``url`` is set.

    Signal handlers are not installed (they belong to the main thread); :meth:`stop` asks for a graceful exit.
    """

    def __init__(self, app: Any, sock: socket.socket, *, header_timeout_s: float = HEADER_TIMEOUT_S) -> None:
        host, port = sock.getsockname()[:2]
        self.sock = sock
        self.url = url_of(sock)
        self.server = uvicorn.Server(uvicorn_config(app, host=host, port=port, header_timeout_s=header_timeout_s))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign,attr-defined]
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="batchlabel-serve")

    def start(self, *, timeout_s: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the backend did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, *, timeout_s: float = GRACEFUL_SHUTDOWN_S + 5) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

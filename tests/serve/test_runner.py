"""The backend's listening socket: accepted connections must not wait on Nagle's algorithm.

asyncio sets TCP_NODELAY on an accepted connection only when the socket's ``proto`` is ``IPPROTO_TCP``; a socket
made with proto 0 kept Nagle on, and every keep-alive response (headers and body are two writes) waited for the
client's delayed ACK (40 ms on Linux), which Label Studio's kept-alive connection to the backend paid per click.
"""

from __future__ import annotations

import socket

import pytest

from batchlabel.serve.runner import BindError, bind_socket


def test_accepted_connections_have_nodelay() -> None:
    listener = bind_socket("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP  # asyncio's condition for setting TCP_NODELAY itself
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()


def test_busy_port_is_a_bind_error_naming_it() -> None:
    listener = bind_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    try:
        with pytest.raises(BindError, match=f"127.0.0.1:{port}"):
            bind_socket("127.0.0.1", port)
    finally:
        listener.close()

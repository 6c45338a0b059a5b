"""``batchlabel serve CONFIG [--host H] [--port P]``: the Label Studio ML backend in the foreground.

Order: bind the socket (fail fast on a busy port) -> load the model once -> serve until SIGINT/SIGTERM (graceful).
Exit codes: 0 after a clean stop, 2 for config problems (missing weights, unusable host/port).
"""

from __future__ import annotations

import argparse
import logging
import sys

from batchlabel.config import Config

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2


def serve_command(config: Config, args: argparse.Namespace) -> int:
    """Run the backend with ``serve.host``/``serve.port`` (overridden by ``--host``/``--port``)."""
    from batchlabel.infer.weights import WeightsUnavailableError
    from batchlabel.serve.allocator import limit_malloc_arenas
    from batchlabel.serve.app import create_app
    from batchlabel.serve.runner import BindError, ForegroundServer, bind_socket, is_loopback, uvicorn_config

    limit_malloc_arenas()  # before the model load and uvicorn's threads: see serve/allocator.py
    host = getattr(args, "host", None) or config.serve.host
    port = getattr(args, "port", None) or config.serve.port
    if not is_loopback(host) and config.serve.username is None:
        log.warning(
            "serving on %s without HTTP basic auth: anyone who can reach this address can read images through "
            "the backend; set serve.username and serve.password", host,
        )
    try:
        sock = bind_socket(host, port)
    except BindError as exc:
        print(f"batchlabel serve: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        try:
            app = create_app(config)
        except WeightsUnavailableError as exc:
            print(f"batchlabel serve: model weights unavailable\n{exc}", file=sys.stderr)
            return EXIT_CONFIG
        log.info("serving the ML backend on http://%s:%d (connect it in Label Studio: Settings > Model)", host, port)
        server = ForegroundServer(uvicorn_config(app, host=host, port=port))
        server.run(sockets=[sock])
        log.info("stopped (signals %s)", server.stop_signals or "none")
    finally:
        sock.close()
    return EXIT_OK

"""Basic auth, body size limit and the access log, on a minimal ASGI app (no model)."""

from __future__ import annotations

import base64
import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from batchlabel.serve.middleware import AccessLogMiddleware, BasicAuthMiddleware, BodyLimitMiddleware


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


def make_app(*, auth: bool = True, max_bytes: int = 1000) -> Starlette:
    app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"])])
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    if auth:
        app.add_middleware(BasicAuthMiddleware, username="ann", password="s3cret:with colon")
    app.add_middleware(AccessLogMiddleware)
    return app


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app())


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("ann", "wrong"),
        basic("bob", "s3cret:with colon"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer abc"},
    ],
)
def test_requests_without_valid_credentials_get_401(client: TestClient, headers: dict) -> None:
    response = client.get("/echo", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic realm=")
    assert "authentication required" in response.json()["error"]


def test_valid_credentials_pass(client: TestClient) -> None:
    response = client.post("/echo", content=b"x" * 10, headers=basic("ann", "s3cret:with colon"))
    assert response.status_code == 200 and response.json() == {"bytes": 10}


def test_body_limit_by_content_length_and_by_stream() -> None:
    app = make_app(auth=False, max_bytes=100)
    with TestClient(app) as client:
        assert (client.post("/echo", content=b"x" * 100)).json() == {"bytes": 100}
        too_big = client.post("/echo", content=b"x" * 101)
        assert too_big.status_code == 413 and "max_request_mb" in too_big.json()["error"]

        def chunks():  # no Content-Length: chunked upload
            for _ in range(5):
                yield b"y" * 30

        streamed = client.post("/echo", content=chunks())
        assert streamed.status_code == 413


def test_access_log_has_latency_and_no_query(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(auth=False)
    caplog.set_level(logging.INFO, logger="batchlabel.serve.access")
    with TestClient(app) as client:
        client.post("/echo?token=SECRET", content=b"abc")
    lines = [r.getMessage() for r in caplog.records if r.name == "batchlabel.serve.access"]
    assert len(lines) == 1
    assert "method=POST path=/echo status=200 latency_ms=" in lines[0] and "bytes_in=3" in lines[0]
    assert "SECRET" not in lines[0]

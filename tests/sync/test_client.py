"""batchlabel.sync.client against a real Label Studio: auth kinds, project/storage idempotence, bulk calls, errors;
and the retry policy (no server)."""

from __future__ import annotations

import httpx
import pytest

from batchlabel.sync import client as C


def _personal_access_token(live) -> str:
    """Log in like a browser and create a personal access token (a JWT refresh token)."""
    with httpx.Client(base_url=live.url, follow_redirects=True, timeout=30) as session:
        session.get("/user/login/")
        session.post("/user/login/", data={"email": live.username, "password": live.password,
                                           "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                     headers={"Referer": f"{live.url}/user/login/"})
        answer = session.post("/api/token/", headers={"X-CSRFToken": session.cookies["csrftoken"],
                                                      "Referer": f"{live.url}/"})
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def _rectangle(label: str = "cat") -> dict:
    return {"from_name": "rect", "to_name": "image", "type": "rectanglelabels", "original_width": 80,
            "original_height": 60, "image_rotation": 0,
            "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0, "rectanglelabels": [label]}}


@pytest.mark.labelstudio
def test_legacy_token_and_personal_access_token_both_connect(label_studio, make_config):
    config = make_config()
    legacy = C.connect(config.label_studio)
    assert legacy.users.whoami().email == label_studio.username
    pat = _personal_access_token(label_studio)
    assert C.looks_like_jwt(pat) and not C.looks_like_jwt(label_studio.api_key)
    client = C.connect(config.label_studio, api_key=pat)
    project = C.ensure_project(client, config)  # a real call through the SDK's refreshed access token
    assert project.title == config.label_studio.project


@pytest.mark.labelstudio
def test_a_wrong_key_is_a_4xx_with_label_studios_message(make_config):
    config = make_config()
    with pytest.raises(C.LabelStudioError) as caught:
        C.connect(config.label_studio, api_key="not-the-token")
    assert caught.value.status == 401
    assert "whoami" in str(caught.value) and "token" in str(caught.value).lower()


@pytest.mark.labelstudio
def test_project_storage_and_bulk_tasks_with_predictions(make_config):
    config = make_config()
    ls = C.connect(config.label_studio)
    project = C.ensure_project(ls, config)
    assert C.ensure_project(ls, config).id == project.id  # found by title, not created twice
    (config.storage.root / "a").mkdir()
    (config.storage.root / "a" / "x.png").write_bytes(b"\x89PNG fake")
    C.ensure_local_storage(ls, project.id, config.storage.root, ["a/x.png"])
    C.ensure_local_storage(ls, project.id, config.storage.root, ["a/x.png"])
    storages = ls.import_storage.local.list(project=project.id)
    assert len(storages) == 1 and storages[0].regex_filter == C.SERVE_ONLY_REGEX
    prediction = {"model_version": "batchlabel test", "score": 0.9, "result": [_rectangle()]}
    tasks = [C.make_task(f"a/{i}.png", f"sha{i}", prediction if i % 2 else None) for i in range(7)]
    ids = C.import_tasks(ls, project.id, tasks, chunk_size=3)
    assert len(ids) == 7 and len(set(ids)) == 7
    created = C.push_predictions(ls, project.id, [{"task": ids[0], **prediction}, {"task": ids[2], **prediction}])
    assert created == 2
    C.ensure_model_version(ls, project, "batchlabel test")
    assert ls.projects.get(id=project.id).model_version == "batchlabel test"
    listed = {t["id"]: t for t in C.iter_tasks(ls, project.id, page_size=4)}
    assert sorted(listed) == sorted(ids)
    assert listed[ids[0]]["meta"]["sha256"] == "sha0"
    assert C.rel_path_from_url(listed[ids[0]]["data"]["image"]) == "a/0.png"
    assert [len(listed[i]["predictions"]) for i in ids] == [1, 1, 1, 1, 0, 1, 0]


@pytest.mark.labelstudio
def test_a_refused_import_reports_label_studios_message(make_config):
    config = make_config()
    ls = C.connect(config.label_studio)
    project = C.ensure_project(ls, config)
    with pytest.raises(C.LabelStudioError) as caught:
        C.push_predictions(ls, project.id, [{"task": 987654321, "model_version": "v", "result": [_rectangle()]}])
    assert "987654321" in caught.value.message  # Label Studio's own explanation, passed on
    assert 400 <= (caught.value.status or 0) < 500
    assert caught.value.message


def test_retries_transient_errors_with_jittered_backoff_then_gives_up():
    sleeps: list[float] = []
    policy = C.RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=3.0, deadline_s=100.0,
                           sleep=sleeps.append, rand=lambda: 1.0)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused")
        return "ok"

    assert C.with_retries(flaky, what="GET /x", policy=policy) == "ok"
    assert sleeps == [1.0, 2.0]
    sleeps.clear()

    def down() -> None:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(C.LabelStudioUnavailableError, match="gave up after 4 attempts"):
        C.with_retries(down, what="GET /x", policy=policy)
    assert sleeps == [1.0, 2.0, 3.0]  # capped at max_delay_s


def test_4xx_is_not_retried():
    from label_studio_sdk.core.api_error import ApiError

    calls = []

    def refused() -> None:
        calls.append(1)
        raise ApiError(status_code=400, body='{"detail": "Validation error", "validation_errors": {"x": ["bad"]}}')

    with pytest.raises(C.LabelStudioError, match="Validation error"):
        C.with_retries(refused, what="POST /api/x", policy=C.RetryPolicy(sleep=lambda s: None))
    assert len(calls) == 1


def test_image_urls_round_trip():
    url = C.image_url("sub dir/ä b.jpg")
    assert url.startswith("/data/local-files/?d=")
    assert C.rel_path_from_url(url) == "sub dir/ä b.jpg"
    assert C.rel_path_from_url("https://example.com/x.jpg") is None

"""The embedded Label Studio manager against a real Label Studio process."""

from __future__ import annotations

import httpx
import pytest

from batchlabel.sync.label_config import generate_label_config, parse_control_names

pytestmark = pytest.mark.labelstudio


def test_harness_server_is_real_and_accepts_the_legacy_token(label_studio) -> None:
    response = httpx.get(f"{label_studio.url}/api/current-user/whoami",
                         headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["email"] == label_studio.username


def test_sdk_creates_a_project_with_the_generated_label_config(label_studio) -> None:
    xml = generate_label_config(["cat", "person"])
    project = label_studio.client.projects.create(title="server-test", label_config=xml)
    fetched = label_studio.client.projects.get(id=project.id)
    names, labels = parse_control_names(fetched.label_config)
    assert labels == ["cat", "person"]
    assert (names.keypoint, names.rectangle, names.polygon, names.brush) == ("keypoint", "rect", "polygon", "brush")


def test_local_files_are_served_from_the_document_root(label_studio) -> None:
    folder = label_studio.document_root / "served"
    folder.mkdir(exist_ok=True)
    (folder / "hello.txt").write_text("hi")
    project = label_studio.client.projects.create(title="storage-test", label_config=generate_label_config(["cat"]))
    label_studio.client.import_storage.local.create(project=project.id, path=str(folder), use_blob_urls=True)
    response = httpx.get(f"{label_studio.url}/data/local-files/", params={"d": "served/hello.txt"},
                         headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=10)
    assert response.status_code == 200
    assert response.text == "hi"


def test_a_private_server_stops_and_restarts_on_the_same_port_keeping_its_data(label_studio_factory) -> None:
    live = label_studio_factory()
    project = live.client.projects.create(title="survives-restart", label_config=generate_label_config(["cat"]))
    url = live.url
    live.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health/", timeout=2)
    live.start()
    assert live.url == url
    assert live.client.projects.get(id=project.id).title == "survives-restart"

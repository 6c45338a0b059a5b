"""``batchlabel watch`` with ``preannotate.detector.model: trained`` adopts each model ``batchlabel train`` publishes:
a real CLI daemon, a real Label Studio, LiteMedSAM real weights, and the real yolo11n.pt published into the model
store as a trained model (no training: the store's own publish function), so the daemon's switch is what is tested."""

from __future__ import annotations

import datetime
import signal
import subprocess
from pathlib import Path

import pytest
from skimage import data

from batchlabel.annotate.trained_models import partial_dir, publish_model
from batchlabel.sync.client import find_project, rel_path_from_url
from tests.annotate.conftest import yolo11n  # noqa: F401 (the session fixture: real yolo11n.pt, COCO classes)
from tests.commands.test_watch import _start
from tests.ingest.ingest_helpers import project_tasks, wait_for, write_png, write_yaml_config

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

#: A version name as ``batchlabel train`` writes it (``trained_models.version_name``).
VERSION = "yolo11n-ft-2-adopt0"


def _versions(ls, title: str) -> dict[str, set[str]]:
    """Each task's image (relative path) -> the model versions of its predictions."""
    return {rel_path_from_url(task["data"]["image"]): {p["model_version"] for p in task["predictions"]}
            for task in project_tasks(ls, title)}


def test_watch_adopts_a_newly_published_model(label_studio, make_config, tmp_path: Path,
                                              yolo11n: Path) -> None:  # noqa: F811
    config = make_config(preannotate={"mode": "detect", "detector": {"model": "trained"}, "outputs": ["rectangle"]},
                         storage={"stable_s": 0.5})
    root, title, client = config.storage.root, config.label_studio.project, label_studio.client
    write_png(root / "chelsea.png", data.chelsea())
    write_png(root / "astronaut.png", data.astronaut())
    log_path = tmp_path / "watch.log"
    daemon = _start("watch", str(write_yaml_config(config, tmp_path / "cfg.yaml")), "--summary-every-s", "2",
                    log_path=log_path)
    try:
        assert wait_for(lambda: set(_versions(client, title)) == {"chelsea.png", "astronaut.png"}, timeout_s=180), \
            log_path.read_text()
        assert _versions(client, title) == {"chelsea.png": set(), "astronaut.png": set()}  # no model yet
        assert "no model for project" in log_path.read_text()

        partial = partial_dir(config.models_dir, title, VERSION)
        publish_model(partial, yolo11n, {
            "version": VERSION, "created": datetime.datetime.now(datetime.UTC).isoformat(),
            "classes": ["cat", "person"], "reviewed_tasks": 2, "base": "yolo11n.pt",
        })

        def adopted() -> bool:
            versions = _versions(client, title)
            return all(any(f"ultralytics:{VERSION}@" in v for v in found) for found in versions.values())

        assert wait_for(adopted, timeout_s=60), log_path.read_text()
        versions = _versions(client, title)
        (new_version,) = versions["chelsea.png"]
        assert versions["astronaut.png"] == {new_version}
        project = find_project(client, title)
        assert project is not None and client.projects.get(id=project.id).model_version == new_version
        labels = {result["value"]["rectanglelabels"][0] for task in project_tasks(client, title)
                  for prediction in task["predictions"] for result in prediction["result"]}
        assert {"cat", "person"} <= labels  # YOLO11n's COCO classes found the cat and the astronaut

        write_png(root / "mirrored.png", data.chelsea()[:, ::-1].copy())  # added after the switch: the new model
        assert wait_for(lambda: _versions(client, title).get("mirrored.png") == {new_version}, timeout_s=60), \
            log_path.read_text()
        assert f"new trained model {VERSION} (was none" in log_path.read_text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
    assert code == 0, log_path.read_text()

"""``batchlabel report --diverse N --diverse-tab`` against a real Label Studio: three images encoded by LiteMedSAM (real
weights), two more tasks, one reviewed, one never encoded; the order is k-center over the store's embeddings, the
Data Manager tab "diverse first" lists the ranked tasks in that order, a second run with a smaller N clears the
ranks it no longer gives, and a task deleted meanwhile is a warning."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchlabel.config import Config
from tests.ingest.ingest_helpers import sample_images, write_png, write_yaml_config

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def test_diverse_first_on_a_live_project(label_studio: Any, make_config: Callable[..., Config], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from batchlabel.cli import main
    from batchlabel.commands.ingest import run_command
    from batchlabel.commands.report import build_report
    from batchlabel.infer.store import EmbeddingStore
    from batchlabel.report.diverse import k_center_order, pooled_embedding
    from batchlabel.report.routing import DIVERSE_RANK_KEY, write_diverse_ranks
    from batchlabel.sync.client import find_project, image_url, iter_tasks, request_json

    config = make_config(model={"runtime": "torch"})
    images = sample_images(5)
    for index, image in enumerate(images[:3]):
        write_png(config.storage.root / "img" / f"{index}.png", image)
    assert run_command(config, argparse.Namespace(json=True, no_progress=True)) == 0  # 3 tasks, 3 embeddings
    ls = label_studio.client
    project = find_project(ls, config.label_studio.project)
    later = []  # two tasks made by hand after the run: one to be reviewed, one whose image is never encoded
    for index, image in enumerate(images[3:], start=3):
        rel_path = f"later/{index}.png"
        later.append({"data": {"image": image_url(rel_path)},
                      "meta": {"sha256": write_png(config.storage.root / rel_path, image)}})
    ls.projects.import_tasks(id=project.id, request=later)
    tasks = sorted(iter_tasks(ls, project.id), key=lambda task: task["id"])
    assert len(tasks) == 5
    store = EmbeddingStore(config.cache.embeddings_dir, max_bytes=config.cache.max_bytes)
    (model_id,) = store.model_ids()
    *unreviewed, reviewed, missing = tasks
    ls.annotations.create(id=reviewed["id"], result=[], lead_time=1.0)

    report = build_report(config, diverse=4, diverse_tab=True, client=ls)
    diverse = report["diverse"]
    assert diverse["model_id"] == model_id
    assert (diverse["unreviewed"], diverse["with_embedding"], diverse["without_embedding"]) == (4, 3, 1)
    vectors = np.stack([pooled_embedding(store.get(task["meta"]["sha256"], model_id)) for task in unreviewed])
    expected = [unreviewed[index]["id"] for index, _ in k_center_order(vectors, 3)] + [missing["id"]]
    assert [task["task_id"] for task in diverse["tasks"]] == expected
    assert diverse["tasks"][-1]["embedding"] is False and diverse["tasks"][0]["distance"] is None
    assert diverse["ranked_tasks_changed"] == 4
    assert not store.contains(missing["meta"]["sha256"], model_id)  # nothing was encoded

    listed = request_json(ls, "GET", "api/tasks/", params={"project": project.id, "view": report["diverse_tab_id"],
                                                           "page_size": 100})
    assert [task["id"] for task in listed["tasks"]] == expected  # unreviewed only, in rank order

    path = write_yaml_config(config, tmp_path / "config.yaml")
    assert main(["report", str(path), "--diverse", "2", "--diverse-tab"]) == 0
    out = capsys.readouterr().out
    assert f"diverse #1: task {expected[0]}" in out and "1 without an embedding (listed last)" in out
    ranks = {task["id"]: task["data"].get(DIVERSE_RANK_KEY) for task in iter_tasks(ls, project.id)}
    assert ranks == {task["id"]: {expected[0]: 1, expected[1]: 2}.get(task["id"]) for task in tasks}
    # a task deleted between the export and the rank writes: named in a warning, the others still ranked
    gone, kept = (task for task in [*unreviewed, missing] if task["id"] not in expected[:2])
    ls.tasks.delete(id=gone["id"])
    with caplog.at_level(logging.WARNING):
        assert write_diverse_ranks(ls, [(gone["id"], gone["data"]), (kept["id"], kept["data"])],
                                   {gone["id"]: 3, kept["id"]: 4}) == 1
    assert f"task {gone['id']}: cannot write its diverse rank" in caplog.text
    assert ls.tasks.get(id=kept["id"]).data[DIVERSE_RANK_KEY] == 4

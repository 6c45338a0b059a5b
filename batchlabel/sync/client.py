"""batchlabel's Label Studio client: connect, find or create the project, local storage, bulk tasks and predictions.

Everything goes through the ``label-studio-sdk`` 2.x client (:func:`connect`). Bulk calls send JSON through the SDK's
own HTTP client (its auth headers, including personal-access-token refresh) and skip the SDK's model parsing, which
is the slow part for thousands of tasks.

Errors:
- :class:`LabelStudioUnavailableError`: network errors and 5xx, after retries with exponential backoff and jitter
  (:class:`RetryPolicy`). Only requests that are safe to repeat are retried here; a bulk import or prediction
  upload that may have reached the server is *not* repeated blindly (that would duplicate tasks): the caller
  reconciles by image hash first (see ``batchlabel.ingest.pipeline``).
- :class:`LabelStudioError`: 4xx, with Label Studio's own message and the request that failed.

Task format (a contract with the rest of batchlabel):
``{"data": {"image": "/data/local-files/?d=<path relative to storage.root>"}, "meta": {"sha256": ..., "batchlabel":
version}}``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from batchlabel import __version__

if TYPE_CHECKING:
    from label_studio_sdk.client import LabelStudio

    from batchlabel.config import Config, LabelStudioConfig

log = logging.getLogger(__name__)

#: Label Studio serves files under its document root at ``LOCAL_FILES_PATH/?d=<relative path>``.
LOCAL_FILES_PATH = "/data/local-files"
LOCAL_FILES_PREFIX = LOCAL_FILES_PATH + "/?d="
#: Tasks per import request and predictions per upload request (Label Studio accepts far more; chunks keep each
#: request well under its 200 MB limit with brush masks and bound the work redone after a failure).
DEFAULT_CHUNK_SIZE = 500
#: Tasks per page when listing a project (reconciliation).
LIST_PAGE_SIZE = 1000
#: Storage created for serving only: batchlabel imports tasks itself, so a "Sync" click must import nothing
#: (it would create tasks without batchlabel's meta, i.e. duplicates). This regex matches no file name.
SERVE_ONLY_REGEX = r"(?!)"
STORAGE_TITLE = "batchlabel document root (serving only; batchlabel imports tasks itself)"

T = TypeVar("T")


class LabelStudioError(Exception):
    """Label Studio refused a request (4xx). The message names the request and quotes Label Studio."""

    def __init__(self, what: str, status: int | None, message: str) -> None:
        super().__init__(f"Label Studio {what}: HTTP {status}: {message}")
        self.what = what
        self.status = status
        self.message = message


class LabelStudioUnavailableError(Exception):
    """Label Studio could not be reached, or answered 5xx, after the retries the policy allows."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for network errors and 5xx.

    Attempt ``n`` (0-based) waits ``uniform(0, min(max_delay_s, base_delay_s * 2**n))`` before the next one; give up
    after ``max_attempts`` or once ``deadline_s`` seconds have passed since the first attempt.
    """

    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    deadline_s: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def delay_s(self, attempt: int) -> float:
        return self.rand() * min(self.max_delay_s, self.base_delay_s * (2**attempt))


NO_RETRY = RetryPolicy(max_attempts=1)


def _message(body: Any) -> str:
    """Label Studio's error text from a response body (JSON detail/validation errors, or plain text)."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body.strip()[:500]
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            if body.get(key):
                detail = body[key]
                extra = body.get("validation_errors")
                return f"{detail} {json.dumps(extra)}" if extra else str(detail)
        return json.dumps(body)[:500]
    return str(body)[:500]


def _is_transient(error: BaseException) -> bool:
    from label_studio_sdk.core.api_error import ApiError

    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, ApiError) and (error.status_code or 0) >= 500


def with_retries(call: Callable[[], T], *, what: str, policy: RetryPolicy = RetryPolicy()) -> T:
    """Run ``call`` retrying network errors and 5xx per ``policy``; 4xx raise :class:`LabelStudioError`."""
    from label_studio_sdk.core.api_error import ApiError

    start = policy.clock()
    attempt = 0
    while True:
        try:
            return call()
        except ApiError as error:
            if not _is_transient(error):
                raise LabelStudioError(what, error.status_code, _message(error.body)) from None
            failure: BaseException = error
            reason = f"HTTP {error.status_code}: {_message(error.body)}"
        except httpx.TransportError as error:
            failure = error
            reason = f"{type(error).__name__}: {error}"
        attempt += 1
        delay = policy.delay_s(attempt - 1)
        if attempt >= policy.max_attempts or policy.clock() - start + delay > policy.deadline_s:
            message = f"Label Studio {what}: {reason} (gave up after {attempt} attempts)"
            raise LabelStudioUnavailableError(message) from failure
        log.warning("Label Studio %s failed (%s); retry %d in %.1f s", what, reason, attempt, delay)
        policy.sleep(delay)


# -- connection ----------------------------------------------------------------------------------------------
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def looks_like_jwt(api_key: str) -> bool:
    """Personal access tokens are JWT refresh tokens (three base64url parts); legacy tokens are plain hex."""
    return bool(_JWT.match(api_key))


def connect(
    ls_config: LabelStudioConfig,
    *,
    url: str | None = None,
    api_key: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> LabelStudio:
    """An SDK client for ``label_studio.url`` (or ``url``) with ``api_key``, checked against ``whoami``.

    A legacy token is tried with ``Authorization: Token`` first; a JWT-looking key (personal access token) is given
    to the SDK, which exchanges it for short-lived access tokens. ``url``/``api_key`` override the config (the
    embedded server's). Raises :class:`LabelStudioError` (rejected key, with the hint to use) or
    :class:`LabelStudioUnavailableError`.
    """
    from label_studio_sdk.client import LabelStudio

    base_url = (url or ls_config.url or "").rstrip("/")
    key = api_key or ls_config.api_key
    if not base_url:
        raise LabelStudioError("connect", None, "label_studio.url is not set and no embedded server URL was given")
    if not key:
        raise LabelStudioError("connect", None, "label_studio.api_key is not set (set it in the config, or export "
                                                "the ${VAR} it names; `batchlabel check` says which)")
    timeout = ls_config.timeout_s
    if not looks_like_jwt(key):

        def whoami() -> httpx.Response:
            response = httpx.get(
                f"{base_url}/api/current-user/whoami", headers={"Authorization": f"Token {key}"}, timeout=timeout
            )
            if response.status_code >= 500:
                response.raise_for_status()
            return response

        try:
            response = with_retries(whoami, what="GET /api/current-user/whoami", policy=policy)
        except httpx.HTTPStatusError as error:  # 5xx after retries
            raise LabelStudioUnavailableError(f"Label Studio at {base_url}: {error}") from None
        if response.status_code != 200:
            hint = (
                " (Label Studio 1.23 disables legacy tokens unless started with --enable-legacy-api-token; "
                "or use a personal access token from Account & Settings)"
            )
            raise LabelStudioError(
                f"GET {base_url}/api/current-user/whoami", response.status_code, _message(response.text) + hint
            )
    client = LabelStudio(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)
    if looks_like_jwt(key):
        with_retries(lambda: client.users.whoami(), what="GET /api/current-user/whoami (personal access token)",
                     policy=policy)
    return client


def request_json(
    ls: LabelStudio,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: Any = None,
    policy: RetryPolicy = RetryPolicy(),
    timeout_s: float | None = None,
) -> Any:
    """One JSON request through the SDK's HTTP client (its auth); retried per ``policy``; 4xx -> LabelStudioError."""
    what = f"{method} /{path}"
    http = ls._client_wrapper.httpx_client  # the SDK's own client: base URL, auth headers, token refresh

    def call() -> Any:
        options: dict[str, Any] = {"max_retries": 0}
        if timeout_s is not None:
            options["timeout_in_seconds"] = timeout_s
        # Serialised here: the SDK's jsonable_encoder walks every integer of brush RLEs in Python (~35 ms per
        # task with a 640x480 mask), which made it, not Label Studio, the bottleneck of bulk pushes.
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        headers = None if body is None else {"Content-Type": "application/json"}
        response = http.request(path, method=method, params=params, content=content, headers=headers,
                                request_options=options)  # type: ignore[arg-type]
        if response.status_code >= 400:
            from label_studio_sdk.core.api_error import ApiError

            raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=response.text)
        return response.json() if response.content else None

    return with_retries(call, what=what, policy=policy)


# -- project and storage -------------------------------------------------------------------------------------
def ensure_project(ls: LabelStudio, config: Config, *, policy: RetryPolicy = RetryPolicy()) -> Any:
    """The project titled ``label_studio.project``, created with the configured labeling config when missing.

    An existing project keeps its own labeling config (a differing one is logged, never overwritten: annotations
    depend on it). Returns the SDK's project object (``.id``, ``.label_config``, ``.model_version``).
    """
    from batchlabel.sync.label_config import load_label_config

    title = config.label_studio.project
    found = find_project(ls, title, policy=policy)
    xml = load_label_config(config.label_studio.labels, config.label_studio.label_config)
    if found is None:
        log.info("creating Label Studio project %r", title)
        project = with_retries(lambda: ls.projects.create(title=title, label_config=xml), what="create project",
                               policy=NO_RETRY)
        return project
    if _normalise_xml(found.label_config or "") != _normalise_xml(xml):
        log.warning("project %r (id %s) has a labeling config different from the configured one; keeping the "
                    "project's", title, found.id)
    return found


def _normalise_xml(xml: str) -> str:
    return re.sub(r"\s+", "", xml)


def find_project(ls: LabelStudio, title: str, *, policy: RetryPolicy = RetryPolicy()) -> Any | None:
    """The project with exactly this title (the lowest id when several), or None."""
    pager: list[Any] = with_retries(lambda: list(ls.projects.list(title=title, page_size=100)), what="list projects",
                         policy=policy)
    matches = sorted((p for p in pager if p.title == title), key=lambda p: p.id)
    if not matches:
        return None
    return with_retries(lambda: ls.projects.get(id=matches[0].id), what=f"get project {matches[0].id}", policy=policy)


def reviewed_task_count(ls: LabelStudio, project_id: int, *, policy: RetryPolicy = RetryPolicy()) -> int:
    """How many tasks of the project have an annotation, as Label Studio counts them
    (``num_tasks_with_annotations``: one ``GET /api/projects/{id}``)."""
    project = with_retries(lambda: ls.projects.get(id=project_id), what=f"get project {project_id}", policy=policy)
    return int(getattr(project, "num_tasks_with_annotations", None) or 0)


class StorageCoverage:
    """Makes sure Label Studio can serve every image of ``root`` through Local Files import storages.

    Label Studio serves ``/data/local-files/?d=...`` only under a storage's path (without one every image 404s in the
    UI). Storages are never synced (batchlabel imports tasks itself) and their regex matches nothing, so a "Sync"
    click in the UI cannot create duplicate tasks. One storage at ``root`` is tried first; when ``root`` *is* Label
    Studio's document root (the embedded setup) Label Studio refuses a storage there, and one storage per top-level
    subfolder is created on demand instead. Files directly in the document root cannot be served by Label Studio at
    all: they are logged once.
    """

    def __init__(self, ls: LabelStudio, project_id: int, root: Path, *, policy: RetryPolicy = RetryPolicy()) -> None:
        self._ls = ls
        self._project_id = project_id
        self._root = Path(root).resolve()
        self._policy = policy
        self._covered: list[Path] = []
        self._per_subfolder = False
        self._warned_top_level = False
        self._known: list[Path] | None = None

    def _existing(self) -> list[Path]:
        if self._known is None:
            storages = with_retries(lambda: self._ls.import_storage.local.list(project=self._project_id),
                                    what="list local storages", policy=self._policy)
            self._known = [Path(s.path).resolve() for s in storages if getattr(s, "path", None)]
        return self._known

    def _is_covered(self, folder: Path) -> bool:
        return any(folder == path or path in folder.parents for path in self._existing())

    def _create(self, folder: Path) -> None:
        log.info("creating a Local Files storage for %s in project %s", folder, self._project_id)
        with_retries(
            lambda: self._ls.import_storage.local.create(
                project=self._project_id, path=str(folder), use_blob_urls=True, regex_filter=SERVE_ONLY_REGEX,
                title=STORAGE_TITLE, recursive_scan=True,
            ),
            what=f"create local storage {folder}",
            policy=self._policy,
        )
        self._existing().append(folder)

    def ensure(self, rel_paths: Iterable[str] = ()) -> None:
        """Cover ``root`` (or, in the embedded layout, the top-level subfolders of ``rel_paths``)."""
        if not self._per_subfolder and not self._is_covered(self._root):
            try:
                self._create(self._root)
            except LabelStudioError as error:
                if "LOCAL_FILES_DOCUMENT_ROOT" not in error.message:
                    raise
                self._per_subfolder = True
        if not self._per_subfolder:
            return
        for rel_path in rel_paths:
            parts = Path(rel_path).parts
            if len(parts) < 2:
                if not self._warned_top_level:
                    log.warning("%s is directly in Label Studio's document root %s: Label Studio serves only files "
                                "in its subfolders, so its task shows no image; move images into a subfolder",
                                rel_path, self._root)
                    self._warned_top_level = True
                continue
            folder = self._root / parts[0]
            if not self._is_covered(folder):
                self._create(folder)


def ensure_local_storage(ls: LabelStudio, project_id: int, root: Path, rel_paths: Iterable[str] = (), *,
                         policy: RetryPolicy = RetryPolicy()) -> StorageCoverage:
    """Local Files storages so Label Studio can serve the images under ``root`` (see :class:`StorageCoverage`)."""
    coverage = StorageCoverage(ls, project_id, root, policy=policy)
    coverage.ensure(rel_paths)
    return coverage


def ensure_model_version(ls: LabelStudio, project: Any, model_version: str, *,
                         policy: RetryPolicy = RetryPolicy()) -> None:
    """Make the project show predictions of ``model_version`` (the UI hides other versions)."""
    if getattr(project, "model_version", None) == model_version:
        return
    request_json(ls, "PATCH", f"api/projects/{project.id}", body={"model_version": model_version}, policy=policy)
    try:
        project.model_version = model_version
    except (AttributeError, TypeError, ValueError):
        log.debug("project object is immutable; model_version updated on the server only")


# -- tasks and predictions -----------------------------------------------------------------------------------
def image_url(rel_path: str) -> str:
    """The task ``data.image`` for a file at ``rel_path`` (POSIX, relative to the document root)."""
    return LOCAL_FILES_PREFIX + urllib.parse.quote(rel_path, safe="/")


def local_files_values(url: str) -> list[str] | None:
    """The ``d`` query values of a Label Studio local-files URL (``/data/local-files/?d=...``, with or without scheme
    and host; blank values kept), or None when ``url`` is not a local-files URL. The one parser of that format."""
    parts = urllib.parse.urlsplit(url)
    if parts.path.rstrip("/") != LOCAL_FILES_PATH:
        return None
    return urllib.parse.parse_qs(parts.query, keep_blank_values=True).get("d", [])


def rel_path_from_url(url: str) -> str | None:
    """Inverse of :func:`image_url`: the document-root-relative path, or None for other URLs (or no ``d``)."""
    values = local_files_values(url) if isinstance(url, str) else None
    return values[0] if values and values[0] else None


def make_task(rel_path: str, sha256: str, prediction: dict | None = None) -> dict:
    """A task dict as batchlabel imports it, with an optional inline prediction."""
    task: dict[str, Any] = {
        "data": {"image": image_url(rel_path)},
        "meta": {"sha256": sha256, "batchlabel": __version__},
    }
    if prediction is not None:
        task["predictions"] = [prediction]
    return task


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def import_tasks(
    ls: LabelStudio, project_id: int, tasks: Sequence[dict], *, chunk_size: int = DEFAULT_CHUNK_SIZE,
    policy: RetryPolicy = NO_RETRY,
) -> list[int]:
    """Create ``tasks`` (with inline predictions) in chunks; returns the new task ids in input order.

    Not retried by default: an import whose answer was lost may have been applied. Pass a retry policy only for
    connection errors you know happened before sending (the pipeline reconciles instead).
    """
    ids: list[int] = []
    for chunk in chunks(tasks, chunk_size):
        answer = request_json(
            ls, "POST", f"api/projects/{project_id}/import", params={"return_task_ids": "true"}, body=list(chunk),
            policy=policy, timeout_s=max(60.0, len(chunk) * 0.05),
        )
        task_ids = list((answer or {}).get("task_ids") or [])
        if len(task_ids) != len(chunk):
            raise LabelStudioError(f"POST /api/projects/{project_id}/import", 200,
                                   f"expected {len(chunk)} task ids, got {len(task_ids)}: {answer}")
        ids.extend(int(task_id) for task_id in task_ids)
    return ids


def push_predictions(
    ls: LabelStudio, project_id: int, predictions: Sequence[dict], *, chunk_size: int = DEFAULT_CHUNK_SIZE,
    policy: RetryPolicy = NO_RETRY,
) -> int:
    """Create predictions for existing tasks in bulk (each dict has ``task``, ``result``, ``score``,
    ``model_version``). Returns how many were created. Not retried by default (see :func:`import_tasks`)."""
    created = 0
    for chunk in chunks(predictions, chunk_size):
        answer = request_json(ls, "POST", f"api/projects/{project_id}/import/predictions", body=list(chunk),
                              policy=policy, timeout_s=max(60.0, len(chunk) * 0.05))
        created += int((answer or {}).get("created", len(chunk)))
    return created


def delete_prediction(ls: LabelStudio, prediction_id: int, *, policy: RetryPolicy = RetryPolicy()) -> None:
    """Delete one prediction (already gone is fine)."""
    _delete(ls, f"api/predictions/{prediction_id}", policy)


def delete_task(ls: LabelStudio, task_id: int, *, policy: RetryPolicy = RetryPolicy()) -> None:
    """Delete one task with its predictions (already gone is fine)."""
    _delete(ls, f"api/tasks/{task_id}", policy)


def _delete(ls: LabelStudio, path: str, policy: RetryPolicy) -> None:
    """DELETE ``path``; a 404 (already gone) is not an error."""
    try:
        request_json(ls, "DELETE", path, policy=policy)
    except LabelStudioError as error:
        if error.status != 404:
            raise


def update_task(ls: LabelStudio, task_id: int, *, data: dict | None = None, meta: dict | None = None,
                policy: RetryPolicy = RetryPolicy()) -> None:
    """PATCH a task's data and/or meta (idempotent, so retried)."""
    body: dict[str, Any] = {}
    if data is not None:
        body["data"] = data
    if meta is not None:
        body["meta"] = meta
    request_json(ls, "PATCH", f"api/tasks/{task_id}", body=body, policy=policy)


def iter_tasks(
    ls: LabelStudio, project_id: int, *, page_size: int = LIST_PAGE_SIZE, policy: RetryPolicy = RetryPolicy(),
) -> Iterator[dict]:
    """Every task of the project as a dict with ``id``, ``data``, ``meta``, ``annotations`` and ``predictions``
    (full result lists), page by page."""
    page = 1
    while True:
        params: dict[str, Any] = {"project": project_id, "page": page, "page_size": page_size, "fields": "all"}
        try:
            answer = request_json(ls, "GET", "api/tasks", params=params, policy=policy)
        except LabelStudioError as error:
            if error.status == 404:  # past the last page
                return
            raise
        tasks = answer.get("tasks", []) if isinstance(answer, dict) else answer
        yield from tasks
        total = answer.get("total") if isinstance(answer, dict) else None
        if len(tasks) < page_size or (total is not None and page * page_size >= total):
            return
        page += 1


def get_task(ls: LabelStudio, task_id: int, *, policy: RetryPolicy = RetryPolicy()) -> dict:
    """One task as a dict (``data``, ``meta``, ``annotations``, ``predictions`` with results)."""
    return request_json(ls, "GET", f"api/tasks/{task_id}", policy=policy)

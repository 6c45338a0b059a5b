"""Connect batchlabel's ML backend to a Label Studio project (idempotent: an existing connection is reused)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from label_studio_sdk.client import LabelStudio

log = logging.getLogger(__name__)

BACKEND_TITLE = "batchlabel (SAM on cached embeddings)"


def connect_ml_backend(
    ls: LabelStudio,
    project_id: int,
    backend_url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    title: str = BACKEND_TITLE,
) -> Any:
    """Make ``backend_url`` the project's interactive ML backend; returns the SDK's ``MlBackend``.

    A backend already registered at the same URL is updated (interactive on, auth as given) rather than added twice,
    so ``batchlabel up`` can run again and again. With ``username``/``password`` Label Studio uses HTTP basic auth.
    """
    url = backend_url.rstrip("/")
    auth: dict[str, Any] = {"auth_method": "NONE"}
    if username is not None and password is not None:
        auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": username, "basic_auth_pass": password}
    for backend in ls.ml.list(project=project_id):
        if (backend.url or "").rstrip("/") == url:
            log.info("ML backend %s already connected to project %s (id %s)", url, project_id, backend.id)
            # Label Studio 1.23 answers 500 to a PATCH without the project ("setup_() missing 'project'").
            return ls.ml.update(id=backend.id, project=project_id, url=url, is_interactive=True, title=title, **auth)
    backend = ls.ml.create(project=project_id, url=url, title=title, is_interactive=True, **auth)
    log.info("connected ML backend %s to project %s (id %s, state %s)", url, project_id, backend.id, backend.state)
    return backend

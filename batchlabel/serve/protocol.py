"""Payloads of Label Studio's ML backend protocol, as Label Studio 1.23 sends and expects them.

See ``docs/serve.md``. Request models ignore fields they do not use (Label Studio adds fields between versions) but
reject wrong types with a 422 that names the field. Secrets (``access_token``, ``password``) are ``SecretStr`` so they
never appear in a repr or a log line.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from batchlabel.serve.limits import MAX_CONTEXT_REGIONS, check_context_numbers


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SetupRequest(_Payload):
    """``POST /setup``: sent on connect, on every labeling-page load and before a batch predict."""

    project: str | None = Field(default=None, description='"<id>.<created_unix>"')
    schema_: str | None = Field(default=None, alias="schema", description="the project's labeling config XML")
    hostname: str | None = None
    access_token: SecretStr | None = Field(default=None, description="never logged, never used for local files")
    extra_params: dict[str, Any] | None = None


class SetupResponse(BaseModel):
    model_version: str


class Task(_Payload):
    """One Label Studio task as serialised for the backend (``data`` holds the image URL)."""

    model_config = ConfigDict(extra="allow")

    id: int | None = None
    data: dict[str, Any]


class Context(_Payload):
    """The smart tool's regions: their numbers are bounded here (:mod:`batchlabel.serve.limits`, a 422 naming the
    field); items are then parsed one by one by :mod:`batchlabel.annotate.context`."""

    result: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_CONTEXT_REGIONS)

    @field_validator("result")
    @classmethod
    def _bounded_numbers(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        check_context_numbers(items)
        return items


class PredictParams(_Payload):
    login: str | None = None
    password: SecretStr | None = None
    context: Context | None = None


class PredictRequest(_Payload):
    """``POST /predict``: batch (no context) or interactive (``params.context.result`` from a smart tool)."""

    tasks: list[Task] = Field(min_length=1)
    project: str | None = None
    label_config: str | None = None
    params: PredictParams = Field(default_factory=PredictParams)

    @property
    def is_interactive(self) -> bool:
        context = self.params.context
        return context is not None and bool(context.result)


class Prediction(BaseModel):
    """One prediction: Label Studio result items, the prediction's score and the model version."""

    result: list[dict[str, Any]]
    score: float
    model_version: str


class PredictResponse(BaseModel):
    """One entry per task, in task order; an entry is a prediction or a (possibly empty) list of them."""

    results: list[Prediction | list[Prediction]]


class WebhookRequest(_Payload):
    """``POST /webhook``: ``START_TRAINING`` and annotation events. ``action`` and ``project`` (the project with
    its counts, e.g. ``num_tasks_with_annotations``; an id in some events) are read; the rest is ignored."""

    action: str | None = None
    project: dict[str, Any] | int | str | None = None


class TrainRequest(_Payload):
    """``POST /train``: Label Studio's "Start training" without its webhook feature flag: every annotated task
    (``annotations``, not read: ``batchlabel train`` reads the reviewed tasks itself) and ``"<id>.<created_unix>"``."""

    annotations: list[dict[str, Any]] = Field(default_factory=list)
    project: str | int | None = None
    label_config: str | None = None


class HealthResponse(BaseModel):
    status: str
    model_class: str
    model_loaded: bool
    model_id: str | None = None
    model_version: str | None = None

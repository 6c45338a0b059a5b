"""Label Studio ML backend (``batchlabel serve``): interactive Point2Label / Bbox2Label on cached embeddings.

Modules, one job each:
- ``protocol``: the request/response payloads Label Studio 1.23 really sends and expects (pydantic models).
- ``context``: a smart tool's context regions -> one object's SAM prompt.
- ``sources``: a task's image URL -> a local file under the document root, an uploaded file, or a refusal.
- ``embeddings``: embedding lookup (memory, store) and encode-once-on-miss with per-image locks.
- ``backend``: the prediction service (interactive and batch) on top of the model, store and decoder.
- ``middleware``: HTTP basic auth, request size limit, per-request access log with latency.
- ``app``: ``create_app(config, *, model=None, store=None, label_studio=None)``, the FastAPI routes.
- ``commands``: ``serve_command(config, args)``, runs uvicorn with graceful shutdown.
"""

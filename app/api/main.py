"""The FastAPI application: `create_app(settings)` wires routers, limits and error shapes.

Request limits live here because they guard every route alike: a cap on request bodies
(413, from `Content-Length` and from the bytes actually received) and JSON-only bodies for
the API (415). Errors always answer `{"detail": str | [{"loc": [...], "msg": ..., "type": ...}]}`.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.routes import (
    calibration,
    datasets,
    events,
    health,
    jobs,
    pages,
    results,
    sweeps,
    tokens,
)
from app.api.schemas import MAX_ERROR_TEXT, bounded_text
from app.db.session import session_factory
from app.services.datasets import UploadTooLarge
from app.settings import Settings, get_settings
from app.urls import API_PREFIX, DATASETS_PATH
from app.web.api_docs import install_offline_docs
from expansion.specs.parsing import spec_json_schema

log = logging.getLogger(__name__)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _nul_location(scope: Scope) -> list[str] | None:
    """Where a NUL character hides in the request's query (no database stores one).

    Path parameters are the routes' own: an id is an integer, a file name is checked."""
    for name, value in parse_qsl(
        scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
    ):
        if "\x00" in name or "\x00" in value:
            return ["query", name.replace("\x00", "")[:MAX_ERROR_TEXT]]
    return None


async def _send_error(send: Send, status: int, detail: str) -> None:
    await _send_json(send, status, {"detail": detail})


async def _send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_MULTIPART_OVERHEAD = 64 << 10
"""Bytes of multipart framing allowed on top of an upload's file size."""


class RequestLimitsMiddleware:
    """Refuses oversized bodies (413) and non-JSON API bodies (415) before any route runs.

    The body is read here, counted as it arrives (a client may lie in `Content-Length` or
    stream chunks without one), and replayed to the application when it is within the cap.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        api_prefix: str = API_PREFIX,
        max_upload_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_prefix = api_prefix
        self.max_upload_bytes = max_upload_bytes

    async def _stream_upload(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        """A data set upload streams through unbuffered: multipart only, counted as it arrives
        (`UploadTooLarge` from the receive channel once over the limit, which the route answers
        with 413), never held in memory whole."""
        assert self.max_upload_bytes is not None
        limit = self.max_upload_bytes + _MULTIPART_OVERHEAD
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            await _send_error(
                send,
                415,
                f"a data set upload is multipart/form-data (field `file`), not {content_type!r}",
            )
            return
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await _send_error(
                send, 413, f"file: larger than the upload limit of {self.max_upload_bytes} bytes"
            )
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise UploadTooLarge(self.max_upload_bytes or 0)
            return message

        await self.app(scope, counted, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then pass it on with its (buffered) body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nul_in = _nul_location(scope)
        if nul_in is not None:
            await _send_json(
                send,
                422,
                {
                    "detail": [
                        {
                            "loc": nul_in,
                            "msg": "must not contain NUL characters",
                            "type": "value_error",
                        }
                    ]
                },
            )
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if (
            self.max_upload_bytes is not None
            and scope["method"] == "POST"
            and scope["path"].rstrip("/") == DATASETS_PATH
        ):
            await self._stream_upload(scope, receive, send, headers)
            return
        limit = self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _send_error(send, 400, "invalid Content-Length header")
                return
            if int(declared) > limit:
                await _send_error(send, 413, f"request body exceeds the limit of {limit} bytes")
                return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await _send_error(send, 413, f"request body exceeds the limit of {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        is_api = scope["path"].startswith(self.api_prefix)
        content_type = headers.get("content-type")
        if is_api and (body or content_type) and not _is_json(content_type or ""):
            await _send_error(
                send, 415, f"API request bodies must be application/json, not {content_type!r}"
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _bounded_loc(part: Any) -> str | int:
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    return bounded_text(str(part))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 shape without echoing the input back: no `input`, and messages and
    field names cut to MAX_ERROR_TEXT characters (a field name can be the input itself)."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": [_bounded_loc(p) for p in err.get("loc", [])],
            "msg": bounded_text(str(err.get("msg", "")).removeprefix("Value error, ")),
            "type": str(err.get("type", "value_error")),
        }
        for err in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot be reached is the service being unavailable, not a bug (503)."""
    log.error("database unavailable: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


async def _database_refused_value(_request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot hold (out of range, bad characters) is the caller's (422).

    The routes bound their inputs so this should not happen; it is the net under them."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    log.warning("database refused a request value: %s", reason[0] if reason else exc)
    return JSONResponse(
        {
            "detail": [
                {
                    "loc": ["request"],
                    "msg": "a value is out of the range the database can store",
                    "type": "value_error",
                }
            ]
        },
        status_code=422,
    )


def _rewrite_refs(node: Any) -> Any:
    """Point pydantic's `#/$defs/X` references at OpenAPI's `#/components/schemas/X`."""
    if isinstance(node, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _rewrite_refs(v)
            )
            for k, v in node.items()
            if k != "$defs"
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


_JOB = f"{API_PREFIX}/jobs/{{job_id}}"
_JOB_ID_FROM_BODY = {"job_id": "$response.body#/id"}
# (source path, method, status) -> {link name: (target path, method, parameters)}: how the
# answer of one operation feeds the next (OpenAPI links; clients and the stateful fuzz
# test follow them from a created job to everything about it).
_LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    (f"{API_PREFIX}/jobs", "post", "201"): {
        "GetJob": (_JOB, "get", _JOB_ID_FROM_BODY),
        "CancelJob": (f"{_JOB}/cancel", "post", _JOB_ID_FROM_BODY),
        "JobMetrics": (f"{_JOB}/metrics", "get", _JOB_ID_FROM_BODY),
        "JobInsertions": (f"{_JOB}/insertions", "get", _JOB_ID_FROM_BODY),
        "JobArtifacts": (f"{_JOB}/artifacts", "get", _JOB_ID_FROM_BODY),
        "JobEvents": (f"{_JOB}/events", "get", _JOB_ID_FROM_BODY),
        "JobResults": (f"{API_PREFIX}/results", "get", _JOB_ID_FROM_BODY),
    },
    (_JOB, "get", "200"): {
        "CancelJob": (f"{_JOB}/cancel", "post", _JOB_ID_FROM_BODY),
        "JobMetrics": (f"{_JOB}/metrics", "get", _JOB_ID_FROM_BODY),
    },
    (f"{_JOB}/cancel", "post", "200"): {
        "GetJob": (_JOB, "get", _JOB_ID_FROM_BODY),
        "CancelAgain": (f"{_JOB}/cancel", "post", _JOB_ID_FROM_BODY),
    },
    (f"{API_PREFIX}/tokens", "post", "201"): {
        "RevokeToken": (
            f"{API_PREFIX}/tokens/{{token_id}}",
            "delete",
            {"token_id": "$response.body#/id"},
        ),
    },
}


def _add_links(schema: dict[str, Any]) -> None:
    """Attach `_LINKS` to the generated OpenAPI document (by the targets' operationIds)."""
    paths = schema.get("paths", {})
    for (path, method, status), links in _LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        rendered = {}
        for name, (target, target_method, parameters) in links.items():
            operation = paths.get(target, {}).get(target_method)
            if operation is None or "operationId" not in operation:
                continue
            rendered[name] = {"operationId": operation["operationId"], "parameters": parameters}
        response["links"] = rendered


def _install_openapi(app: FastAPI) -> None:
    """Add the experiment-spec schemas (the POST /jobs body) to the generated OpenAPI."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        spec_schema = spec_json_schema()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in spec_schema.get("$defs", {}).items():
            components.setdefault(name, _rewrite_refs(definition))
        components["ExperimentSpec"] = _rewrite_refs(spec_schema)
        # A spec without `kind` is a train spec: only the train variant may leave it out
        # (the discriminator alone does not say so to a generic JSON-schema reader).
        for variant in ("ExpandExperiment", "GrowExperiment"):
            required = components.get(variant, {}).setdefault("required", [])
            if "kind" not in required:
                required.append("kind")
        components["JobSubmission"] = {
            "title": "JobSubmission",
            "description": "An experiment spec and its queue priority.",
            "type": "object",
            "properties": {
                "spec": {"$ref": "#/components/schemas/ExperimentSpec"},
                "priority": {"type": "integer", "minimum": -1000, "maximum": 1000, "default": 0},
            },
            "required": ["spec"],
            "additionalProperties": False,
        }
        _add_links(schema)
        app.openapi_schema = schema
        return schema

    # Replacing the method is FastAPI's documented way to customise the schema.
    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The Jumpboard web application (REST API under /api/v1, pages, OpenAPI at /docs)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Jumpboard",
        version="0.1.0",
        description=(
            "Depth-expansion training service. Mutating endpoints need "
            "`Authorization: Bearer <token>` (create one with `jumpboard token create`)."
        ),
        docs_url=None,  # served offline by install_offline_docs
        redoc_url=None,
    )
    install_offline_docs(app)
    app.state.settings = settings
    app.state.session_factory = session_factory(settings.database_url)
    app.state.sse_poll_seconds = 0.5
    app.state.sse_max_seconds = 900.0
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(DataError, _database_refused_value)
    # SQLite's driver refuses integers past 64 bits with a bare OverflowError.
    app.add_exception_handler(OverflowError, _database_refused_value)
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(events.router, prefix=API_PREFIX)
    app.include_router(results.router, prefix=API_PREFIX)
    app.include_router(sweeps.router, prefix=API_PREFIX)
    app.include_router(tokens.router, prefix=API_PREFIX)
    app.include_router(calibration.router, prefix=API_PREFIX)
    app.include_router(datasets.router, prefix=API_PREFIX)
    app.include_router(health.router)
    app.include_router(pages.router)
    # After the pages' router, whose versioned plotly bundle lives under /static/vendor/.
    app.mount("/static", pages.StaticAssets(directory=pages.STATIC_DIR), name="static")
    _install_openapi(app)
    return app

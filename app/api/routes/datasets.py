"""Data sets as a resource: upload (multipart, field `file`), list, show, delete."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.deps import ReadAccess, SessionDep, SettingsDep, TokenDep
from app.api.pagination import MAX_PAGE, decode_cursor, encode_cursor
from app.api.schemas import (
    DATASET_ERRORS,
    DatasetList,
    DatasetOut,
    DatasetRef,
    ErrorOut,
)
from app.db.models import Dataset
from app.services.datasets import (
    DatasetRefused,
    UploadTooLarge,
    delete_dataset,
    find_dataset,
    list_datasets,
    store_upload,
)
from app.urls import dataset_path

log = logging.getLogger(__name__)

router = APIRouter(prefix="/datasets", tags=["datasets"])

_MODEL_KINDS: dict[int, Literal["mlp", "conv1d", "conv2d"]] = {3: "conv2d", 2: "conv1d", 1: "mlp"}


def dataset_out(row: Dataset) -> DatasetOut:
    """The API view of a stored data set."""
    return DatasetOut(
        id=row.id,
        name=row.name,
        sha256=row.sha256,
        format="npz" if row.format == "npz" else "image_archive",
        size_bytes=row.size_bytes,
        input_shape=list(row.input_shape),
        num_classes=row.num_classes,
        train_size=row.train_size,
        val_size=row.val_size,
        test_size=row.test_size,
        model_kind=_MODEL_KINDS.get(len(row.input_shape), "mlp"),
        created_at=row.created_at,
        spec_data={"name": "uploaded", "id": str(row.id)},
    )


_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid bearer token."},
    403: {"model": ErrorOut, "description": "The token's scope does not allow this (read)."},
    413: {"model": ErrorOut, "description": "The file is larger than the upload limit."},
    415: {"model": ErrorOut, "description": "The body is not multipart/form-data."},
    422: {
        "model": ErrorOut,
        "description": "The file is not a usable data set; the reason names the problem "
        "(zip bomb, path escape, link, pickle, NaN/inf, labels, lengths, undecodable image).",
    },
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    responses={**_UPLOAD_ERRORS, 200: {"model": DatasetOut, "description": "Stored already."}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
)
async def upload(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    _: TokenDep,
) -> DatasetOut:
    """Upload a data set: a `.npz` (x_train, y_train, x_test, y_test; x_val, y_val optional) or
    an image folder (`train/<class>/<image>`, `test/<class>/<image>`) as `.tar`, `.tar.gz` or
    `.zip`. It is checked whole before it is stored; the same content uploaded again answers
    200 with the stored data set."""
    try:
        form = await request.form(max_files=1, max_fields=4)
    except UploadTooLarge as exc:
        raise HTTPException(status_code=413, detail=str(exc)) from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            raise HTTPException(
                status_code=422,
                detail=[{"loc": ["body", "file"], "msg": "a file is required", "type": "missing"}],
            )
        try:
            stored = await run_in_threadpool(
                store_upload, session, settings, file.file, file.filename
            )
        except DatasetRefused as exc:
            raise HTTPException(status_code=int(exc.status), detail=exc.reason) from None
    finally:
        await form.close()
    if not stored.created:
        response.status_code = 200
    response.headers["Location"] = dataset_path(stored.dataset.id)
    return dataset_out(stored.dataset)


@router.get("", response_model=DatasetList, dependencies=[ReadAccess], responses=DATASET_ERRORS)
def list_all(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="From `next_cursor`.")] = None,
) -> DatasetList:
    """Uploaded data sets, newest first, one page at a time."""
    before = decode_cursor(cursor) if cursor else None
    rows = list_datasets(session, limit + 1, before)
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return DatasetList(items=[dataset_out(r) for r in rows[:limit]], next_cursor=next_cursor)


@router.get(
    "/{ref}", response_model=DatasetOut, dependencies=[ReadAccess], responses=DATASET_ERRORS
)
def show(ref: DatasetRef, session: SessionDep) -> DatasetOut:
    """One data set, by id or sha256."""
    row = find_dataset(session, ref)
    if row is None:
        raise HTTPException(status_code=404, detail=f"data set {ref} not found")
    return dataset_out(row)


@router.delete(
    "/{ref}",
    response_model=DatasetOut,
    responses={
        **DATASET_ERRORS,
        403: {"model": ErrorOut, "description": "The token's scope does not allow this (read)."},
        409: {"model": ErrorOut, "description": "A queued or running job uses the data set."},
    },
)
def delete(ref: DatasetRef, session: SessionDep, settings: SettingsDep, _: TokenDep) -> DatasetOut:
    """Delete a data set and its stored file; refused while a queued or running job uses it."""
    try:
        row = delete_dataset(session, settings, ref)
    except DatasetRefused as exc:
        raise HTTPException(status_code=int(exc.status), detail=exc.reason) from None
    return dataset_out(row)

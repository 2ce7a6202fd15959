"""API tokens over HTTP (admin scope): create with a scope and an expiry, list, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from app.api.deps import AdminDep, SessionDep
from app.api.schemas import (
    BODY_ERRORS,
    CreatedToken,
    ErrorOut,
    TokenId,
    TokenList,
    TokenOut,
    TokenRequest,
)
from app.db.session import begin_write
from app.tokens import create_token, list_tokens, parse_expiry, revoke_token
from app.tokens import token_record as plain_record

router = APIRouter(prefix="/tokens", tags=["tokens"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing, invalid, expired or revoked token."},
    403: {"model": ErrorOut, "description": "The token's scope is not admin."},
}


@router.post("", status_code=201, response_model=CreatedToken, responses={**_ERRORS, **BODY_ERRORS})
def create(body: TokenRequest, session: SessionDep, _: AdminDep) -> CreatedToken:
    """Create a token; the answer holds the token, which cannot be shown again."""
    expires_at = parse_expiry(body.expires) if body.expires is not None else None
    begin_write(session)
    row, token = create_token(session, body.name, body.scope, expires_at)
    session.commit()
    return CreatedToken(**plain_record(row), token=token)


@router.get("", response_model=TokenList, responses=_ERRORS)
def list_all(session: SessionDep, _: AdminDep) -> TokenList:
    """Every token's metadata (revoked and expired ones too)."""
    return TokenList(items=[TokenOut(**plain_record(r)) for r in list_tokens(session)])


@router.delete(
    "/{token_id}",
    response_model=TokenOut,
    responses={**_ERRORS, 404: {"model": ErrorOut, "description": "No such token."}},
)
def revoke(token_id: TokenId, session: SessionDep, _: AdminDep) -> TokenOut:
    """Revoke a token: every request with it is refused (401) from now on."""
    row = revoke_token(session, token_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"token {token_id} not found")
    session.commit()
    return TokenOut(**plain_record(row))

"""FastAPI dependencies: the settings, a database session per request, and bearer-token auth
with scopes (read < submit < admin)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.db.models import ApiToken
from app.settings import Settings
from app.tokens import TokenScope, find_token, token_scope, touch_token

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API token from `jumpboard token create` (the last line it prints).",
)


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request; rolled back if the request fails, always closed."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=message,
        headers={"WWW-Authenticate": "Bearer"},
    )


def authorize(request: Request, credentials: Credentials, needed: TokenScope) -> ApiToken:
    """The caller's active token with at least scope `needed`.

    401 (with `WWW-Authenticate: Bearer`) when the token is missing, unknown, revoked or
    expired; 403 when it is valid but its scope is too small. Uses a short session of its
    own, closed before returning: authorization never holds a connection for the rest of a
    request (a streaming response would otherwise keep it for minutes)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    factory = request.app.state.session_factory
    with factory() as session:
        row = find_token(session, credentials.credentials)
        session.commit()
    if row is None:
        raise _unauthorized("invalid, expired or revoked token")
    if not token_scope(row).allows(needed):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this token has scope {token_scope(row).value}; this needs {needed.value}",
        )
    touch_token(factory, row)
    return row


def require_token(request: Request, credentials: Credentials) -> ApiToken:
    """A token allowed to submit and cancel jobs (scope `submit` or `admin`)."""
    return authorize(request, credentials, TokenScope.SUBMIT)


def require_admin(request: Request, credentials: Credentials) -> ApiToken:
    """A token allowed to manage tokens (scope `admin`)."""
    return authorize(request, credentials, TokenScope.ADMIN)


def require_read_access(request: Request, settings: SettingsDep, credentials: Credentials) -> None:
    """Reads are public unless `require_token_for_reads` is set; then they need any token."""
    if settings.require_token_for_reads:
        authorize(request, credentials, TokenScope.READ)


TokenDep = Annotated[ApiToken, Depends(require_token)]
AdminDep = Annotated[ApiToken, Depends(require_admin)]
ReadAccess = Depends(require_read_access)

"""FastAPI dependencies: the settings, a database session per request, and bearer-token auth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.db.models import ApiToken
from app.settings import Settings
from app.tokens import touch_token, verify_token

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API token from `jumpboard token create` (the last line it prints).",
)


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


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


def require_token(request: Request, session: SessionDep, credentials: Credentials) -> ApiToken:
    """The caller's API token; 401 with `WWW-Authenticate: Bearer` when missing or unknown."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    row = verify_token(session, credentials.credentials)
    # End the read transaction: the route's writes start their own (on SQLite, a read
    # transaction upgraded to a writer can fail at once instead of waiting for the lock).
    session.commit()
    if row is None:
        raise _unauthorized("invalid or revoked token")
    touch_token(request.app.state.session_factory, row)
    return row


def require_read_access(
    request: Request, session: SessionDep, settings: SettingsDep, credentials: Credentials
) -> None:
    """Reads are public unless `require_token_for_reads` is set; then they need a token too."""
    if settings.require_token_for_reads:
        require_token(request, session, credentials)


TokenDep = Annotated[ApiToken, Depends(require_token)]
ReadAccess = Depends(require_read_access)

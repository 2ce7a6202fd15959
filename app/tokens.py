"""API tokens: create one (only its hash is stored), verify one in constant time.

A token is a high-entropy random string; the database keeps the SHA-256 of it, so a leaked
database does not leak usable tokens. The embedded default (`jumpboard serve` on SQLite) also
keeps one local token in a file readable only by its owner, so that `jumpboard submit` works
against the local server without copying tokens around.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import ApiToken
from app.db.session import begin_write
from app.settings import DEFAULT_HOME, Settings, sqlite_path

log = logging.getLogger(__name__)

TOKEN_PREFIX = "jb_"
LOCAL_TOKEN_FILE = "local-token"
LOCAL_TOKEN_NAME = "local"
_MAX_TOKEN_CHARS = 256


def generate_token() -> str:
    """A fresh random token (256 bits of entropy, URL-safe, prefixed `jb_`)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex SHA-256 digest stored in place of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str = "") -> tuple[ApiToken, str]:
    """Store a new token's hash under `name` and return the row and the plain token."""
    token = generate_token()
    row = ApiToken(name=name[:120], token_hash=hash_token(token))
    session.add(row)
    session.flush()
    log.info("created API token %s (%s)", row.id, name or "unnamed")
    return row, token


def verify_token(session: Session, token: str) -> ApiToken | None:
    """The active token row matching `token`, or None; the final comparison is constant-time.

    Only reads: `touch_token` records the use in a write transaction of its own."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    digest = hash_token(token)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or row.revoked:
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def touch_token(session_factory: sessionmaker[Session], row: ApiToken) -> None:
    """Record that `row` was just used (at most once a minute; best effort, never raises)."""
    now = datetime.now(UTC)
    if row.last_used_at is not None and (now - row.last_used_at).total_seconds() < 60:
        return
    try:
        with session_factory() as session:
            begin_write(session)
            session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
            session.commit()
    except SQLAlchemyError as exc:  # a busy database must not fail the request it authorizes
        log.warning("could not record the use of token %s: %s", row.id, exc)


def token_home(settings: Settings) -> Path:
    """The settings folder holding the local token: the SQLite file's folder, else ~/.jumpboard."""
    path = sqlite_path(settings.database_url)
    return path.parent if path is not None else DEFAULT_HOME


def local_token_path(home: Path) -> Path:
    """Where the embedded server keeps its local token (inside the settings folder `home`)."""
    return home / LOCAL_TOKEN_FILE


def read_local_token(home: Path) -> str | None:
    """The local token stored under `home`, or None when there is none."""
    path = local_token_path(home)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None
    return token or None


def write_local_token(home: Path, token: str) -> Path:
    """Write `token` to the local token file, readable and writable by its owner only."""
    home.mkdir(parents=True, exist_ok=True)
    path = local_token_path(home)
    # Create with 0600 from the start: never a moment where others could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def ensure_local_token(session: Session, home: Path) -> str:
    """The local token, created and stored (hash in the database, token in a file) if needed.

    A token file whose token the database does not know (say, a fresh database) is replaced.
    """
    existing = read_local_token(home)
    if existing is not None and verify_token(session, existing) is not None:
        return existing
    _, token = create_token(session, LOCAL_TOKEN_NAME)
    write_local_token(home, token)
    return token

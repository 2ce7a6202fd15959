"""API tokens: create one with a scope and an expiry (only its hash is stored), verify one in
constant time, list and revoke them.

A token is a high-entropy random string; the database keeps the SHA-256 of it, so a leaked
database does not leak usable tokens. The embedded default (`jumpboard serve` on SQLite) also
keeps one local token in a file readable only by its owner, so that `jumpboard submit` works
against the local server without copying tokens around.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


class TokenScope(enum.StrEnum):
    """What a token may do; each scope includes the ones before it (read < submit < admin)."""

    READ = "read"
    """Read jobs and results (needed only when `require_token_for_reads` is set)."""
    SUBMIT = "submit"
    """Also submit and cancel jobs."""
    ADMIN = "admin"
    """Also create, list and revoke tokens."""

    @property
    def rank(self) -> int:
        """Position in the order read < submit < admin."""
        return list(TokenScope).index(self)

    def allows(self, needed: TokenScope) -> bool:
        """True when a token of this scope may do what `needed` requires."""
        return self.rank >= needed.rank


def token_scope(row: ApiToken) -> TokenScope:
    """The scope of a stored token (an unknown stored value grants nothing beyond read)."""
    try:
        return TokenScope(row.scope)
    except ValueError:
        return TokenScope.READ


def is_expired(row: ApiToken, now: datetime | None = None) -> bool:
    """True once the token's expiry has passed (a token without one never expires)."""
    return row.expires_at is not None and row.expires_at <= (now or datetime.now(UTC))


def create_token(
    session: Session,
    name: str = "",
    scope: TokenScope = TokenScope.SUBMIT,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token's hash under `name` and return the row and the plain token."""
    token = generate_token()
    row = ApiToken(
        name=name[:120],
        token_hash=hash_token(token),
        scope=TokenScope(scope).value,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    log.info("created API token %s (%s, scope %s)", row.id, name or "unnamed", row.scope)
    return row, token


def verify_token(
    session: Session, token: str, needed: TokenScope = TokenScope.READ
) -> ApiToken | None:
    """The active token row matching `token` with at least scope `needed`, or None.

    Revoked and expired tokens match nothing. The final comparison is constant-time. Only
    reads: `touch_token` records the use in a write transaction of its own."""
    found = find_token(session, token)
    if found is None or not token_scope(found).allows(needed):
        return None
    return found


def find_token(session: Session, token: str) -> ApiToken | None:
    """The active (not revoked, not expired) token row matching `token` whatever its scope."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        return None
    digest = hash_token(token)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or row.revoked or is_expired(row):
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token row (revoked and expired ones too), oldest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int) -> ApiToken | None:
    """Mark token `token_id` revoked (it fails from the next request on); None if unknown."""
    begin_write(session)
    row = session.get(ApiToken, token_id)
    if row is None:
        return None
    if not row.revoked:
        row.revoked = True
        row.revoked_at = datetime.now(UTC)
        session.flush()
        log.info("revoked API token %s (%s)", row.id, row.name or "unnamed")
    return row


def token_record(row: ApiToken, now: datetime | None = None) -> dict[str, Any]:
    """A token's metadata as plain JSON-able values (never the token or its hash)."""
    return {
        "id": row.id,
        "name": row.name,
        "scope": token_scope(row).value,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked": row.revoked,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "expired": is_expired(row, now),
    }


_DURATION = re.compile(r"^(\d{1,6})([mhdw])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_expiry(text: str, now: datetime | None = None) -> datetime | None:
    """An expiry from `30d`, `12h`, `90m`, `2w`, an ISO date/time (UTC if no zone), or `never`.

    Raises ValueError naming the accepted forms; a moment in the past is refused too."""
    now = now or datetime.now(UTC)
    value = text.strip().lower()
    if value in ("", "never", "none"):
        return None
    match = _DURATION.match(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if amount == 0:
            raise ValueError("must be a positive duration")
        return now + timedelta(seconds=amount * _UNIT_SECONDS[unit])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration (30d, 12h, 90m, 2w), an ISO date/time or 'never'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment <= now:
        raise ValueError(f"{text!r} is in the past")
    return moment.astimezone(UTC)


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
    if existing is not None and verify_token(session, existing, TokenScope.ADMIN) is not None:
        return existing
    _, token = create_token(session, LOCAL_TOKEN_NAME, TokenScope.ADMIN)
    write_local_token(home, token)
    return token

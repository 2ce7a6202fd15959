"""API tokens: only hashes are stored, verification, the local token file, `jumpboard token`."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from app.cli import main
from app.db.models import ApiToken
from app.db.session import session_factory
from app.tokens import (
    create_token,
    ensure_local_token,
    generate_token,
    hash_token,
    local_token_path,
    read_local_token,
    verify_token,
    write_local_token,
)


def test_tokens_are_random_and_hashed() -> None:
    tokens = {generate_token() for _ in range(50)}
    assert len(tokens) == 50
    token = tokens.pop()
    assert token.startswith("jb_") and len(token) >= 40
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert hash_token(token) != hash_token(token + "x")


def test_database_keeps_only_the_hash(db_url: str) -> None:
    factory = session_factory(db_url)
    with factory() as session:
        row, token = create_token(session, "ci")
        session.commit()
    with factory() as session:
        stored = session.scalars(select(ApiToken)).one()
        assert stored.name == "ci"
        assert stored.token_hash == hash_token(token)
        assert token not in {str(v) for v in vars(stored).values()}
        assert verify_token(session, token).id == row.id
        assert verify_token(session, token[:-1]) is None
        assert verify_token(session, "") is None
        assert verify_token(session, "x" * 10_000) is None
        stored.revoked = True
        session.commit()
        assert verify_token(session, token) is None


def test_local_token_file_is_private_and_reused(sqlite_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    factory = session_factory(sqlite_url)
    with factory() as session:
        token = ensure_local_token(session, home)
        session.commit()
        mode = stat.S_IMODE(local_token_path(home).stat().st_mode)
        assert mode == 0o600
        assert read_local_token(home) == token
        assert ensure_local_token(session, home) == token  # reused, not replaced
        assert verify_token(session, token) is not None
    # A token file the database does not know (say, a new database) is replaced.
    write_local_token(home, "jb_stale")
    with factory() as session:
        fresh = ensure_local_token(session, home)
        session.commit()
        assert fresh != "jb_stale"
        assert verify_token(session, fresh) is not None
    assert read_local_token(tmp_path / "nowhere") is None


def test_token_create_prints_the_token_last(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "--name", "laptop", "--database-url", sqlite_url]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    token = lines[-1]
    assert "laptop" in lines[0]
    with session_factory(sqlite_url)() as session:
        row = verify_token(session, token)
        assert row is not None and row.name == "laptop"


def test_token_create_explains_a_bad_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"  # never migrated: no tokens table
    assert main(["token", "create", "--database-url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "jumpboard db upgrade" in err
    assert "Traceback" not in err

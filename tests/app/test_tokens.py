"""API tokens: only hashes are stored, verification, the local token file, `jumpboard token`;
scopes (read < submit < admin), expiry, listing and revocation from the API and the CLI."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app.api.main import create_app
from app.cli import main
from app.db.models import ApiToken
from app.db.session import session_factory
from app.settings import Settings
from app.tokens import (
    TokenScope,
    create_token,
    ensure_local_token,
    generate_token,
    hash_token,
    local_token_path,
    parse_expiry,
    read_local_token,
    verify_token,
    write_local_token,
)

TINY_SPEC = {
    "kind": "train",
    "data": {"name": "digits"},
    "model": {"kind": "mlp", "width": 8, "depth": 1},
    "train": {"epochs": 1},
}


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
        verified = verify_token(session, token)
        assert verified is not None and verified.id == row.id
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


# ---- scopes, expiry, listing and revocation --------------------------------------------------


def _app_client(url: str, tmp_path: Path) -> tuple[TestClient, dict[str, str]]:
    """A test client of a fresh app and the tokens of each scope (by scope name)."""
    app = create_app(Settings(database_url=url, artifact_dir=tmp_path / "artifacts"))
    tokens = {}
    with app.state.session_factory() as session:
        for scope in TokenScope:
            _, tokens[scope.value] = create_token(session, scope.value, scope)
        session.commit()
    return TestClient(app), tokens


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_scopes_grant_read_submit_admin_in_order(db_url: str, tmp_path: Path) -> None:
    client, tokens = _app_client(db_url, tmp_path)
    with client:
        for scope, token in tokens.items():
            submitted = client.post("/api/v1/jobs", json=TINY_SPEC, headers=_bearer(token))
            assert submitted.status_code == (403 if scope == "read" else 201), scope
            listed = client.get("/api/v1/tokens", headers=_bearer(token))
            assert listed.status_code == (200 if scope == "admin" else 403), scope
        assert client.get("/api/v1/tokens").status_code == 401
        refused = client.post("/api/v1/jobs", json=TINY_SPEC, headers=_bearer(tokens["read"]))
        assert "scope read" in refused.json()["detail"]


def test_tokens_api_creates_lists_and_revokes_at_once(db_url: str, tmp_path: Path) -> None:
    client, tokens = _app_client(db_url, tmp_path)
    admin = _bearer(tokens["admin"])
    with client:
        created = client.post(
            "/api/v1/tokens", json={"name": "ci", "scope": "submit", "expires": "7d"}, headers=admin
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["scope"] == "submit" and body["token"].startswith("jb_")
        expires = datetime.fromisoformat(body["expires_at"])
        assert timedelta(days=6.9) < expires - datetime.now(UTC) <= timedelta(days=7)
        new = _bearer(body["token"])
        assert client.post("/api/v1/jobs", json=TINY_SPEC, headers=new).status_code == 201

        listed = client.get("/api/v1/tokens", headers=admin).json()["items"]
        assert [t["name"] for t in listed] == ["read", "submit", "admin", "ci"]
        assert all("token" not in t and "token_hash" not in t for t in listed)
        assert body["token"] not in json.dumps(listed)

        revoked = client.delete(f"/api/v1/tokens/{body['id']}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        after = client.post("/api/v1/jobs", json=TINY_SPEC, headers=new)
        assert after.status_code == 401  # the very next request
        assert client.delete("/api/v1/tokens/424242", headers=admin).status_code == 404
        bad = client.post("/api/v1/tokens", json={"expires": "yesterday"}, headers=admin)
        assert bad.status_code == 422
        bad = client.post("/api/v1/tokens", json={"scope": "root"}, headers=admin)
        assert bad.status_code == 422


def test_expired_tokens_are_refused(db_url: str, tmp_path: Path) -> None:
    client, _ = _app_client(db_url, tmp_path)
    factory = session_factory(db_url)
    with factory() as session:
        _, old = create_token(
            session, "old", TokenScope.ADMIN, datetime.now(UTC) - timedelta(seconds=1)
        )
        _, fresh = create_token(
            session, "fresh", TokenScope.ADMIN, datetime.now(UTC) + timedelta(hours=1)
        )
        session.commit()
        assert verify_token(session, old) is None
        assert verify_token(session, fresh) is not None
    with client:
        assert client.get("/api/v1/tokens", headers=_bearer(old)).status_code == 401
        assert client.get("/api/v1/tokens", headers=_bearer(fresh)).status_code == 200


def test_parse_expiry_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("never", now) is None
    assert parse_expiry("90m", now) == now + timedelta(minutes=90)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert parse_expiry("2026-03-01", now) == datetime(2026, 3, 1, tzinfo=UTC)
    for bad in ("0d", "soon", "2025-01-01", "-3d", "5y"):
        with pytest.raises(ValueError):
            parse_expiry(bad, now)


def test_token_cli_create_list_revoke(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--database-url", sqlite_url]
    assert (
        main(["token", "create", "--name", "bot", "--scope", "read", "--expires", "1d", *db]) == 0
    )
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["token", "create", "--name", "ops", "--scope", "admin", "--json", *db]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["scope"] == "admin" and created["expires_at"] is None
    assert created["token"].startswith("jb_")

    assert main(["token", "list", "--json", *db]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["name"], t["scope"], t["revoked"]) for t in listed] == [
        ("bot", "read", False),
        ("ops", "admin", False),
    ]
    assert listed[0]["expires_at"] is not None
    assert token not in json.dumps(listed) and created["token"] not in json.dumps(listed)
    assert main(["token", "list", *db]) == 0
    text = capsys.readouterr().out
    assert "bot" in text and "active" in text

    with session_factory(sqlite_url)() as session:
        assert verify_token(session, token) is not None
    assert main(["token", "revoke", str(listed[0]["id"]), "--json", *db]) == 0
    assert json.loads(capsys.readouterr().out)["revoked"] is True
    with session_factory(sqlite_url)() as session:
        assert verify_token(session, token) is None
    assert main(["token", "revoke", "999", *db]) == 1
    assert "no token 999" in capsys.readouterr().err
    assert main(["token", "create", "--expires", "whenever", *db]) == 2
    assert "--expires" in capsys.readouterr().err


def test_migrated_tokens_keep_full_rights(sqlite_url: str) -> None:
    """Tokens created before scopes existed get the server default: admin (what they had)."""
    engine = session_factory(sqlite_url).kw["bind"]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_tokens (name, token_hash, created_at, revoked) "
                "VALUES ('legacy', :h, CURRENT_TIMESTAMP, 0)"
            ),
            {"h": hash_token("jb_legacy")},
        )
    with session_factory(sqlite_url)() as session:
        row = verify_token(session, "jb_legacy", TokenScope.ADMIN)
        assert row is not None and row.scope == "admin"

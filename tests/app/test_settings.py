"""Settings: defaults, environment variables, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings, sqlite_path


def test_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.lease_seconds == 60
    assert settings.heartbeat_seconds == 10
    assert settings.max_attempts == 3
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.require_token_for_reads is False
    assert settings.max_body_bytes == 1 << 20
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("jumpboard.db")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUMPBOARD_DATABASE_URL", f"sqlite:///{tmp_path}/sub/dir/x.db")
    monkeypatch.setenv("JUMPBOARD_ARTIFACT_DIR", str(tmp_path / "art"))
    monkeypatch.setenv("JUMPBOARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUMPBOARD_LEASE_SECONDS", "5")
    monkeypatch.setenv("JUMPBOARD_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("JUMPBOARD_WORKER_DEVICES", " 0, 1 ")
    monkeypatch.setenv("JUMPBOARD_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.lease_seconds == 5
    assert settings.worker_devices == "0,1"
    assert settings.device_offer.gpus == (0, 1)
    assert settings.log_level == "DEBUG"
    assert settings.job_dir(7) == tmp_path / "art" / "7"
    # load_settings creates the folders the service writes into
    assert (tmp_path / "sub" / "dir").is_dir()
    assert (tmp_path / "art").is_dir()
    assert (tmp_path / "data").is_dir()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"database_url": "mysql://x/y"}, "JUMPBOARD_DATABASE_URL"),
        ({"worker_devices": "0,gpu1"}, "comma-separated GPU indices"),
        ({"worker_devices": "0,0"}, "distinct"),
        ({"worker_devices": "cpu:0"}, "cpu:N needs 1 <= N"),
        ({"lease_seconds": 5, "heartbeat_seconds": 5}, "heartbeat_seconds (5.0) must be below"),
        ({"port": 0}, "JUMPBOARD_PORT"),
        ({"max_attempts": 0}, "JUMPBOARD_MAX_ATTEMPTS"),
        ({"log_level": "loud"}, "JUMPBOARD_LOG_LEVEL"),
    ],
)
def test_bad_values_are_named(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite:////tmp/a/b.db") == Path("/tmp/a/b.db")
    assert sqlite_path("sqlite:///rel.db") == Path("rel.db")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("postgresql+psycopg://u@h/db") is None

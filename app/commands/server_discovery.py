"""Where the CLI's client commands find the server and their token.

`jumpboard serve` writes a small file next to its local token (`local-server.json` in the
settings folder: URL, port, pid) and removes it when it stops. Every client command
(`submit`, `status`, `jobs ...`) resolves the server as `--server`, else `JUMPBOARD_SERVER`,
else the URL in that file, else `http://127.0.0.1:<JUMPBOARD_PORT or 8000>`. The token is
`--token`, else `JUMPBOARD_TOKEN`, else the local token whenever the server is the one the
local `serve` announced (also when it was named explicitly with `--server`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.cli import CliError

LOCAL_SERVER_FILE = "local-server.json"

# Exit statuses of the client commands (README, "Exit codes").
EXIT_JOB_UNSUCCESSFUL = 1
"""The job failed or was cancelled (`submit --wait`, `jobs wait`), or the server refused the
request (an HTTP error answer: 401, 404, 409, 422...)."""
EXIT_USAGE = 2
"""A bad command line, spec file or setting (nothing was sent)."""
EXIT_UNREACHABLE = 3
"""The server could not be reached or did not answer in time."""
EXIT_TIMEOUT = 4
"""`jobs wait --timeout` ran out before the job ended."""
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "::"})


@dataclass(frozen=True)
class LocalServer:
    """What a local `jumpboard serve` announced: its URL and its process id."""

    url: str
    port: int
    pid: int


def load_cli_settings() -> Any:
    """The settings (from `JUMPBOARD_*`), or a one-line CliError naming the bad setting."""
    from app.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def settings_home(settings: Any) -> Path:
    """The settings folder: where the local token and the local server file live."""
    from app.tokens import token_home

    return token_home(settings)


def local_server_path(home: Path) -> Path:
    """The local server file inside the settings folder `home`."""
    return home / LOCAL_SERVER_FILE


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to `host:port`."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def write_local_server(home: Path, host: str, port: int) -> Path:
    """Announce a local server (written by `serve` before it starts listening)."""
    home.mkdir(parents=True, exist_ok=True)
    path = local_server_path(home)
    payload = {"url": client_url(host, port), "port": port, "pid": os.getpid()}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def remove_local_server(home: Path) -> None:
    """Forget the announcement when this process wrote it (another `serve` may own it now)."""
    found = read_local_server(home, require_alive=False)
    if found is not None and found.pid == os.getpid():
        local_server_path(home).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_local_server(home: Path, *, require_alive: bool = True) -> LocalServer | None:
    """The local server announced under `home`, or None (no file, unreadable, or its process
    is gone after a crash)."""
    try:
        payload = json.loads(local_server_path(home).read_text(encoding="utf-8"))
        found = LocalServer(
            url=str(payload["url"]).rstrip("/"), port=int(payload["port"]), pid=int(payload["pid"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if require_alive and not _alive(found.pid):
        return None
    return found


def _same_server(a: str, b: str) -> bool:
    """True when two URLs name the same server (loopback spellings count as one host)."""
    first, second = urlsplit(a.rstrip("/")), urlsplit(b.rstrip("/"))

    def host(parts: Any) -> str:
        name = (parts.hostname or "").lower()
        return "loopback" if name in _LOOPBACK_NAMES else name

    def port(parts: Any) -> int | None:
        return parts.port or (443 if parts.scheme == "https" else 80)

    return host(first) == host(second) and port(first) == port(second)


def resolve_server(server: str | None) -> str:
    """`server`, else `JUMPBOARD_SERVER`, else the local `serve`'s URL, else the default port."""
    if server:
        return server.rstrip("/")
    if os.environ.get("JUMPBOARD_SERVER"):
        return os.environ["JUMPBOARD_SERVER"].rstrip("/")
    settings = load_cli_settings()
    local = read_local_server(settings_home(settings))
    if local is not None:
        return local.url
    return client_url(settings.host, settings.port)


def resolve_token(token: str | None, server: str) -> str | None:
    """`token`, else `JUMPBOARD_TOKEN`, else the local token when `server` is the local one."""
    if token:
        return token
    if os.environ.get("JUMPBOARD_TOKEN"):
        return os.environ["JUMPBOARD_TOKEN"]
    from app.tokens import read_local_token

    settings = load_cli_settings()
    home = settings_home(settings)
    local = read_local_server(home)
    local_url = local.url if local is not None else client_url(settings.host, settings.port)
    if _same_server(server, local_url):
        return read_local_token(home)
    return None


def client_failure(exc: Exception) -> CliError:
    """The CliError of a failed request: exit 3 when the server was not reached, else 1."""
    status = getattr(exc, "status", None)
    return CliError(
        str(exc), code=EXIT_JOB_UNSUCCESSFUL if status is not None else EXIT_UNREACHABLE
    )

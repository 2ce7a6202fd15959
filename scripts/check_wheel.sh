#!/usr/bin/env bash
# The wheel works on its own: build it, install it into a fresh virtualenv outside the checkout,
# then, from another folder, migrate an empty SQLite database and serve it; GET /api/v1/jobs
# must answer 200. Usage: scripts/check_wheel.sh [PYTHON] (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$PWD"
python_bin="${1:-$checkout/.venv/bin/python}"
work="$(mktemp -d "${TMPDIR:-/tmp}/jumpboard-wheel.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; then
    for _ in $(seq 1 40); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Build from a copy of the tracked files, so build/ and *.egg-info never land in the checkout.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md app expansion migrations \
  | xargs -0 cp --parents -t "$work/src"
"$python_bin" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/jumpboard-*.whl)"
echo "check_wheel: built $(basename "$wheel")"

"$python_bin" -m venv "$work/venv"
# The CPU build of torch first (served from the local wheel folder where the machine has one).
"$work/venv/bin/pip" install -q --no-compile "torch==2.13.0" || "$work/venv/bin/pip" install -q --no-compile "torch>=2.4,<2.15"
"$work/venv/bin/pip" install -q --no-compile "$wheel"

mkdir "$work/run"
cd "$work/run"
export HOME="$work/home"  # the local token file and default data live under ~/.jumpboard
mkdir -p "$HOME"
export JUMPBOARD_DATABASE_URL="sqlite:///$work/run/jumpboard.db"
export JUMPBOARD_ARTIFACT_DIR="$work/run/artifacts"
"$work/venv/bin/jumpboard" db upgrade
port="$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$work/venv/bin/jumpboard" serve --host 127.0.0.1 --port "$port" >"$work/serve.log" 2>&1 &
server_pid=$!
check_status=0
"$work/venv/bin/python" - "$port" "$checkout" "$server_pid" <<'PY' || check_status=$?
import os
import sys
import time
import urllib.error
import urllib.request

import app

port, checkout, server_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
assert not app.__file__.startswith(checkout), f"app imported from the checkout: {app.__file__}"


def server_alive(pid: int) -> bool:
    """False once `jumpboard serve` has exited (a zombie until the shell reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel instead
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


deadline = time.monotonic() + 120
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/jobs", timeout=5) as answer:
            status = answer.status
        break
    except urllib.error.HTTPError as error:  # an answer, just not a 2xx one
        status = error.code
        break
    except (urllib.error.URLError, ConnectionError):
        if not server_alive(server_pid):
            raise SystemExit("check_wheel: jumpboard serve exited") from None
        if time.monotonic() > deadline:
            raise SystemExit("check_wheel: the server did not answer within 120 s") from None
        time.sleep(0.5)
assert status == 200, f"GET /api/v1/jobs answered {status}"
print(f"check_wheel: GET /api/v1/jobs -> {status} from {app.__file__}")
PY
if [ "$check_status" != 0 ]; then
  echo "check_wheel: failed; the server said:" >&2
  cat "$work/serve.log" >&2
  exit "$check_status"
fi

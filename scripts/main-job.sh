#!/usr/bin/env bash
# The main job in one command, on a fresh machine: set up .venv, start the service on the
# embedded default (SQLite file, in-process worker, CPU, 127.0.0.1:8000) unless one is already
# serving, submit examples/mnist1d-expand.yaml and wait for its answer (the last line printed).
# The service keeps running afterwards so that its pages can be browsed; the script says how
# to stop it. Usage: scripts/main-job.sh [SPEC]
set -euo pipefail
cd "$(dirname "$0")/.."
spec="${1:-examples/mnist1d-expand.yaml}"
bash scripts/setup.sh
port="${JUMPBOARD_PORT:-8000}"
url="http://127.0.0.1:${port}"
ready() {
  .venv/bin/python -c "import urllib.request; urllib.request.urlopen('${url}/readyz', timeout=2)" \
    >/dev/null 2>&1
}
started=""
if ! ready; then
  mkdir -p runs
  .venv/bin/jumpboard serve >runs/serve.log 2>&1 &
  started=$!
  for _ in $(seq 1 120); do
    ready && break
    if ! kill -0 "$started" 2>/dev/null; then
      echo "main-job: the service did not start; its log:" >&2
      cat runs/serve.log >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "main-job: service started at ${url} (pid ${started}, log runs/serve.log)"
fi
status=0
.venv/bin/jumpboard submit "$spec" --wait || status=$?
if [ -n "$started" ]; then
  echo "main-job: pages at ${url}/ ; stop the service with: kill ${started}"
fi
exit "$status"

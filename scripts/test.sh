#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then lint, type-check, check the import
# contracts and the wheel, and run the whole suite.
# Installs: .venv with the dev extras, Debian's chromium (browser tests), and starts the
# local PostgreSQL (integration tests) when it is not running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy                      # [tool.mypy] in pyproject.toml: app, expansion, tests, benchmarks
.venv/bin/lint-imports              # [tool.importlinter] contracts in pyproject.toml
bash scripts/check_wheel.sh         # the built wheel installs, migrates and serves on its own
exec .venv/bin/python -m pytest "$@"

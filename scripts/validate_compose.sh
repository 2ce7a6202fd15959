#!/usr/bin/env bash
# Check the deployment files without starting anything:
#  1. docker-compose.yml against the Compose specification's JSON schema (check-jsonschema's
#     vendored copy; the CPU override, which uses `!reset`, is checked by the test below);
#  2. tests/app/test_deploy_files.py (schema of both files and the merged CPU stack, commands,
#     settings, structure);
#  3. where the Docker Compose plugin is installed, `docker compose config` on both stacks
#     (it needs no running Docker daemon).
# Usage: scripts/validate_compose.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=".venv/bin/python"
[ -x "$python_bin" ] || python_bin="python3"

"$python_bin" -m check_jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
"$python_bin" -m pytest -q -p no:cacheprovider tests/app/test_deploy_files.py

if docker compose version >/dev/null 2>&1; then
  export POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-validate-only}"
  docker compose -f docker-compose.yml config --quiet
  docker compose -f docker-compose.yml -f docker-compose.cpu.yml config --quiet
  echo "docker compose config: both stacks ok"
else
  echo "docker compose plugin not installed: skipped 'docker compose config'"
fi

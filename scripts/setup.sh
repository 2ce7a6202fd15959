#!/usr/bin/env bash
# Create .venv and install Jumpboard into it. Usage: scripts/setup.sh [--dev]
# The CPU build of torch is installed first (pip finds a local wheel where the machine has one);
# a machine that already has torch in .venv (say a CUDA build) keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  if command -v python3.11 >/dev/null 2>&1; then python_bin=python3.11; else python_bin=python3; fi
fi
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/pip install -q "torch==2.13.0" || .venv/bin/pip install -q "torch>=2.4,<2.15"
fi
.venv/bin/pip install -q -e ".${extras}"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"

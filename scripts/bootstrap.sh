#!/usr/bin/env bash
# Sets up everything Sortie needs on this machine, and does nothing when it already is:
# redis-server (Debian/Ubuntu package) when missing, a virtualenv in .venv with every
# package of the repository installed in editable mode, versions pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bootstrap: installing redis-server" >&2
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  else
    echo "bootstrap: please install redis-server (7.0 or newer) and run me again" >&2
    exit 1
  fi
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

PACKAGES=(libs/sortie-core services/orchestrator services/m365-worker services/ent-worker
          services/workstation-agent simulators cli libs/sortie-testkit)
stamp_src=$(cat constraints.txt requirements-dev.txt "${PACKAGES[@]/%//pyproject.toml}" | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.sortie-stamp 2>/dev/null)" != "$stamp_src" ]; then
  echo "bootstrap: installing Python packages into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  args=()
  for p in "${PACKAGES[@]}"; do args+=(-e "$p"); done
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
    "${args[@]}" -r requirements-dev.txt
  echo "$stamp_src" > .venv/.sortie-stamp
fi

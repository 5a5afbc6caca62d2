#!/usr/bin/env bash
# The test command: sets up what is missing, then lint, types and every test.
# Extra arguments go to pytest (e.g. scripts/test.sh -k saga).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/bootstrap-test.sh
echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy -p sortie_core -p sortie_orchestrator -p sortie_m365 -p sortie_ent \
  -p sortie_workstation -p sortie_simulators -p sortie_cli -p sortie_testkit
echo "== pytest" >&2
.venv/bin/pytest -q "$@"

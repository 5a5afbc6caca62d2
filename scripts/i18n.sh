#!/usr/bin/env bash
# Updates the catalogues of the pages after a text changed: extracts every marked text of
# the orchestrator's Python and templates into messages.pot and merges it into each
# language's messages.po (new texts come out untranslated: translate them, then run
# tests/orchestrator/statuspage/test_i18n.py). The .po files are compiled when the service loads them.
set -euo pipefail
cd "$(dirname "$0")/../services/orchestrator"
L=src/sortie_orchestrator/http/ui/locale
../../.venv/bin/pybabel -q extract -F babel.cfg -k N_ --no-location --sort-output \
  --omit-header -o "$L/messages.pot" src/sortie_orchestrator
../../.venv/bin/pybabel -q update -i "$L/messages.pot" -d "$L" --ignore-obsolete \
  --no-fuzzy-matching --width 100 --ignore-pot-creation-date

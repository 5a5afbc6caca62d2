#!/usr/bin/env bash
# What only the tests need, on top of scripts/bootstrap.sh: the Compose schema, promtool,
# Chromium, Caddy and kubectl (Debian packages). `sortie up` does not need them, so it does not install them.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Compose specification's JSON schema, for the test that validates docker-compose.yml
# (there is no Docker engine to run it here). Debian's docker-compose package ships it.
schema=.venv/share/compose-spec/compose_spec.json
if [ ! -s "$schema" ] && command -v apt-get >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download docker-compose >/dev/null 2>&1); then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get download docker-compose >/dev/null 2>&1) || true
  fi
  if ls "$tmp"/docker-compose_*.deb >/dev/null 2>&1; then
    dpkg-deb -x "$tmp"/docker-compose_*.deb "$tmp/x"
    mkdir -p "$(dirname "$schema")"
    cp "$tmp/x/usr/lib/python3/dist-packages/compose/config/compose_spec.json" "$schema"
  fi
  rm -rf "$tmp"
fi

# promtool (Debian's prometheus package): tests/deploy checks the Prometheus configuration,
# the rules and their unit tests, and every service's /metrics output with it. The
# package's own Prometheus service is not needed; policy may keep it from starting.
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: installing promtool (prometheus)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  command -v promtool >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive \
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# Headless Chromium, for the status page's browser tests (Debian's `chromium` package).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "bootstrap: installing chromium (status page tests)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  }
fi

# Caddy (Debian's `caddy`): tests/deploy/test_caddy.py runs deploy/caddy/Caddyfile in front of the
# orchestrator. The package's own service is not needed.
if ! command -v caddy >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "bootstrap: installing caddy (proxy tests)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends caddy \
    >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends caddy >/dev/null
  }
fi

# kubectl (Debian's `kubernetes-client`): tests/deploy/test_k8s.py renders deploy/k8s with its
# built-in kustomize (the manifests use fields that kustomize v2 to v5 all read).
if ! command -v kubectl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "bootstrap: installing kubectl (kubernetes-client)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    kubernetes-client >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      kubernetes-client >/dev/null
  }
fi

# axe-core (npm), the accessibility checks the browser tests run in Chromium. Into .venv,
# with neither a package.json nor a lock file.
axe=.venv/share/axe
if [ ! -s "$axe/node_modules/axe-core/axe.min.js" ]; then
  if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "bootstrap: installing npm (accessibility checks)" >&2
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
  fi
  mkdir -p "$axe"
  (cd "$axe" && npm install --no-save --no-package-lock --no-audit --no-fund --silent \
    axe-core@4.14.1 >/dev/null)
fi

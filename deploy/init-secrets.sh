#!/usr/bin/env bash
# Creates the files of deploy/secrets/ that do not exist yet, for docker-compose.yml:
# random values where Sortie chooses them, empty files where the academy must provide
# them (fill those in before SORTIE_MODE=production). Never overwrites a file. The Redis
# ACL file and the Redis users' passwords come from `sortie redis-acl` (docs/install-compose.md).
set -euo pipefail
cd "$(dirname "$0")/secrets"
umask 077

new() {  # new FILE COMMAND...: FILE from COMMAND's output, unless it exists
  local file=$1; shift
  if [ ! -e "$file" ]; then "$@" > "$file"; echo "init-secrets: wrote deploy/secrets/$file" >&2; fi
}
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")'; }

new grafana_admin_password random
new cas_actuator_password random
new ent_mer_token random
new m365_client_secret printf ''
# The Graph simulator accepts any bearer token; a real tenant needs this file empty.
new m365_graph_token printf 'demo-graph-token'
new oidc_signing_key.pem openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256
if [ ! -e orchestrator_tokens.json ]; then
  token=$(random)
  digest=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
  printf '[{"name":"admin","token_sha256":"%s","scopes":["logout:write","offboard:write","requests:read","workstations:admin","scim"]}]\n' \
    "$digest" > orchestrator_tokens.json
  echo "init-secrets: wrote deploy/secrets/orchestrator_tokens.json; the admin token (shown once): $token" >&2
fi
mkdir -p tls

# The containers run as uid 10001 (Sortie), 999 (redis), 472 (grafana): give each its
# files' read access without opening the folder to the host's other users.
chmod 700 .
chmod 644 -- * 2>/dev/null || true

# Redis rewrites its ACL file on `ACL SAVE` (agents added at run time): it owns it.
[ ! -e redis-users.acl ] || chown 999:999 redis-users.acl 2>/dev/null || true

missing=()
for user in orchestrator m365-worker ent-worker exporter agent-pc-101; do
  [ -e "redis-$user.password" ] || missing+=("redis-$user.password")
done
[ -e redis-users.acl ] || missing+=("redis-users.acl")
if [ ${#missing[@]} -gt 0 ]; then
  echo "init-secrets: still missing: ${missing[*]}" >&2
  echo "init-secrets: run \`sortie redis-acl\` (users orchestrator, m365-worker, ent-worker," \
    "exporter, agent-pc-101) to write them here" >&2
  exit 1
fi

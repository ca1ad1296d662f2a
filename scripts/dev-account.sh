#!/usr/bin/env bash
# Creates the local development account once the edge answers: an API token for user "dev" and
# credits to run with, printed once for the developer. `make dev` runs it beside wrangler dev.
# Usage: scripts/dev-account.sh EDGE_URL ADMIN_SECRET
set -euo pipefail
edge=$1
admin_secret=$2
for _ in $(seq 1 480); do
  curl -fsS "$edge/health" >/dev/null 2>&1 && break
  sleep 0.5
done
reply=$(curl -fsS -X POST "$edge/api/admin/tokens" -H "Authorization: Bearer $admin_secret" \
  -H 'content-type: application/json' -d '{"userId": "dev", "label": "make dev"}')
token=$(printf '%s' "$reply" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
curl -fsS -X POST "$edge/api/admin/credits" -H "Authorization: Bearer $admin_secret" \
  -H 'content-type: application/json' -d '{"userId": "dev", "credits": 100000, "note": "make dev"}' >/dev/null
cat <<MSG

make dev: the development account "dev" has 100000 credits. Its API token (shown once):

    $token

  curl -H "Authorization: Bearer $token" $edge/api/billing/balance
  curl -X POST -H "Authorization: Bearer $token" $edge/api/container/start \\
       -d '{"repositoryUrl": "file:///path/to/repo.git", "prompt": "Summarise this repository"}'

MSG

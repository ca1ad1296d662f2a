#!/usr/bin/env bash
# `make deploy-check`: what `make deploy` would upload, checked offline. Runs
# `wrangler deploy --dry-run` (which runs wrangler.toml's [build] command, bundles the Worker and
# validates the config and bindings, but contacts no one and needs no login) and fails if the
# Worker's gzipped upload is over LIMIT_KIB (default 3072 KiB = 3 MiB: the project's budget,
# issue 27; also the Workers Free plan's documented limit and the figure wrangler itself colours
# against). The figure is wrangler's own "Total Upload: X KiB / gzip: Y KiB" line: the bundled JS
# and the wasm, concatenated and gzipped (the page's static assets are uploaded apart and are
# not part of it).
#
# The container image is not built: a dry run builds ./Dockerfile with docker, whose base images
# come from a registry this check must not need. WRANGLER_DOCKER_BIN points at
# tools/dry-run-docker.sh, which answers the dry run's `docker info` and skips its `docker build`;
# `make image` and `make hadolint` cover the image in `make test`.
#
# Usage: tools/deploy-check.sh WRANGLER [LIMIT_KIB]
set -euo pipefail
wrangler=$1
limit_kib=${2:-3072}
cd "$(dirname "$0")/.."
outdir=$(mktemp -d)
trap 'rm -rf "$outdir"' EXIT

# No telemetry, no prompts, no update check (the banner asks npm for the latest version).
export WRANGLER_SEND_METRICS=false CI=true WRANGLER_HIDE_BANNER=true
export WRANGLER_DOCKER_BIN="$PWD/tools/dry-run-docker.sh"

"$wrangler" deploy --dry-run --outdir "$outdir/bundle" 2>&1 | tee "$outdir/wrangler.log"

# e.g. "Total Upload: 2555.40 KiB / gzip: 765.42 KiB" (coloured when wrangler thinks it is a TTY).
line=$(sed 's/\x1b\[[0-9;]*m//g' "$outdir/wrangler.log" | grep -E '^Total Upload: [0-9.]+ KiB / gzip: [0-9.]+ KiB' | tail -1 || true)
if [ -z "$line" ]; then
  echo "deploy-check: wrangler printed no 'Total Upload: ... / gzip: ...' line; cannot check the size" >&2
  exit 1
fi
size_kib=$(sed -E 's/^Total Upload: ([0-9.]+) KiB.*/\1/' <<<"$line")
gzip_kib=$(sed -E 's/.*gzip: ([0-9.]+) KiB.*/\1/' <<<"$line")
if awk -v g="$gzip_kib" -v l="$limit_kib" 'BEGIN { exit !(g > l) }'; then
  echo "deploy-check: FAILED: the Worker's upload is ${gzip_kib} KiB gzipped (${size_kib} KiB raw), over the" \
    "budget of ${limit_kib} KiB (3 MiB unless DEPLOY_GZIP_LIMIT_KIB says otherwise). Look at what grew" \
    "in edge-worker/build/index_bg.wasm (a new dependency?)." >&2
  exit 1
fi
echo "deploy-check: the Worker's upload is ${gzip_kib} KiB gzipped (${size_kib} KiB raw), limit ${limit_kib} KiB; image build skipped"

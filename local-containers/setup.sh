#!/usr/bin/env bash
# Makes this machine ready for `wrangler dev` with real containers on podman; idempotent (what
# is already in place is kept). Run by `make local-containers`, which builds the static binaries
# first. README.md's `make dev-container` and the container-mode tests need it.
#
#   local-containers/setup.sh <static egress-sidecar binary>
#
# 1. podman's Docker-compatible API on a unix socket ($AUTOPILOT_PODMAN_SOCKET), left running.
# 2. The egress sidecar image workerd starts next to every container (MINIFLARE_CONTAINER_EGRESS_IMAGE).
# 3. A small "bridge anchor" container that keeps podman's bridge up: workerd binds its egress
#    listener to the bridge's gateway when a container starts, and the bridge only exists while
#    some container is attached to it (otherwise workerd falls back to loopback, which the
#    container cannot reach).
set -euo pipefail
cd "$(dirname "$0")/.."
sidecar_bin=${1:?usage: setup.sh <egress-sidecar binary>}
socket=${AUTOPILOT_PODMAN_SOCKET:-/tmp/autopilot-podman.sock}
sidecar_image=${AUTOPILOT_SIDECAR_IMAGE:-localhost/autopilot-egress-sidecar:dev}
anchor=autopilot-bridge-anchor

command -v podman >/dev/null || { echo "setup.sh: podman is missing (.ci/run installs podman and runc)" >&2; exit 1; }
local-containers/podman-conf.sh

# A service started from a directory that was deleted since (a scratch checkout) still answers
# _ping but fails every container start ("write child: broken pipe"): replace it.
for pid in $(pgrep -f "podman system service --time=0 unix://$socket" || true); do
  if readlink "/proc/$pid/cwd" 2>/dev/null | grep -q ' (deleted)$'; then
    kill "$pid" 2>/dev/null || true
    sleep 1
  fi
done
if ! curl -fsS --max-time 2 --unix-socket "$socket" http://podman/_ping >/dev/null 2>&1; then
  rm -f "$socket"
  log=${TMPDIR:-/tmp}/autopilot-podman-service.log
  # Started from / so that no checkout's removal can pull the directory out from under it.
  (cd / && setsid nohup podman system service --time=0 "unix://$socket" >"$log" 2>&1 </dev/null &)
  for _ in $(seq 1 100); do
    curl -fsS --max-time 2 --unix-socket "$socket" http://podman/_ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS --max-time 2 --unix-socket "$socket" http://podman/_ping >/dev/null \
    || { echo "setup.sh: podman's API did not come up on $socket; see $log" >&2; exit 1; }
  echo "setup.sh: podman's Docker-compatible API on unix://$socket"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$sidecar_bin" "$context/egress-sidecar"
strip "$context/egress-sidecar"
cat >"$context/Containerfile" <<'CONTAINERFILE'
FROM scratch
COPY egress-sidecar /egress-sidecar
ENTRYPOINT ["/egress-sidecar"]
CONTAINERFILE
podman build --quiet --format docker -t "$sidecar_image" "$context" >/dev/null

if [ "$(podman container inspect --format '{{.State.Running}}' "$anchor" 2>/dev/null)" != true ]; then
  podman rm -f "$anchor" >/dev/null 2>&1 || true
  podman run -d --name "$anchor" --restart=always --network bridge "$sidecar_image" >/dev/null
fi
echo "setup.sh: ready (sidecar image $sidecar_image, bridge anchor $anchor)"

#!/usr/bin/env bash
# The docker CLI as `wrangler dev` needs it on a machine with podman instead of Docker
# (WRANGLER_DOCKER_BIN points here). Two differences, both harmless to drop:
# - `docker build --load` and `--provenance=...` are buildx flags; podman's classic build API
#   loads the image anyway and records no provenance.
# - `docker pull` of an image that is already local: there is no registry to ask here.
# Everything else goes to the real docker CLI unchanged, at DOCKER_HOST (podman's socket; workerd
# itself talks to the Docker API shim at WRANGLER_DOCKER_HOST).
set -euo pipefail
docker=${AUTOPILOT_REAL_DOCKER:-docker}
if [ "${1:-}" = build ]; then
  args=()
  for arg in "$@"; do
    case $arg in --load | --provenance=*) ;; *) args+=("$arg") ;; esac
  done
  exec "$docker" "${args[@]}"
fi
if [ "${1:-}" = pull ]; then
  for arg in "${@:2}"; do
    case $arg in -*) continue ;; esac
    if "$docker" image inspect "$arg" >/dev/null 2>&1; then exit 0; fi
  done
fi
exec "$docker" "$@"

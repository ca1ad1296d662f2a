#!/usr/bin/env bash
# Runs `wrangler dev` with real containers on podman: the Durable Object's container code
# (start, running, monitor, signal, the container's port) runs against the agent-service image,
# as it does on Cloudflare. Used by `make dev-container` and by the container-mode tests.
# Needs `make local-containers` first (podman's API, the sidecar image, the agent image).
#
#   local-containers/wrangler-dev.sh --port PORT --state DIR [--name NAME] [--image IMAGE]
#       [--loopback-ports P,Q] [--ca-cert FILE] [--dev-vars FILE] [-- more wrangler dev args]
#
# --loopback-ports  host loopback ports the container may reach at 127.0.0.1 (the model API,
#                   a git server): the egress sidecar carries them through workerd.
# --ca-cert         a CA certificate the image also trusts (a local HTTPS git server's).
# --name            the Worker's name; containers are named after it, so runs do not collide.
# It stays in the foreground; SIGTERM or Ctrl-C stops wrangler and the Docker API shim and
# removes this run's containers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
port=8787 state= name=autopilot image=localhost/autopilot-agent:test ports= ca_cert= dev_vars=
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --loopback-ports) ports=$2; shift 2 ;;
    --ca-cert) ca_cert=$2; shift 2 ;;
    --dev-vars) dev_vars=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "wrangler-dev.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$state" ] || { echo "wrangler-dev.sh: --state DIR is required" >&2; exit 2; }
podman_socket=${AUTOPILOT_PODMAN_SOCKET:-/tmp/autopilot-podman.sock}
sidecar_image=${AUTOPILOT_SIDECAR_IMAGE:-localhost/autopilot-egress-sidecar:dev}
shim=$root/target/x86_64-unknown-linux-musl/release/docker-api-shim
needs_setup() { echo "wrangler-dev.sh: $1; run \`make local-containers\` first" >&2; exit 1; }
curl -fsS --max-time 2 --unix-socket "$podman_socket" http://podman/_ping >/dev/null 2>&1 \
  || needs_setup "podman's API does not answer on $podman_socket"
[ -x "$shim" ] || needs_setup "$shim is missing"
for wanted in "$image" "$sidecar_image"; do
  podman image exists "$wanted" || needs_setup "the image $wanted is missing"
done

# The app's image: the agent image, plus the local CA when one is given. wrangler builds it from
# a directory of its own (the build context holds nothing else: no secrets, no state).
mkdir -p "$state/app" "$state/image"
state=$(cd "$state" && pwd)
app=$state/app
image_dir=$state/image
rm -f "$image_dir"/*
{
  echo "FROM $image"
  if [ -n "$ca_cert" ]; then
    cp "$ca_cert" "$image_dir/local-ca.crt"
    # The agent image runs as root (the service drops to its user itself), as this layer does.
    echo "COPY local-ca.crt /usr/local/share/ca-certificates/autopilot-local-ca.crt"
    echo "RUN update-ca-certificates >/dev/null"
  fi
} >"$image_dir/Dockerfile"

# The project's wrangler.toml with containers on, paths made absolute, no build step (the
# Worker and the page are built already) and this image.
sed -e "s#^main = \"#main = \"$root/#" \
  -e "s#^directory = \"./#directory = \"$root/#" \
  -e "s#^image = .*#image = \"$image_dir/Dockerfile\"#" \
  -e "s#^enable_containers = false#enable_containers = true#" \
  -e '/^\[build\]/,/^$/d' \
  "$root/wrangler.toml" >"$app/wrangler.toml"
# Secrets come from --dev-vars only; a previous run's copy is never reused.
rm -f "$app/.dev.vars"
if [ -n "$dev_vars" ]; then (umask 077 && cp "$dev_vars" "$app/.dev.vars"); fi

cleanup() {
  # Ignored from here on (and in the podman commands below): a Ctrl-C or a `kill 0` from the
  # caller reaches this whole process group, maybe more than once, and must not cut the
  # cleanup short or start it again.
  trap '' INT TERM
  trap - EXIT
  [ -z "${cleaning:-}" ] || return 0
  cleaning=1
  set +e
  [ -n "${wrangler_pid:-}" ] && kill -TERM "$wrangler_pid" 2>/dev/null && wait "$wrangler_pid" 2>/dev/null
  [ -n "${shim_pid:-}" ] && kill -TERM "$shim_pid" 2>/dev/null
  # The app containers first: they live in their sidecar's network namespace.
  ours() { podman ps -a --format '{{.Names}}' | grep "^workerd-$name-" || true; }
  ours | grep -v -- '-proxy$' | xargs -r podman rm -f -i >/dev/null
  ours | xargs -r podman rm -f -i >/dev/null
}
trap cleanup EXIT INT TERM

rm -f "$state/docker.sock"
"$shim" --listen "$state/docker.sock" --podman "$podman_socket" ${ports:+--loopback-ports "$ports"} \
  >"$state/docker-api-shim.log" 2>&1 &
shim_pid=$!
for _ in $(seq 1 50); do [ -S "$state/docker.sock" ] && break; sleep 0.1; done
if ! kill -0 "$shim_pid" 2>/dev/null || [ ! -S "$state/docker.sock" ]; then
  echo "wrangler-dev.sh: the Docker API shim did not start:" >&2
  cat "$state/docker-api-shim.log" >&2
  exit 1
fi

cd "$app"
WRANGLER_SEND_METRICS=false CI=true NO_COLOR=1 \
  WRANGLER_DOCKER_BIN="$root/local-containers/docker-for-wrangler.sh" \
  DOCKER_HOST="unix://$podman_socket" WRANGLER_DOCKER_HOST="unix://$state/docker.sock" \
  MINIFLARE_CONTAINER_EGRESS_IMAGE="$sidecar_image" \
  "$root/tools/node_modules/.bin/wrangler" dev --local --name "$name" --ip 127.0.0.1 --port "$port" \
  --inspector-ip 127.0.0.1 --persist-to "$state/wrangler" --show-interactive-dev-session=false "$@" &
wrangler_pid=$!
wait "$wrangler_pid"

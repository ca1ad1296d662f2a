#!/usr/bin/env bash
# Builds the podman stand-in of the Dockerfile's runtime stage (tests/container/Containerfile says
# where it differs) and prints its size. Run by `make image`, which builds the static musl service
# first; tests/container_image.rs then runs the end-to-end flow against the image.
#
#   tests/container/build-image.sh <static agent-service binary> <image name>
#
# The Debian base (debootstrap, ~2 min) is made once per package list and kept as a local podman
# image; the CLI download is kept per lockfile. Both are rebuilt only when their inputs change.
set -euo pipefail
cd "$(dirname "$0")/../.."

service_bin=${1:?usage: build-image.sh <agent-service binary> <image name>}
image=${2:?usage: build-image.sh <agent-service binary> <image name>}
out=target/container-image
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the Dockerfile's runtime stage installs with apk, as Debian packages; musl runs the CLI's
# musl build, wget is the healthcheck's (busybox has it on Alpine).
base_packages=git,openssh-client,ca-certificates,tini,musl,wget

for tool in podman debootstrap npm strip; do
  command -v "$tool" >/dev/null || {
    echo "build-image.sh: $tool is missing (.ci/run installs podman, runc, debootstrap from Debian)" >&2
    exit 1
  }
done

local-containers/podman-conf.sh

started=$SECONDS
mkdir -p "$out"

# ---- the base: Debian minbase plus the runtime packages, imported as a local image.
base_tag=$(printf '%s %s %s v1' "$suite" "$base_packages" "$mirror" | sha256sum | cut -c1-12)
base_image=localhost/autopilot-test-base:$suite-$base_tag
if ! podman image exists "$base_image"; then
  echo "build-image.sh: making the Debian base $base_image (debootstrap, once)"
  rm -rf "$out/rootfs"
  debootstrap --variant=minbase --include="$base_packages" "$suite" "$out/rootfs" "$mirror" >"$out/debootstrap.log" \
    || { tail -20 "$out/debootstrap.log" >&2; exit 1; }
  # Package caches, indexes and documentation are not part of a runtime (Alpine ships none).
  rm -rf "$out"/rootfs/var/cache/apt/archives/*.deb "$out"/rootfs/var/lib/apt/lists/* \
    "$out"/rootfs/usr/share/{doc,man,info,locale}/*
  tar --numeric-owner -C "$out/rootfs" -c . | podman import --quiet - "$base_image" >/dev/null
  rm -rf "$out/rootfs"
fi
base_done=$SECONDS

# ---- the CLI: the musl build, from the same lockfile the tests' CLI comes from.
cli_dir=$out/cli
lock_hash=$(cat tools/package.json tools/package-lock.json | sha256sum | cut -d' ' -f1)
if [ "$(cat "$cli_dir/.lock-hash" 2>/dev/null)" != "$lock_hash" ]; then
  rm -rf "$cli_dir" && mkdir -p "$cli_dir"
  cp tools/package.json tools/package-lock.json "$cli_dir/"
  npm ci --prefix "$cli_dir" --omit=dev --ignore-scripts --libc=musl --no-audit --no-fund >/dev/null
  echo "$lock_hash" >"$cli_dir/.lock-hash"
fi
cli_bin=$cli_dir/node_modules/@anthropic-ai/claude-code-linux-x64-musl/claude
[ -x "$cli_bin" ] || { echo "build-image.sh: $cli_bin is missing after npm ci" >&2; exit 1; }

# ---- the image.
context=$out/context
rm -rf "$context" && mkdir -p "$context"
cp "$service_bin" "$context/agent-service"
strip "$context/agent-service"
cp "$cli_bin" "$context/claude"
previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
podman build --quiet --format docker --build-arg BASE="$base_image" -f tests/container/Containerfile \
  -t "$image" "$context" >/dev/null
# The image this one replaces would stay behind untagged; remove it (only it) unless in use.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
image_done=$SECONDS

# ---- the size: all layers, split into the base, the CLI, and the layers we add around the service.
podman history --no-trunc --format json "$image" | python3 -c '
import json, sys
image, service, reported = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
layers = json.load(sys.stdin)
mb = lambda size: f"{size / 1e6:.1f} MB"
cli = sum(l["size"] for l in layers if "in /usr/local/bin/claude" in l["CreatedBy"])
base = layers[-1]["size"]
total = sum(l["size"] for l in layers)
ours = total - cli - base
print(f"image {image}: {mb(reported)} as podman reports it ({mb(total)} in {len(layers)} layers)")
print(f"  base (Debian stand-in for alpine:3.23 + apk packages): {mb(base)}")
print(f"  our layers (static agent-service, user, workspace):    {mb(ours)}")
print(f"    of which the agent-service binary (stripped):       {mb(service)}")
print(f"  Claude Code CLI (musl build, not ours):              {mb(cli)}")
' "$image" "$(stat -c %s "$context/agent-service")" "$(podman image inspect --format '{{.Size}}' "$image")"
echo "build-image.sh: base $((base_done - started)) s, image $((image_done - base_done)) s"

#!/usr/bin/env bash
# podman on these machines needs runc, cgroupfs and bounded ulimits (../shared/MACHINE-NOTES.md).
# Writes that once to a drop-in file; a no-op when it is already there.
set -euo pipefail
conf=/etc/containers/containers.conf.d/autopilot.conf
wanted='[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"'
if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
  mkdir -p "$(dirname "$conf")" && printf '%s\n' "$wanted" >"$conf"
fi

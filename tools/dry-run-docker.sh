#!/usr/bin/env bash
# The docker CLI as `make deploy-check` gives it to `wrangler deploy --dry-run`
# (WRANGLER_DOCKER_BIN points here). A dry run asks docker for two things only: `docker info`
# (is an engine there?) and `docker build` of ./Dockerfile (built, never pushed). The Dockerfile's
# base images come from a registry this check must not need, so the image build is skipped here,
# saying so; `make image` and `make hadolint` (both in `make test`) cover the image instead.
# Anything else a newer wrangler might ask fails loudly rather than pretending.
set -euo pipefail
case "${1:-}" in
  info) echo "dry-run-docker: no engine needed for a dry run" ;;
  build)
    # The Dockerfile may come on stdin (`-f -`): drain it so the writer never sees a broken pipe.
    [ -t 0 ] || cat >/dev/null
    echo "dry-run-docker: image build skipped (the deploy check measures the Worker's upload only)" >&2
    ;;
  *)
    echo "dry-run-docker: wrangler asked for 'docker $*', which a dry run was not expected to need" >&2
    exit 1
    ;;
esac

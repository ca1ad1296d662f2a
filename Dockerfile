# syntax=docker/dockerfile:1
# The container image of the agent-service: the service (a static musl binary), git, ssh, CA roots,
# tini, and the pinned Claude Code CLI (its musl build), on Alpine. Cloudflare builds it on deploy
# (wrangler.toml: [[containers]] image = "./Dockerfile"); Cloudflare Containers run linux/amd64.
#
# These machines cannot pull base images, so `make test` proves this file in two halves: it builds
# the service the way the builder stage does (`make musl`) and runs the end-to-end tests against
# that binary, and it runs a podman image whose runtime mirrors the last stage below
# (tests/container/Containerfile says exactly where that image differs and why).
#
# Base images are pinned by version tag and digest. The digests are the multi-platform index
# digests that public Dockerfiles cite for these exact tags; no registry is reachable where this
# project is built and tested, so they could not be checked against Docker Hub here. Verify one
# with `docker buildx imagetools inspect <tag>` when bumping it.
#
# Alpine packages are pinned to a version prefix (`=~`), not to an exact -rN release: the base
# image digest fixes the Alpine branch (3.23), whose repository replaces a package's revision on
# every security fix and drops the old one, so an exact pin would break rebuilds.

# ---- chef: the Rust toolchain (a musl host) and cargo-chef, shared by planner and builder.
FROM docker.io/library/rust:1.95.0-alpine3.23@sha256:606fd313a0f49743ee2a7bd49a0914bab7deedb12791f3a846a34a4711db7ed2 AS chef
RUN apk add --no-cache musl-dev=~1.2.5 \
 && cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

# ---- planner: the workspace reduced to its dependency recipe; it changes only with the manifests.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- builder: the dependencies in their own cached layer, then the service.
FROM chef AS builder
ARG RUST_TARGET=x86_64-unknown-linux-musl
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --target "$RUST_TARGET" -p agent-service --recipe-path recipe.json
COPY . .
# Same command as `make musl`: a static binary (musl links statically by default).
RUN cargo build --release --locked --target "$RUST_TARGET" -p agent-service \
 && install -D -m 0755 "target/$RUST_TARGET/release/agent-service" /out/agent-service \
 && strip /out/agent-service

# ---- cli: the Claude Code CLI's musl build, locked by tools/package-lock.json (version and
# integrity), so the image runs exactly the CLI the tests run. Only its binary is kept: the
# runtime needs no Node.js.
FROM docker.io/library/node:22.22.2-alpine3.23@sha256:8ea2348b068a9544dae7317b4f3aafcdc032df1647bb7d768a05a5cad1a7683f AS cli
WORKDIR /cli
COPY tools/package.json tools/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && install -D -m 0755 node_modules/@anthropic-ai/claude-code-linux-x64-musl/claude /out/claude

# ---- runtime: only what the service needs when it runs.
FROM docker.io/library/alpine:3.23.5@sha256:fd791d74b68913cbb027c6546007b3f0d3bc45125f797758156952bc2d6daf40
# git clones (https and ssh remotes), tini is PID 1 (reaps zombies, forwards SIGTERM to the service),
# bash runs environments' setup scripts. One non-root user owns the task workspaces.
RUN apk add --no-cache git=~2.52 openssh-client-default=~10.2 ca-certificates=~20251003 tini=~0.19 bash=~5.3 \
 && addgroup -g 10001 agent \
 && adduser -D -u 10001 -G agent -h /home/agent agent \
 && install -d -o agent -g agent -m 0750 /workspace
COPY --from=builder /out/agent-service /usr/local/bin/agent-service
# The CLI last, in its own layer: it is most of the image and changes on its own schedule.
COPY --from=cli /out/claude /usr/local/bin/claude
# The service starts as root and at once becomes the user agent, keeping root only as its saved
# user id, for environments' setup scripts (system packages); git, the agent and everything it
# runs are agent through and through (README "System packages").
# hadolint ignore=DL3002
USER 0:0
WORKDIR /workspace
# CLAUDE_CODE_VERSION must equal the pin in tools/package.json (a test checks): the service
# refuses tasks if the CLI reports another version.
ENV PORT=8080 \
    AUTOPILOT_WORK_DIR=/workspace \
    AUTOPILOT_AGENT_USER=agent \
    CLAUDE_CODE_PATH=/usr/local/bin/claude \
    CLAUDE_CODE_VERSION=2.1.332 \
    LOG_FORMAT=json \
    DISABLE_AUTOUPDATER=1 \
    DISABLE_TELEMETRY=1
EXPOSE 8080
# On the port the service listens on (PORT, as LISTEN_ADDR is unset in production).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/bin/sh", "-c", "wget -q -O /dev/null \"http://127.0.0.1:${PORT}/ping\""]
# The service stops its task and exits 0 on SIGTERM (the edge's idle stop sends one).
ENTRYPOINT ["/sbin/tini", "--", "/usr/local/bin/agent-service"]

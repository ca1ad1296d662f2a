# The container image of the agent-service: the service, git, and the pinned Claude Code CLI.
# Built by `wrangler deploy` (wrangler.toml [[containers]] image = "./Dockerfile").

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p agent-service

FROM node:22-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/autopilot
COPY tools/package.json tools/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && ln -s /opt/autopilot/node_modules/.bin/claude /usr/local/bin/claude
COPY --from=build /src/target/release/agent-service /usr/local/bin/agent-service
RUN useradd --create-home --uid 10001 agent && mkdir -p /work && chown agent /work
USER agent
ENV PORT=8080 \
    AUTOPILOT_WORK_DIR=/work \
    CLAUDE_CODE_PATH=/usr/local/bin/claude \
    CLAUDE_CODE_VERSION=2.1.332 \
    LOG_FORMAT=json \
    DISABLE_AUTOUPDATER=1 \
    DISABLE_TELEMETRY=1
EXPOSE 8080
# The service is PID 1: it stops its task and exits 0 on SIGTERM (the idle stop sends one).
ENTRYPOINT ["/usr/local/bin/agent-service"]

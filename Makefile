# The two commands a newcomer needs: `make dev` runs the system locally, `make test` runs every
# test. Both install what they need (pinned); tools already installed at the pinned version are
# skipped.

SHELL := /bin/bash
TOOLS := tools/node_modules
CLAUDE := $(abspath $(TOOLS)/.bin/claude)
BUF := $(TOOLS)/.bin/buf
DEV_DIR := .dev
DEV_PORT ?= 8080
FAKE_MODEL_PORT ?= 8790

.PHONY: dev dev-offline test tools lint build bench clean

## Pinned npm tools (Claude Code CLI, buf), project-local under tools/node_modules.
tools: $(TOOLS)/.installed
$(TOOLS)/.installed: tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund
	touch $@

build:
	cargo build -p agent-service

## Runs the agent-service on 127.0.0.1:$(DEV_PORT) with its defaults (and local repositories
## allowed). Give it a key with ANTHROPIC_API_KEY=... make dev; without one it starts and says so.
dev: tools build
	@mkdir -p $(DEV_DIR)/work
	@if [ -z "$$ANTHROPIC_API_KEY" ]; then \
	  echo "make dev: ANTHROPIC_API_KEY is not set. The service starts, but tasks will fail until you run"; \
	  echo "          ANTHROPIC_API_KEY=sk-ant-... make dev   (or: make dev-offline, to use the fake model API)"; \
	fi
	@echo "make dev: agent-service on 127.0.0.1:$(DEV_PORT) (gRPC, gRPC-web, GET /ping); Ctrl-C stops it"
	./target/debug/agent-service --listen 127.0.0.1:$(DEV_PORT) --work-dir $(DEV_DIR)/work \
	  --claude-path $(CLAUDE) --allow-local-repos

## Like dev, but the agent talks to the fake model API of the tests (no key, no cost).
dev-offline: tools build
	cargo build -p autopilot-tests --bin fake-model-api
	@mkdir -p $(DEV_DIR)/work $(DEV_DIR)/home
	@trap 'kill 0' EXIT INT TERM; \
	./target/debug/fake-model-api 127.0.0.1:$(FAKE_MODEL_PORT) & \
	ANTHROPIC_API_KEY=offline-fake-key ANTHROPIC_BASE_URL=http://127.0.0.1:$(FAKE_MODEL_PORT) \
	CLAUDE_CODE_MAX_RETRIES=0 DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
	./target/debug/agent-service --listen 127.0.0.1:$(DEV_PORT) --work-dir $(DEV_DIR)/work \
	  --claude-path $(CLAUDE) --allow-local-repos

## Lints the contract (buf, STANDARD rules).
lint: tools
	$(BUF) lint

## Every test: unit tests on the host, end-to-end tests against the real servers, buf lint.
test: tools lint
	cargo build -p agent-service
	cargo test --workspace

## Benchmarks that print figures (release build).
bench:
	cargo bench -p agent-service --bench throughput

clean:
	cargo clean
	rm -rf $(DEV_DIR) $(TOOLS)

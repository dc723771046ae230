# pocketkube: `make up` starts the local cluster, `make test` runs every test.
# Both install whatever is missing first (Debian 12, as root).

PYTHON ?= python3
APT_PACKAGES := docker.io etcd-server docker-registry busybox-static iptables iproute2 conntrack util-linux procps vagrant vagrant-libvirt
STAMP := .deps.stamp

.PHONY: deps up down status test unit bench lint clean

deps: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v kubectl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# The local cluster (docs/local-cluster.md); `$(PYTHON) -m pocket.cli` works without `pocket` on PATH.
up: deps
	$(PYTHON) -m pocket.cli up

down:
	$(PYTHON) -m pocket.cli down

status:
	$(PYTHON) -m pocket.cli status

test: deps
	$(PYTHON) -m pytest -q

unit: deps
	$(PYTHON) -m pytest -q -m "not e2e"

bench: deps
	$(PYTHON) -m benchmarks

lint: deps
	ruff check .
	mypy control kubelet kproxy kdns pocket

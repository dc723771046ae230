# pocketkube: `make up` starts the local cluster, `make test` runs every test.
# Both install whatever is missing first (Debian 12, as root).

PYTHON ?= python3
APT_PACKAGES := docker.io etcd-server docker-registry busybox-static iptables iproute2 conntrack util-linux procps vagrant vagrant-libvirt debootstrap nftables wrk nginx-light
STAMP := .deps.stamp

.PHONY: deps up down status test unit bench lint clean chaos

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

# The fault suite (issue 10) in full: every fault while traffic flows; writes docs/reliability.md.
# Against another local cluster: make chaos POCKET_E2E_CLUSTER="--prefix pkX- ... --api-port 64NN".
chaos: deps
	CHAOS_FULL=1 CHAOS_REPORT=docs/reliability.md CHAOS_COMMAND='make chaos' $(PYTHON) -m pytest -q tests/e2e/chaos

unit: deps
	$(PYTHON) -m pytest -q -m "not e2e"

bench: deps
	$(PYTHON) -m benchmarks

lint: deps
	$(PYTHON) -m pytest -q tests/test_lint.py

# Vagrant VMs (docs/vagrant.md). `make vagrant-box` builds the offline libvirt box and adds it to Vagrant;
# `make test-vagrant` (long: VMs under software emulation) brings up 3 VMs, runs the end-to-end checks, removes all.
VAGRANT_APT := vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients \
	qemu-system-x86 qemu-utils debootstrap dnsmasq-base ebtables iptables fdisk rsync grub-pc-bin e2fsprogs \
	openssh-client
BOX_NAME := pocketkube/bookworm
BOX_FILE := vagrant/.box/pocketkube-bookworm.box

.PHONY: vagrant-deps vagrant-box test-vagrant

vagrant-deps: deps
	@missing=$$(for p in $(VAGRANT_APT); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BOX_FILE): vagrant/build-box.sh pyproject.toml | vagrant-deps
	vagrant/build-box.sh $@

vagrant/.box/added.stamp: $(BOX_FILE)
	vagrant box add --force --name $(BOX_NAME) $(BOX_FILE)
	@touch $@

vagrant-box: vagrant-deps vagrant/.box/added.stamp

test-vagrant: vagrant-box
	$(PYTHON) -m pytest -q -s -p no:cacheprovider tests/vagrant/e2e_vms.py

#!/bin/bash
# Build the pocketkube libvirt box offline: Debian bookworm from Debian's
# package mirror with debootstrap, the cluster's Debian packages and the
# project's Python dependencies installed into the root filesystem here, at
# native speed (inside an emulated VM the same installs take many minutes).
#
# No loop devices, no udev: the ext4 filesystem is written straight into the
# image at the partition's offset, GRUB's boot.img and a core image with dd.
#
# usage: vagrant/build-box.sh OUTPUT.box   (as root; `make vagrant-box` runs it)
set -euo pipefail

out=${1:?usage: build-box.sh OUTPUT.box}
repo=$(cd "$(dirname "$0")/.." && pwd)
mirror=${POCKET_BOX_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
[ -n "$mirror" ] || { echo "build-box.sh: no Debian mirror in /etc/apt/sources.list.d/debian.sources; set POCKET_BOX_MIRROR" >&2; exit 1; }
disk_gib=${POCKET_BOX_DISK_GIB:-10}
insecure_key=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub | head -1)

[ "$(id -u)" = 0 ] || { echo "build-box.sh: run as root (debootstrap, chroot)" >&2; exit 1; }
for tool in debootstrap mkfs.ext4 sfdisk grub-mkimage qemu-img; do
    command -v "$tool" >/dev/null || { echo "build-box.sh: $tool is missing (make vagrant-box installs it)" >&2; exit 1; }
done
[ -f "$insecure_key" ] || { echo "build-box.sh: Vagrant's insecure public key not found (install vagrant)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/pocket-box.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
step() { echo "[$(date -u +%T)] $*"; }

# Debian packages: a bootable system with sshd and sudo, plus what a node runs (pocket/cluster.py PREREQUISITES;
# apparmor: Debian's kernel enables AppArmor, and dockerd then needs apparmor_parser to start any container).
packages=(
    linux-image-amd64 systemd systemd-sysv udev dbus openssh-server sudo ifupdown isc-dhcp-client netbase
    ca-certificates rsync kmod procps iproute2 iptables conntrack util-linux mount
    python3 python3-venv python3-pip apparmor
    docker.io containerd runc etcd-server docker-registry busybox-static
)
step "debootstrap bookworm from $mirror (${#packages[@]} packages and their dependencies)"
debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" bookworm "$rootfs" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; exit 1; }

step "configuring the guest: vagrant user, sshd, networking, boot"
chroot "$rootfs" useradd --create-home --shell /bin/bash vagrant
install -d -m 700 -o 1000 -g 1000 "$rootfs/home/vagrant/.ssh"
install -m 600 -o 1000 -g 1000 "$insecure_key" "$rootfs/home/vagrant/.ssh/authorized_keys"
echo "vagrant ALL=(ALL) NOPASSWD: ALL" > "$rootfs/etc/sudoers.d/vagrant"
chmod 440 "$rootfs/etc/sudoers.d/vagrant"
echo "UseDNS no" > "$rootfs/etc/ssh/sshd_config.d/vagrant.conf"
echo pocketkube > "$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n' > "$rootfs/etc/hosts"
cat > "$rootfs/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*
auto lo
iface lo inet loopback
allow-hotplug eth0
iface eth0 inet dhcp
EOF
# The box's apt uses the mirror it was built from (and its security suite beside it).
cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
# Every VM of the box gets its own machine id and ssh host keys on first boot.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs"/etc/ssh/ssh_host_*
cat > "$rootfs/etc/systemd/system/ssh-host-keys.service" <<'EOF'
[Unit]
Description=Generate missing ssh host keys
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
chroot "$rootfs" systemctl enable --quiet ssh-host-keys.service
# pocket node setup runs docker, etcd and the registry as its own units; the distro's copies would hold their ports.
# The apt timers would only reach for a network the VMs may not have.
chroot "$rootfs" systemctl disable --quiet docker.service docker.socket etcd.service docker-registry.service \
    apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true

step "the project's Python dependencies into /opt/pocketkube (wheels built here, installed offline in the chroot)"
python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$repo/pyproject.toml" > "$work/requirements.txt"
python3 -m pip wheel -q --disable-pip-version-check --wheel-dir "$rootfs/var/tmp/wheels" \
    -r "$work/requirements.txt" "setuptools>=68" wheel
cp "$work/requirements.txt" "$rootfs/var/tmp/wheels/requirements.txt"
chroot "$rootfs" python3 -m venv /opt/pocketkube
chroot "$rootfs" /opt/pocketkube/bin/pip install -q --disable-pip-version-check --no-index \
    --find-links /var/tmp/wheels -r /var/tmp/wheels/requirements.txt "setuptools>=68" wheel
rm -rf "$rootfs/var/tmp/wheels" "$rootfs"/var/cache/apt/archives/*.deb

step "GRUB configuration and fstab"
kernel=$(cd "$rootfs/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd=initrd.img-${kernel#vmlinuz-}
[ -f "$rootfs/boot/$initrd" ] || { echo "build-box.sh: no $initrd in the root filesystem" >&2; exit 1; }
uuid=$(cat /proc/sys/kernel/random/uuid)
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$rootfs/etc/fstab"
mkdir -p "$rootfs/boot/grub"
cat > "$rootfs/boot/grub/grub.cfg" <<EOF
set timeout=0
linux /boot/$kernel root=UUID=$uuid ro console=tty0 console=ttyS0 net.ifnames=0 biosdevname=0
initrd /boot/$initrd
boot
EOF

step "writing a ${disk_gib} GiB disk image: MBR, GRUB, ext4 at 1 MiB"
disk=$work/disk.raw
offset=1048576
truncate -s "${disk_gib}G" "$disk"
echo 'start=2048, type=83, bootable' | sfdisk -q "$disk"
fs_blocks=$(( (disk_gib * 1024 * 1024 * 1024 - offset) / 4096 ))
mkfs.ext4 -q -F -b 4096 -U "$uuid" -L root -E offset=$offset -d "$rootfs" "$disk" "$fs_blocks"
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 normal linux configfile boot
[ "$(stat -c %s "$work/core.img")" -lt $(( (2048 - 1) * 512 )) ] || { echo "build-box.sh: core.img too big" >&2; exit 1; }
dd if=/usr/lib/grub/i386-pc/boot.img of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$disk" bs=512 seek=1 conv=notrunc status=none

step "packing $out"
qemu-img convert -O qcow2 "$disk" "$work/box.img"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$disk_gib" > "$work/metadata.json"
cat > "$work/Vagrantfile" <<'EOF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "qemu"
  end
end
EOF
mkdir -p "$(dirname "$out")"
tar -C "$work" -cf "$out.tmp" metadata.json Vagrantfile box.img
mv "$out.tmp" "$out"
step "done: $out ($(du -h "$out" | cut -f1))"

#!/usr/bin/env bash
# mmdebstrap customize hook: install the agent and make the image ours.
# $1 = root of the new system, $2 = the aarch64 wanwatch binary, $3 = the source tree.
set -euo pipefail
root=$1; bin=$2; top=$3
files=$top/image/files

install -m 755 "$bin" "$root/usr/bin/wanwatch"
install -m 644 "$top/systemd/wanwatch.service" "$root/usr/lib/systemd/system/wanwatch.service"
install -m 644 "$top/systemd/wanwatch.sysusers" "$root/usr/lib/sysusers.d/wanwatch.conf"
install -d "$root/etc/wanwatch"
install -m 644 "$top/wanwatch.example.toml" "$root/etc/wanwatch/wanwatch.toml"
install -m 755 "$files/wanwatch-firstboot" "$root/usr/lib/wanwatch/wanwatch-firstboot" -D
install -m 644 "$files/wanwatch-firstboot.service" "$root/usr/lib/systemd/system/"
install -m 644 "$files/wanwatch-boottest.service" "$root/usr/lib/systemd/system/"
install -m 755 "$files/wanwatch-boottest" "$root/usr/lib/wanwatch/wanwatch-boottest"
install -m 644 "$files/20-wired.network" "$root/etc/systemd/network/20-wired.network"
install -m 644 "$files/sshd-wanwatch.conf" "$root/etc/ssh/sshd_config.d/wanwatch.conf"
echo i2c-dev > "$root/etc/modules-load.d/i2c.conf"
printf 'i2c\ngpio\n' | while read -r g; do chroot "$root" getent group "$g" >/dev/null || chroot "$root" groupadd --system "$g"; done
# udev: the i2c and gpio groups own their devices.
cat > "$root/etc/udev/rules.d/60-wanwatch-devices.rules" <<RULES
SUBSYSTEM=="i2c-dev", GROUP="i2c", MODE="0660"
KERNEL=="gpiomem", GROUP="gpio", MODE="0660"
SUBSYSTEM=="gpio", GROUP="gpio", MODE="0660"
RULES
chroot "$root" systemd-sysusers
# The set-up page rewrites the configuration (a new file renamed over the old one).
chroot "$root" chgrp wanwatch /etc/wanwatch /etc/wanwatch/wanwatch.toml
chmod 0775 "$root/etc/wanwatch"
chmod 0664 "$root/etc/wanwatch/wanwatch.toml"
echo wanwatch > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\twanwatch\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# No default password anywhere: root is locked, ssh is key-only (keys come from the FAT).
chroot "$root" passwd -l root >/dev/null
# Never ship shared host keys: first boot makes this Pi's own.
rm -f "$root"/etc/ssh/ssh_host_*
# The machine id is made at first boot too.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
cat > "$root/etc/fstab" <<FSTAB
LABEL=RASPIROOT /              ext4 rw,noatime,commit=60 0 1
LABEL=RASPIFIRM /boot/firmware vfat rw,noatime            0 2
FSTAB
chroot "$root" systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1
for unit in systemd-networkd systemd-resolved systemd-timesyncd ssh avahi-daemon wanwatch-firstboot wanwatch wanwatch-boottest; do
    chroot "$root" systemctl enable "$unit" >/dev/null 2>&1
done
# Pages of the package lists are not needed on the card.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

#!/usr/bin/env bash
# Build the wanwatch SD-card image for a Raspberry Pi (3B+, 4, 5, Zero 2 W) from Debian
# packages: mmdebstrap for the arm64 root (under qemu-user binfmt), genimage for the
# partitioned image (no Docker, no loop devices, no mounts). Run as root on Debian 12:
#
#   make aarch64 && image/build.sh            -> target/image/wanwatch.img.zst
#
# Needs: mmdebstrap genimage mtools dosfstools e2fsprogs qemu-user-static binfmt-support zstd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
out=${OUT:-$top/target/image}
suite=${SUITE:-bookworm}
bin=$top/target/aarch64-unknown-linux-gnu/release/wanwatch
[ -x "$bin" ] || { echo "no aarch64 binary at $bin: run 'make aarch64' first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (mmdebstrap and device nodes)" >&2; exit 1; }

# qemu-user must be registered for arm64 binaries (the chroot runs maintainer scripts).
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true

rm -rf "$out/tmp"
mkdir -p "$out/tmp"

# Packages: the firmware and kernel, systemd (networkd, timesyncd), ssh, mDNS for
# `ssh wanwatch.local`, Wi-Fi, and the tools the README tells users about.
packages=(
    raspi-firmware linux-image-arm64 firmware-brcm80211 initramfs-tools
    systemd systemd-sysv systemd-timesyncd systemd-resolved dbus udev kmod
    openssh-server avahi-daemon libnss-mdns wpasupplicant iproute2 iputils-ping
    sqlite3 i2c-tools ca-certificates zstd cloud-guest-utils e2fsprogs
)

# mkinitramfs under emulation is slow with MODULES=most; the list below is what the Pi's SD
# card and qemu's virt board (the boot test) need to find the root file system.
initramfs_hook='
mkdir -p "$1/etc/initramfs-tools/conf.d"
echo "MODULES=list" > "$1/etc/initramfs-tools/conf.d/wanwatch"
cat > "$1/etc/initramfs-tools/modules" <<MODS
ext4
mmc_block
sdhci_iproc
bcm2835_mmc
sdhci_pltfm
virtio_pci
virtio_blk
MODS
mkdir -p "$1/etc/default"
echo "ROOTPART=LABEL=RASPIROOT" > "$1/etc/default/raspi-firmware"
echo "CONSOLES=\"ttyS1,115200 tty0\"" >> "$1/etc/default/raspi-firmware"
# The OLED: I2C on, at 400 kHz.
printf "dtparam=i2c_arm=on\ndtparam=i2c_arm_baudrate=400000\n" > "$1/etc/default/raspi-firmware-custom"
'

# REUSE_ROOT=1 keeps the root tree of the last build and only re-runs the customisation and
# the image step (seconds instead of minutes, for iterating on the image's own files).
if [ "${REUSE_ROOT:-0}" = 1 ] && [ -x "$out/root/usr/bin/wanwatch" ]; then
    "$here/customize.sh" "$out/root" "$bin" "$top"
else
rm -rf "$out/root"
mkdir -p "$out/root"
mmdebstrap --arch=arm64 --variant=apt --components="main non-free-firmware" \
    --dpkgopt=force-confold \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --setup-hook="$initramfs_hook" \
    --customize-hook="$here/customize.sh \"\$1\" \"$bin\" \"$top\"" \
    "$suite" "$out/root"
fi

# The image: FAT firmware partition (/boot/firmware) + ext4 root, from the directory tree.
cat > "$out/genimage.cfg" <<CFG
image firmware.vfat {
    mountpoint = "/boot/firmware"
    size = 256M
    vfat { label = "RASPIFIRM" }
}
image root.ext4 {
    size = 1600M
    ext4 { label = "RASPIROOT" use-mke2fs = true features = "^metadata_csum_seed" }
}
image wanwatch.img {
    hdimage { partition-table-type = "mbr" }
    partition firmware { partition-type = 0xC bootable = true image = "firmware.vfat" }
    partition root { partition-type = 0x83 image = "root.ext4" }
}
CFG
genimage --rootpath "$out/root" --tmppath "$out/tmp" --inputpath "$out" --outputpath "$out" --config "$out/genimage.cfg"
# Kernel and initrd beside the image, for the qemu boot test.
cp "$out"/root/boot/vmlinuz-* "$out/vmlinuz"
cp "$out"/root/boot/initrd.img-* "$out/initrd.img"
zstd -q -f -T0 "$out/wanwatch.img" -o "$out/wanwatch.img.zst"
ls -la "$out"/wanwatch.img*
echo "flash with: zstdcat $out/wanwatch.img.zst | sudo dd of=/dev/sdX bs=4M conv=fsync"

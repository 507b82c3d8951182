#!/usr/bin/env bash
# Boot the built image in qemu-system-aarch64 (virt board; kernel and initrd from the image) and
# check what a user would: systemd reaches multi-user with no failed unit, the agent is running
# and has written samples, the card made its own ssh host keys. The VM has no network at all
# (-nic none), so nothing leaves this machine; the agent records that as an outage.
#
#   image/build.sh && image/boot-test.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/../target/image}
[ -f "$out/wanwatch.img" ] || { echo "no $out/wanwatch.img: run image/build.sh first" >&2; exit 1; }
cp --sparse=always "$out/wanwatch.img" "$out/boot.img"
# A bigger "card" than the image: first boot must grow the root file system into it.
truncate -s 4G "$out/boot.img"
log=$out/boot.log
start=$(date +%s)
timeout "${BOOT_TIMEOUT:-1800}" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 \
    -accel tcg,thread=multi -display none -monitor none -serial "file:$log" -no-reboot \
    -kernel "$out/vmlinuz" -initrd "$out/initrd.img" \
    -append "root=LABEL=RASPIROOT rw console=ttyAMA0 wanwatch.boottest ${EXTRA_APPEND:-}" \
    -drive if=none,file="$out/boot.img",format=raw,id=hd -device virtio-blk-pci,drive=hd \
    -device virtio-rng-pci -nic none </dev/null >"$out/qemu.log" 2>&1 || true
echo "qemu ran $(( $(date +%s) - start )) s; console log: $log"
grep -a "BOOTTEST" "$log" || { echo "FAIL: the boot test never reported"; tail -40 "$log"; exit 1; }
fail=0
check() { grep -aq "BOOTTEST $1" "$log" || { echo "FAIL: expected BOOTTEST $1"; fail=1; }; }
check "system=running"
check "failed=\[\]"
check "wanwatch=active"
check "user=wanwatch"
grep -aE "BOOTTEST samples=[1-9]" "$log" >/dev/null || { echo "FAIL: no samples written"; fail=1; }
grep -aE "BOOTTEST hostkeys=[1-9]" "$log" >/dev/null || { echo "FAIL: no ssh host keys"; fail=1; }
grep -aE "BOOTTEST rootfs_mb=(3[0-9]{3}|[4-9][0-9]{3})" "$log" >/dev/null || { echo "FAIL: the root file system was not grown to the card"; fail=1; }
grep -a "Reached target.*Multi-User" "$log" | head -1 || true
[ $fail = 0 ] && echo "boot test passed"
exit $fail

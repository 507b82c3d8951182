# Builds for the Pi without Docker (see .cargo/config.toml). Needs Debian's
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user, and
# `rustup target add aarch64-unknown-linux-gnu`.
TARGET := aarch64-unknown-linux-gnu
BIN := target/$(TARGET)/release/wanwatch
QEMU := qemu-aarch64 -L /usr/aarch64-linux-gnu

.PHONY: aarch64 smoke-aarch64 deb

aarch64:
	cargo build --release --locked --target $(TARGET)

# The aarch64 binary, run under qemu-user: version, then 5 s of pinging loopback into a real
# SQLite file that must come out healthy.
smoke-aarch64: aarch64
	$(QEMU) $(BIN) --version
	rm -rf target/smoke && mkdir -p target/smoke
	$(QEMU) $(BIN) run --probes none --db target/smoke/w.db --gateway none --target 127.0.0.1 --interval 200ms --for 5s
	$(QEMU) $(BIN) export --db target/smoke/w.db --table samples | awk 'END { if (NR < 20) { print "only " NR " lines exported"; exit 1 } print NR - 1 " samples from the aarch64 build" }'
	$(QEMU) $(BIN) report --db target/smoke/w.db --since 1h --out target/smoke/report.html
	grep -q "<svg" target/smoke/report.html
	$(QEMU) $(BIN) doctor --db target/smoke/w.db --offline --config /dev/null || true

# A .deb for Raspberry Pi OS (arm64): cargo install cargo-deb first.
deb: aarch64
	cargo deb --no-build --no-strip --target $(TARGET)

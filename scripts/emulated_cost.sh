#!/usr/bin/env bash
# Work per ping of the aarch64 agent against aarch64 fping, both under qemu-user, counted in host
# instructions by callgrind (qemu's own code plus the code it generated): a count, so it does
# not move with the machine's load the way CPU seconds do on a shared machine.
#
# Each is run twice, SHORT and LONG seconds, and the difference in instructions is divided by the
# difference in pings, so start-up and the first run of periodic code (flush, rollups) cancel.
# Each runs on a loopback of its own (a network namespace), so neither reads the other's packets.
# The agent runs without detection ([detect] enabled = false); its minute step is measured by
# `cargo bench --bench detect`.
#
# Needs root (namespaces), valgrind, qemu-user and an arm64 fping unpacked somewhere:
#   dpkg --add-architecture arm64 && apt-get update && apt-get download fping:arm64
#   dpkg-deb -x fping_*_arm64.deb /tmp/fping-arm64
#   sudo scripts/emulated_cost.sh target/aarch64-unknown-linux-gnu/release/wanwatch /tmp/fping-arm64/usr/bin/fping
# About 10 minutes (callgrind slows qemu about 50-fold; the runs go two at a time).
set -euo pipefail
agent=$(realpath "${1:?usage: emulated_cost.sh AGENT_AARCH64 FPING_AARCH64 [SHORT LONG]}")
fping=$(realpath "${2:?usage: emulated_cost.sh AGENT_AARCH64 FPING_AARCH64 [SHORT LONG]}")
short=${3:-150}
long=${4:-270}
root=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
    for ns in a$short a$long f$short f$long; do ip netns del "ww-cost-$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/w.toml" <<EOF
[ping]
gateway = "127.0.0.1"
anchors = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
[detect]
enabled = false
EOF

netns() {
    ip netns add "ww-cost-$1"
    ip netns exec "ww-cost-$1" ip link set lo up
    # As on the appliance (Debian's systemd): unprivileged ping sockets for every group.
    ip netns exec "ww-cost-$1" sysctl -q -w net.ipv4.ping_group_range="0 2147483647"
}

counted() { # name, namespace, then the command (run in it): its instruction count on stdout
    local name=$1 ns=$2
    shift 2
    # With $limit set, SIGINT after that many seconds (timeout stays outside what is counted).
    ${limit:+timeout -s INT "$limit"} ip netns exec "ww-cost-$ns" valgrind --tool=callgrind --smc-check=all-non-file \
        --callgrind-out-file="$work/$name.out" "$@" >"$work/$name.log" 2>&1 || true
    grep -o 'Collected : [0-9]*' "$work/$name.log" | grep -o '[0-9]*$'
}

agent_run() { # seconds: "instructions pings"
    local s=$1
    netns "a$s"
    local ir
    ir=$(WANWATCH_LOG=error counted "agent$s" "a$s" qemu-aarch64 -L "$root" "$agent" \
        run --probes none --db "$work/a$s.db" --config "$work/w.toml" --for "${s}s")
    local pings
    pings=$(qemu-aarch64 -L "$root" "$agent" export --db "$work/a$s.db" --table samples | tail -n +2 | wc -l)
    echo "$ir $pings"
}

fping_run() { # seconds: "instructions pings"
    local s=$1
    netns "f$s"
    local ir
    # SIGINT after s seconds: fping prints its counts and exits.
    ir=$(limit=$s counted "fping$s" "f$s" qemu-aarch64 -L "$root" "$fping" \
        -q -l -p 1000 127.0.0.1 127.0.0.2 127.0.0.3 127.0.0.4)
    local pings
    pings=$(grep -o 'xmt/rcv/%loss = [0-9]*' "$work/fping$s.log" | awk '{n += $NF} END {print n}')
    echo "$ir $pings"
}

for s in "$short" "$long"; do agent_run "$s" >"$work/agent$s.res" & done
wait
for s in "$short" "$long"; do fping_run "$s" >"$work/fping$s.res" & done
wait

per_ping() { # prefix: instructions per ping, long run less short
    read -r i1 p1 <"$work/$1$short.res"
    read -r i2 p2 <"$work/$1$long.res"
    echo "$(((i2 - i1) / (p2 - p1))) $((p2 - p1))"
}
read -r agent_ir agent_n < <(per_ping agent)
read -r fping_ir fping_n < <(per_ping fping)
echo "host instructions per ping under qemu-user, ${long} s run less ${short} s run:"
echo "  wanwatch $agent_ir ($agent_n pings)"
echo "  fping    $fping_ir ($fping_n pings)"
awk -v a="$agent_ir" -v f="$fping_ir" 'BEGIN {printf "  ratio    %.2f\n", a / f}'

#!/usr/bin/env bash
# DHCP benchmark: perfdhcp (Kea's load generator, package kea-admin) in relay
# mode against hotleased and against Kea 2.2 (memfile, multi-threading, raw
# sockets), in the same namespace topology, in the same run.
#
#   C (perfdhcp, "relay" 10.200.0.2) rly ── srv S (server 10.200.0.1/16)
#
# For each server the offered rate goes up step by step (each step PERIOD
# seconds, CLIENTS distinct clients); the result is the highest achieved
# 4-way rate whose DISCOVER-OFFER and REQUEST-ACK drops both stay at or
# under MAXDROP %. Prints a table and writes it, with every perfdhcp report,
# to bench/dhcp/out/.
#
# The server runs on CPU SERVER_CPUS and perfdhcp on CLIENT_CPU (taskset):
# on a 2-core machine a load generator left to compete with the server for
# the same cores is starved, its socket buffer overflows and the "drops"
# measure perfdhcp, not the server. Both servers get the same single core.
# perfdhcp waits 0.5 s after its period (-W) so that replies still in
# flight when it stops sending are not counted as drops (-d 2 is the loss
# criterion).
#
# Usage (root, Debian 12): bench/dhcp/run.sh
#   PERIOD=10 CLIENTS=60000 MAXDROP=0.1 RATES="2000 4000 ..." bench/dhcp/run.sh
# Namespaces are named dh<pid>s / dh<pid>c and always removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

PERIOD="${PERIOD:-10}"
CLIENTS="${CLIENTS:-60000}"
MAXDROP="${MAXDROP:-0.1}"
SERVER_CPUS="${SERVER_CPUS:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
RATES="${RATES:-2000 4000 5000 6000 7000 8000 9000 10000 11000 12000 14000 16000 20000 24000}"

pkgs=()
for p in kea-admin kea-dhcp4-server iproute2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ "${#pkgs[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
# the packaged Kea service must not hold port 67 in the host namespace;
# ours runs in its own namespace anyway
cargo build --release -q
BIN="$ROOT/target/release/hotleased"

S="dh$$s"
C="dh$$c"
W="$(mktemp -d /tmp/dhbench.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$S" 2>/dev/null || true
    ip netns del "$C" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

ip netns add "$S"
ip netns add "$C"
ip -n "$S" link set lo up
ip -n "$C" link set lo up
ip -n "$S" link add srv type veth peer name rly netns "$C"
ip -n "$S" addr add 10.200.0.1/16 dev srv
ip -n "$C" addr add 10.200.0.2/16 dev rly
ip -n "$S" link set srv up
ip -n "$C" link set rly up

# ---------------------------------------------------------------- servers

start_hotleased() {
    local d="$W/hotleased"
    rm -rf "$d"
    mkdir -p "$d/storage"
    local hash
    hash="$(echo -n bench | "$BIN" hash-password)"
    cat >"$d/hotleased.toml" <<EOF
[netconf]
listen = "127.0.0.1:18830"
host-key = "$d/host_key"
[[netconf.user]]
name = "admin"
password-hash = "$hash"
[storage]
dir = "$d/storage"
EOF
    cat >"$d/storage/startup.xml" <<'EOF'
<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">
  <interface><name>srv</name></interface>
  <ip-pool>
    <name>bench</name>
    <gateway>10.200.0.1</gateway>
    <mask>255.255.0.0</mask>
    <section><start>10.200.1.0</start><end>10.200.255.254</end></section>
    <dns-server>10.200.0.53</dns-server>
    <domain-name>bench.test</domain-name>
  </ip-pool>
</dhcp-server>
EOF
    HOTLEASE_LOG=warn ip netns exec "$S" taskset -c "$SERVER_CPUS" "$BIN" --config "$d/hotleased.toml" >"$d/log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    sleep 2
}

start_kea() {
    local d="$W/kea"
    rm -rf "$d"
    mkdir -p "$d"
    cat >"$d/kea-dhcp4.conf" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "srv" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": true, "lfc-interval": 0,
                        "name": "$d/kea-leases4.csv" },
    "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2,
                         "packet-queue-size": 64 },
    "valid-lifetime": 86400,
    "subnet4": [ {
        "id": 1,
        "subnet": "10.200.0.0/16",
        "pools": [ { "pool": "10.200.1.0 - 10.200.255.254" } ],
        "option-data": [
            { "name": "routers", "data": "10.200.0.1" },
            { "name": "domain-name-servers", "data": "10.200.0.53" },
            { "name": "domain-name", "data": "bench.test" } ]
    } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                   "output_options": [ { "output": "$d/kea.log" } ] } ]
} }
EOF
    KEA_PIDFILE_DIR="$d" KEA_LOCKFILE_DIR="$d" ip netns exec "$S" taskset -c "$SERVER_CPUS" kea-dhcp4 -c "$d/kea-dhcp4.conf" >"$d/stdout" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    sleep 2
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# ---------------------------------------------------------------- load

# perf OUTFILE RATE: one perfdhcp run in relay mode (giaddr 10.200.0.2)
perf() {
    ip netns exec "$C" taskset -c "$CLIENT_CPU" perfdhcp -4 -l 10.200.0.2 -r "$2" -R "$CLIENTS" -p "$PERIOD" -d 2 -W 500000 \
        10.200.0.1 >"$1" 2>&1 || true
}

# field FILE SECTION KEY: a value from perfdhcp's per-exchange statistics
field() {
    awk -v sec="$2" -v key="$3" '
        /Statistics for:/ { cur = $0 }
        index(cur, sec) && index($0, key ":") { sub(".*" key ": *", ""); print $1; exit }' "$1"
}

rate_of() { sed -n 's/^Rate: \([0-9.]*\) 4-way exchanges.*/\1/p' "$1" | tail -n 1; }

CLK_TCK="$(getconf CLK_TCK)"
# CPU time (clock ticks, every thread) the server has used so far
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

# bench NAME: step through RATES; prints
# "best_rate ack_avg_delay_ms offer_avg_delay_ms cpu_us_per_exchange_at_best"
bench() {
    local name="$1" best="0" best_ack="-" best_offer="-" best_cpu="-" fails=0
    for r in $RATES; do
        local out="$W/$name-$r.txt"
        local t0 t1
        t0="$(cpu_ticks)"
        perf "$out" "$r"
        t1="$(cpu_ticks)"
        local got dd dr ackd offd cpu
        got="$(rate_of "$out")"
        dd="$(field "$out" DISCOVER-OFFER "drops ratio")"
        dr="$(field "$out" REQUEST-ACK "drops ratio")"
        ackd="$(field "$out" REQUEST-ACK "avg delay")"
        offd="$(field "$out" DISCOVER-OFFER "avg delay")"
        # server CPU per 4-way exchange, in microseconds
        cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v g="${got:-0}" -v p="$PERIOD" \
            'BEGIN { if (g > 0) printf "%.1f", (b - a) / hz * 1e6 / (g * p); else print "-" }')"
        printf '  %-9s offered %6s/s  achieved %9s/s  drops D-O %6s %%  R-A %6s %%  avg delay OFFER %s ms ACK %s ms  server CPU %s us/exchange\n' \
            "$name" "$r" "${got:-?}" "${dd:-?}" "${dr:-?}" "${offd:-?}" "${ackd:-?}" "$cpu" >&2
        cp "$out" "$OUT/$name-$r.txt"
        if [ -n "$got" ] && [ -n "$dd" ] && [ -n "$dr" ] &&
            awk -v a="$dd" -v b="$dr" -v m="$MAXDROP" 'BEGIN { exit !(a <= m && b <= m) }'; then
            best="$got"
            best_ack="$ackd"
            best_offer="$offd"
            best_cpu="$cpu"
            fails=0
        else
            fails=$((fails + 1))
            [ "$fails" -ge 2 ] && break
        fi
    done
    echo "$best $best_ack $best_offer $best_cpu"
}

OUT="$ROOT/bench/dhcp/out"
rm -rf "$OUT"
mkdir -p "$OUT"
echo "==> hotleased ($(git -C "$ROOT" rev-parse --short HEAD))" >&2
start_hotleased
read -r H_RATE H_ACK H_OFFER H_CPU < <(bench hotleased)
stop_server
H_LEASES="$(grep -c ' bound ' "$W/hotleased/storage/leases.log" || true)"

echo "==> kea-dhcp4 $(kea-dhcp4 -V | head -n 1)" >&2
start_kea
read -r K_RATE K_ACK K_OFFER K_CPU < <(bench kea)
stop_server

CPU_RATIO="$(awk -v h="$H_CPU" -v k="$K_CPU" 'BEGIN { if (h > 0) printf "%.2f", k / h; else print "n/a" }')"
RATIO="$(awk -v h="$H_RATE" -v k="$K_RATE" 'BEGIN { if (k > 0) printf "%.2f", h / k; else print "n/a" }')"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
{
    echo "| server | highest rate with ≤ ${MAXDROP} % drops (4-way exchanges/s) | avg ACK delay (ms) | avg OFFER delay (ms) | server CPU per exchange at that rate (µs) |"
    echo "| --- | --- | --- | --- | --- |"
    echo "| hotleased (release, lease log fdatasync per batch) | $H_RATE | $H_ACK | $H_OFFER | $H_CPU |"
    echo "| Kea $(kea-dhcp4 -V | head -n 1) (memfile, MT 2 threads, raw sockets) | $K_RATE | $K_ACK | $K_OFFER | $K_CPU |"
    echo
    echo "Rate ratio hotleased / Kea: **$RATIO**; CPU efficiency ratio (Kea µs / hotleased µs per exchange): **$CPU_RATIO**."
    echo "Machine: $(nproc) cores ($CPU), $(date -u +%Y-%m-%d)."
    echo "perfdhcp: \`perfdhcp -4 -l 10.200.0.2 -r RATE -R $CLIENTS -p $PERIOD -d 2 -W 500000 10.200.0.1\`, rates $RATES."
    echo "hotleased lease-log records of bound leases after the run: $H_LEASES."
    echo "Server on CPU $SERVER_CPUS, perfdhcp on CPU $CLIENT_CPU (taskset); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$OUT/results.md"

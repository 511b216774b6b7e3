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
# CPU budgets (BUDGETS): a white-box router's control plane gives its DHCP
# server a share of a CPU, not a whole core. For each budget both servers
# run in a cpu cgroup with the *same* CFS quota (cgroup v1
# cpu.cfs_quota_us / cpu.cfs_period_us, or cgroup v2 cpu.max), e.g. "25" =
# 25 % of one core; every thread of the server (Kea's thread pool too)
# shares that quota. "full" is the same cgroup without a quota: the whole
# of CPU SERVER_CPUS. The budget is chosen below what perfdhcp can load
# on its own core, so that the budget rows measure the servers, not the
# load generator; the script checks it (perfdhcp's own CPU use per step,
# the server's throttled periods, and the highest clean rate perfdhcp
# reached in the run) and prints the evidence.
#
# The server runs on CPU SERVER_CPUS and perfdhcp on CLIENT_CPU (taskset):
# on a 2-core machine a load generator left to compete with the server for
# the same cores is starved, its socket buffer overflows and the "drops"
# measure perfdhcp, not the server. perfdhcp waits 0.5 s after its period
# (-W) so that replies still in flight when it stops sending are not
# counted as drops (-d 2 is the loss criterion).
#
# Usage (root, Debian 12): bench/dhcp/run.sh
#   PERIOD=10 CLIENTS=60000 MAXDROP=0.1 BUDGETS="full 25" CFS_PERIOD_US=10000 \
#   RATES="2000 4000 ..." BUDGET_RATES="1000 1500 ..." bench/dhcp/run.sh
# Namespaces are named dh<pid>s / dh<pid>c, the cgroup hotlease-bench-<pid>;
# all are always removed. A benchmark, not a test: it never fails on a miss.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

PERIOD="${PERIOD:-10}"
CLIENTS="${CLIENTS:-60000}"
MAXDROP="${MAXDROP:-0.1}"
SERVER_CPUS="${SERVER_CPUS:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
BUDGETS="${BUDGETS:-full 25}"
CFS_PERIOD_US="${CFS_PERIOD_US:-10000}"
RATES="${RATES:-1000 2000 3000 4000 5000 6000 7000 8000 9000 10000 11000 12000 14000 16000}"
BUDGET_RATES="${BUDGET_RATES:-250 500 750 1000 1250 1500 2000 2500 3000 3500 4000 4500 5000 5500 6000 6500 7000 7500 8000 9000 10000}"
TARGET="${TARGET:-2}"
# which servers to run (the ratio needs both; one alone is for profiling)
SERVERS="${SERVERS:-hotleased kea}"

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

# ---------------------------------------------------------------- cgroup

# CG_VER 1: cgroup v1 cpu controller; 2: cgroup v2 with cpu enabled
if [ -w /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    CG_VER=1
    CG="/sys/fs/cgroup/cpu/hotlease-bench-$$"
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    CG_VER=2
    CG="/sys/fs/cgroup/hotlease-bench-$$"
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
else
    echo "no cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 with cpu): cannot set CPU budgets" >&2
    exit 1
fi

S="dh$$s"
C="dh$$c"
W="$(mktemp -d /tmp/dhbench.XXXXXX)"
PIDS=()
# the processes in the server cgroup (only ever the ones started here)
cg_pids() { [ -f "$CG/cgroup.procs" ] && cat "$CG/cgroup.procs" || true; }
cleanup() {
    for p in "${PIDS[@]}" $(cg_pids); do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}" $(cg_pids); do kill -9 "$p" 2>/dev/null || true; done
    sleep 0.2
    ip netns del "$S" 2>/dev/null || true
    ip netns del "$C" 2>/dev/null || true
    [ -d "$CG" ] && rmdir "$CG" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
mkdir "$CG"

# set_budget BUDGET: "full" (no quota) or a percentage of one core
set_budget() {
    local q
    if [ "$1" = full ]; then q=-1; else q=$(($1 * CFS_PERIOD_US / 100)); fi
    if [ "$CG_VER" = 1 ]; then
        echo "$CFS_PERIOD_US" >"$CG/cpu.cfs_period_us"
        echo "$q" >"$CG/cpu.cfs_quota_us"
    else
        if [ "$q" = -1 ]; then q=max; fi
        echo "$q $CFS_PERIOD_US" >"$CG/cpu.max"
    fi
}

# "nr_periods nr_throttled" of the group so far
cg_throttle() { awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } END { print p + 0, t + 0 }' "$CG/cpu.stat"; }

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

# in_server_cg CMD...: run CMD in the server namespace, in the cgroup, on
# SERVER_CPUS (exec all the way, also from the background subshell: $! is
# the server itself)
in_server_cg() {
    # join the cgroup first: `ip netns exec` mounts the namespace's own /sys
    exec sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" ip netns exec "$S" taskset -c "$SERVER_CPUS" "$@"
}

# wait (bounded) until something listens on UDP port 67 in the server
# namespace: under a small budget start-up takes longer
wait_port67() {
    local i
    for i in $(seq 1 60); do
        if ip netns exec "$S" ss -Hlun 'sport = :67' | grep -q .; then
            sleep 1
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.5
    done
    echo "server did not open port 67" >&2
    return 1
}

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
recovery-user = "admin"
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
    HOTLEASE_LOG=warn in_server_cg "$BIN" --config "$d/hotleased.toml" >"$d/log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_port67
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
    KEA_PIDFILE_DIR="$d" KEA_LOCKFILE_DIR="$d" in_server_cg kea-dhcp4 -c "$d/kea-dhcp4.conf" >"$d/stdout" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_port67
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    # nothing of this server may survive into the next one's run
    local i p
    for i in $(seq 1 20); do
        [ -z "$(cg_pids)" ] && return 0
        sleep 0.25
    done
    for p in $(cg_pids); do kill -9 "$p" 2>/dev/null || true; done
}

# ---------------------------------------------------------------- load

# perf OUTFILE RATE: one perfdhcp run in relay mode (giaddr 10.200.0.2);
# OUTFILE.cpu gets perfdhcp's own CPU seconds and its wall time
perf() {
    local t0 t1
    t0="$(date +%s.%N)"
    ip netns exec "$C" taskset -c "$CLIENT_CPU" bash -c '
        out="$1"; shift
        perfdhcp "$@" >"$out" 2>&1 || true
        times >"$out.times"' _ "$1" \
        -4 -l 10.200.0.2 -r "$2" -R "$CLIENTS" -p "$PERIOD" -d 2 -W 500000 10.200.0.1 || true
    t1="$(date +%s.%N)"
    # the second line of `times`: the children's user and system time
    awk -v t0="$t0" -v t1="$t1" 'NR == 2 {
            split($1, u, /[ms]/); split($2, s, /[ms]/)
            printf "%.3f %.3f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2], t1 - t0 }' "$1.times" >"$1.cpu"
    rm -f "$1.times"
}

# field FILE SECTION KEY: a value from perfdhcp's per-exchange statistics
field() {
    awk -v sec="$2" -v key="$3" '
        /Statistics for:/ { cur = $0 }
        index(cur, sec) && index($0, key ":") { sub(".*" key ": *", ""); print $1; exit }' "$1"
}

rate_of() { sed -n 's/^Rate: \([0-9.]*\) 4-way exchanges.*/\1/p' "$1" | tail -n 1; }

# UDP receive-buffer overflows in the client namespace so far (replies that
# reached perfdhcp's socket but found it full: the load generator's loss)
rcvbuf_errors() { ip netns exec "$C" awk '$1 == "Udp:" && $2 ~ /^[0-9]/ { print $6 }' /proc/net/snmp; }

CLK_TCK="$(getconf CLK_TCK)"
# CPU time (clock ticks, every thread) the server has used so far
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }

# bench NAME BUDGET: step through the rates; prints
# "best_rate ack_avg_ms ack_max_ms offer_avg_ms cpu_us_per_exchange throttled_pct perfdhcp_cpu_pct
#  overflows next_throttled_pct next_perfdhcp_cpu_pct next_overflows"
# (the next_*: at the first failed step above the best, "-" if none)
bench() {
    local name="$1" budget="$2" best="0" best_ack="-" best_ackmax="-" best_offer="-" best_cpu="-"
    local best_thr="-" best_pcpu="-" best_ovf="-" next_thr="-" next_pcpu="-" next_ovf="-" fails=0 rates
    if [ "$budget" = full ]; then rates="$RATES"; else rates="$BUDGET_RATES"; fi
    for r in $rates; do
        local out="$W/$name-$budget-$r.txt"
        local t0 t1 c0 c1 e0 e1
        t0="$(cpu_ticks)"
        c0="$(cg_throttle)"
        e0="$(rcvbuf_errors)"
        perf "$out" "$r"
        t1="$(cpu_ticks)"
        c1="$(cg_throttle)"
        e1="$(rcvbuf_errors)"
        local got dd dr ackd ackm offd cpu thr pcpu
        got="$(rate_of "$out")"
        dd="$(field "$out" DISCOVER-OFFER "drops ratio")"
        dr="$(field "$out" REQUEST-ACK "drops ratio")"
        ackd="$(field "$out" REQUEST-ACK "avg delay")"
        ackm="$(field "$out" REQUEST-ACK "max delay")"
        offd="$(field "$out" DISCOVER-OFFER "avg delay")"
        # server CPU per 4-way exchange, in microseconds
        cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v g="${got:-0}" -v p="$PERIOD" \
            'BEGIN { if (g > 0) printf "%.1f", (b - a) / hz * 1e6 / (g * p); else print "-" }')"
        # share of the CFS periods in which the server hit its quota
        thr="$(echo "$c0 $c1" | awk '{ d = $3 - $1; if (d > 0) printf "%.0f", ($4 - $2) * 100 / d; else print "0" }')"
        # perfdhcp's CPU use over its run (100 = its whole core)
        pcpu="$(awk '{ if ($2 > 0) printf "%.0f", $1 * 100 / $2; else print "-" }' "$out.cpu")"
        printf '  %-9s %-5s offered %6s/s  achieved %9s/s  drops D-O %6s %%  R-A %6s %%  OFFER avg %s ms  ACK avg %s max %s ms  server CPU %s us/exch, throttled %s %% of periods  perfdhcp CPU %s %%, socket overflows %s\n' \
            "$name" "$budget" "$r" "${got:-?}" "${dd:-?}" "${dr:-?}" "${offd:-?}" "${ackd:-?}" "${ackm:-?}" "$cpu" "$thr" "$pcpu" "$((e1 - e0))" >&2
        cp "$out" "$OUT/$name-$budget-$r.txt"
        echo "$name $budget $r ${got:--} ${dd:--} ${dr:--} ${offd:--} ${ackd:--} ${ackm:--} $cpu $thr $pcpu $((e1 - e0))" >>"$OUT/steps.txt"
        if [ -n "$got" ] && [ -n "$dd" ] && [ -n "$dr" ] &&
            awk -v a="$dd" -v b="$dr" -v m="$MAXDROP" 'BEGIN { exit !(a <= m && b <= m) }'; then
            if awk -v g="$got" -v b="$best" 'BEGIN { exit !(g > b) }'; then
                best="$got" best_ack="$ackd" best_ackmax="$ackm" best_offer="$offd" best_cpu="$cpu"
                best_thr="$thr" best_pcpu="$pcpu" best_ovf="$((e1 - e0))" next_thr="-" next_pcpu="-" next_ovf="-"
            fi
            fails=0
        else
            if [ "$next_thr" = "-" ]; then next_thr="$thr" next_pcpu="$pcpu" next_ovf="$((e1 - e0))"; fi
            fails=$((fails + 1))
            [ "$fails" -ge 2 ] && break
        fi
        # let a backlog of the step drain before the next one
        sleep 1
    done
    echo "$best $best_ack $best_ackmax $best_offer $best_cpu $best_thr $best_pcpu $best_ovf $next_thr $next_pcpu $next_ovf"
}

OUT="$ROOT/bench/dhcp/out"
rm -rf "$OUT"
mkdir -p "$OUT"
echo "# server budget offered achieved drops_D-O_% drops_R-A_% offer_avg_ms ack_avg_ms ack_max_ms server_cpu_us_per_exchange throttled_% perfdhcp_cpu_% perfdhcp_socket_overflows" >"$OUT/steps.txt"
KEA_V="$(kea-dhcp4 -V | head -n 1)"
PERF_V="$(perfdhcp -v 2>&1 | sed -n 's/^VERSION: *//p' | head -n 1)"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+dirty')"
declare -A R
for b in $BUDGETS; do
    set_budget "$b"
    R[hotleased,$b]="0 - - - - - - - - - -"
    R[kea,$b]="0 - - - - - - - - - -"
    if [[ " $SERVERS " == *" hotleased "* ]]; then
        echo "==> budget $b: hotleased ($COMMIT)" >&2
        start_hotleased
        read -r -a v < <(bench hotleased "$b")
        R[hotleased,$b]="${v[*]}"
        stop_server
    fi
    if [[ " $SERVERS " == *" kea "* ]]; then
        echo "==> budget $b: kea-dhcp4 $KEA_V" >&2
        start_kea
        read -r -a v < <(bench kea "$b")
        R[kea,$b]="${v[*]}"
        stop_server
    fi
done

# the highest clean rate perfdhcp reached in this run, against any server
PMAX="$(for k in "${!R[@]}"; do echo "${R[$k]}" | cut -d' ' -f1; done | sort -g | tail -n 1)"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
budget_name() { if [ "$1" = full ]; then echo "full core (no quota)"; else echo "$1 % of one core"; fi; }
{
    echo "| CPU budget | server | highest rate with ≤ ${MAXDROP} % drops (4-way exchanges/s) | ACK delay avg / max (ms) | OFFER delay avg (ms) | server CPU per exchange (µs) | periods throttled: at that rate / next (failed) step | perfdhcp CPU: at that rate / next step | perfdhcp socket overflows: at that rate / next step |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for b in $BUDGETS; do
        for s in hotleased kea; do
            read -r best ack ackmax offer cpu thr pcpu ovf nthr npcpu novf <<<"${R[$s,$b]}"
            if [ "$s" = hotleased ]; then label="hotleased (release, lease log fdatasync before the ACKs)"; else label="Kea $KEA_V (memfile, MT 2 threads, raw sockets)"; fi
            echo "| $(budget_name "$b") | $label | $best | $ack / $ackmax | $offer | $cpu | $thr % / $nthr % | $pcpu % / $npcpu % | $ovf / $novf |"
        done
    done
    echo
    for b in $BUDGETS; do
        read -r h _ <<<"${R[hotleased,$b]}"
        read -r k _ <<<"${R[kea,$b]}"
        read -r _ _ _ _ hc _ <<<"${R[hotleased,$b]}"
        read -r _ _ _ _ kc _ <<<"${R[kea,$b]}"
        ratio="$(awk -v h="$h" -v k="$k" 'BEGIN { if (k > 0) printf "%.2f", h / k; else print "n/a" }')"
        verdict="$(awk -v h="$h" -v k="$k" -v t="$TARGET" 'BEGIN { if (k > 0 && h >= t * k) print "PASS"; else print "MISS" }')"
        cratio="$(awk -v h="$hc" -v k="$kc" 'BEGIN { if (h + 0 > 0 && k + 0 > 0) printf "%.2f", k / h; else print "n/a" }')"
        limited=""
        if [ "$b" != full ]; then
            limited="$(awk -v h="$h" -v k="$k" -v p="$PMAX" 'BEGIN {
                if (h < p && k < p) print "; both below the " p "/s perfdhcp reached clean in this run";
                else print "; WARNING: not below the highest clean rate perfdhcp reached (" p "/s): the load generator may be the limit" }')"
        fi
        echo "- $(budget_name "$b"): rate ratio hotleased / Kea **$ratio** → **$verdict** (target ≥ ${TARGET}×); CPU per exchange Kea / hotleased $cratio$limited."
    done
    echo
    echo "Machine: $(nproc) cores ($CPU), $(date -u +%Y-%m-%d), hotleased $COMMIT, $KEA_V, perfdhcp $PERF_V."
    echo "perfdhcp: \`perfdhcp -4 -l 10.200.0.2 -r RATE -R $CLIENTS -p $PERIOD -d 2 -W 500000 10.200.0.1\`; rates at full core: $RATES; under a budget: $BUDGET_RATES."
    echo "Server on CPU $SERVER_CPUS in cgroup v$CG_VER (CFS period $CFS_PERIOD_US µs), perfdhcp on CPU $CLIENT_CPU (taskset); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$OUT/results.md"

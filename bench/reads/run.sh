#!/usr/bin/env bash
# Read benchmark (issue 11): the cost of reading the DHCP state of a full
# server over NETCONF, beside Kea 2.2's control socket for the same reads on
# the same lease count, in one run.
#
#   S (server 10.200.0.1/15, srv) ── rly C (perfdhcp as a relay, 10.200.0.2/15)
#
# hotleased (target/release) boots with pool "bench" (10.200.1.0 –
# 10.201.255.254, 130,814 addresses) and 999 small pools p0001..p0999 (1,000
# pools); perfdhcp fills FILL leases (distinct clients, numbered MACs).
# bench/reads/reads.py then measures over NETCONF (median of REPS reads of
# different keys): one lease by its address (subtree and XPath), by its MAC,
# the pool's statistics, a keyed get-config of one pool among the 1,000;
# then a whole-table <get> (its rate, the daemon's peak RSS growth during it
# against the RSS the leases added, another session's one-leaf commits
# meanwhile), and the DHCP ACK delay at ACK_RATE/s quiet and while
# whole-table <get>s run back to back. Then Kea (memfile, lease_cmds and
# stat_cmds hooks, unix control socket) gets the same fill and the same
# keyed reads (lease4-get by address and by hw-address, stat-lease4-get).
#
# Usage (root, Debian 12): bench/reads/run.sh
#   FILL=100000 FILL_RATE=4000 REPS=200 ACK_RATE=2000 ACK_SECS=5 NO_BUILD=1 PY=python3
#   GETLOOP_CPU=<cpu of the back-to-back <get> client; default CLIENT_CPU>
#   GETLOOP_CLIENT=paramiko|openssh (that client's SSH implementation)
#   GETLOOP_SCHED=idle|normal (that client's scheduling; default idle: it
#   stands for a controller on another machine and takes only the CPU
#   perfdhcp leaves, see below)
#   CLIENT_HOG=1 (a CPU-bound process at normal priority on CLIENT_CPU during
#   the reads phase: what a busy client CPU alone does to the figure)
#   BIN=<another hotleased binary to measure; default target/release>
#   READS=0 (skip the keyed reads and the whole-table <get> with commits)
#   KEA=0 (skip Kea)
#   SERVER_LOG=<HOTLEASE_LOG of the daemon; default warn> (with KEEP=1 its log
#   stays in the work dir, e.g. hotlease::northbound=debug: the actor's time
#   per operation)
# Each ACK delay phase also writes, per daemon thread, its CPU time and
# how often it was preempted or slept (/proc/<pid>/task/*/sched)
# to out/threads-<phase>.txt, and as figures how busy each CPU was, perfdhcp's
# own CPU time and the <get> client's; with SCHED_TRACE=1, `perf sched
# latency` of SERVER_CPU during it to out/sched-<phase>.txt, and the
# scheduler of both CPUs during the whole-table <get> to
# out/sched-whole.data (`perf sched timehist -i ...`; CLOCK_MONOTONIC, the
# wall clock's offset is in out/commits-trace.txt, which says when each
# commit ran and how long its edit and commit took).
# Server on CPU SERVER_CPU, perfdhcp and the clients on CLIENT_CPU.
# Namespaces rd<pid>s / rd<pid>c are always removed. A benchmark, not a
# test: a missed target prints MISS and never fails the script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

FILL="${FILL:-100000}"
FILL_RATE="${FILL_RATE:-4000}"
REPS="${REPS:-200}"
ACK_RATE="${ACK_RATE:-2000}"
ACK_SECS="${ACK_SECS:-5}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
# the back-to-back <get> client during the ACK delay measurement (its
# Python SSH decryption of 28 MB per read is CPU-heavy: on CLIENT_CPU it
# competes with perfdhcp, on SERVER_CPU with the server)
GETLOOP_CPU="${GETLOOP_CPU:-$CLIENT_CPU}"
# GETLOOP_CLIENT=openssh: that client reads with OpenSSH (C) instead of
# paramiko, and scans the reply only for its end
GETLOOP_CLIENT="${GETLOOP_CLIENT:-paramiko}"
# The reader stands for a controller on another machine: on this 2-core
# machine it shares CLIENT_CPU with perfdhcp, the DHCP clients' side. At
# normal priority paramiko's Python (a whole CPU while it decrypts 28 MB a
# read) takes perfdhcp's CPU, perfdhcp sends its requests in bursts and
# measures late, and the ACK delay rose by about 30 % whatever the server
# did: a plain CPU hog beside an OpenSSH reader did the same (CLIENT_HOG=1,
# BENCHMARKS.md). SCHED_IDLE leaves perfdhcp its CPU and the reader the rest
# (about as many reads: it runs whenever perfdhcp waits).
GETLOOP_SCHED="${GETLOOP_SCHED:-idle}"
case "$GETLOOP_SCHED" in
    idle) getloop_sched=(chrt -i 0) ;;
    normal) getloop_sched=() ;;
    *) echo "GETLOOP_SCHED: idle or normal" >&2; exit 2 ;;
esac
if [ -z "${PY:-}" ]; then
    for p in "$ROOT/bench/.venv/bin/python" "$ROOT/netconf-tests/.venv/bin/python" python3; do
        if "$p" -c 'import paramiko' 2>/dev/null; then PY="$p"; break; fi
    done
fi
"${PY:=python3}" -c 'import paramiko' || { echo "a python with paramiko is needed (PY=...)" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
pkgs=()
for p in kea-admin kea-dhcp4-server iproute2 time; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ "${#pkgs[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
[ -n "${NO_BUILD:-}" ] || cargo build --release -q
BIN="${BIN:-$ROOT/target/release/hotleased}"

S="rd$$s"
C="rd$$c"
W="$(mktemp -d /tmp/rdbench.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$S" 2>/dev/null || true
    ip netns del "$C" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

ip netns add "$S"
ip netns add "$C"
ip -n "$S" link set lo up
ip -n "$C" link set lo up
ip -n "$S" link add srv type veth peer name rly netns "$C"
ip -n "$S" addr add 10.200.0.1/15 dev srv
ip -n "$C" addr add 10.200.0.2/15 dev rly
ip -n "$S" link set srv up
ip -n "$C" link set rly up

wait_port67() {
    local i
    for i in $(seq 1 120); do
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

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# perf OUT RATE ARGS...: one perfdhcp run from C
# (with PERF_CPU=FILE: perfdhcp's own CPU seconds, user and system, to FILE)
perf() {
    local out="$1" rate="$2"
    shift 2
    local timed=()
    [ -z "${PERF_CPU:-}" ] || timed=(/usr/bin/time -o "$PERF_CPU" -f "%U %S")
    ip netns exec "$C" taskset -c "$CLIENT_CPU" "${timed[@]}" perfdhcp -4 -l 10.200.0.2 -r "$rate" -d 2 -W 500000 "$@" 10.200.0.1 >"$out" 2>&1 || true
}

field() {
    awk -v sec="$2" -v key="$3" '
        /Statistics for:/ { cur = $0 }
        index(cur, sec) && index($0, key ":") { sub(".*" key ": *", ""); print $1; exit }' "$1"
}

# threads_at FILE: per daemon thread "tid name cpu-ticks involuntary-switches
# voluntary-switches" (/proc/<pid>/task/*/stat and sched; schedstat, the
# run-queue wait, is often not built in)
threads_at() {
    local t tick
    tick="$(getconf CLK_TCK)"
    # a thread may end meanwhile (the runtime's blocking helpers): skipped
    for t in /proc/"$SERVER_PID"/task/*; do
        { { tr ' ' '_' <"$t/comm"; sed 's/.*) //' "$t/stat"; cat "$t/sched"; } 2>/dev/null |
            awk -v tid="${t##*/}" -v tick="$tick" '
            NR == 1 { name = $1 }
            NR == 2 { c = ($12 + $13) * 1000 / tick }
            $1 == "nr_involuntary_switches" { i = $3 }
            $1 == "nr_voluntary_switches" { v = $3 }
            END { if (NR > 2) printf "%s %s %d %d %d\n", tid, name, c, i, v }'; } || true
    done >"$1"
}

# threads_diff BEFORE AFTER SECS: per thread name, CPU time over the phase
# (ms and % of one CPU), times it was preempted and times it slept
threads_diff() {
    awk -v secs="$3" '
        FNR == NR { c[$1] = $3; i[$1] = $4; v[$1] = $5; next }
        ($1 in c) { n[$2] += 1; cpu[$2] += $3 - c[$1]; inv[$2] += $4 - i[$1]; vol[$2] += $5 - v[$1] }
        END {
            for (k in n) printf "%-16s %3d %9.1f ms %5.1f %% %8d preempted %8d slept\n", k, n[k], cpu[k], cpu[k] / secs / 10, inv[k], vol[k]
        }' "$1" "$2" | sort -k3 -n -r
}

# sched_trace PHASE: with SCHED_TRACE=1, record the scheduler on
# SERVER_CPU for 3 s in the background (the wake-up latency per thread;
# `command`: perf() below is perfdhcp)
sched_trace() {
    [ -n "${SCHED_TRACE:-}" ] || return 0
    (command perf sched record -q -C "$SERVER_CPU" -o "$W/sched-$1.data" -- sleep 3 >/dev/null 2>&1 &&
        command perf sched latency -i "$W/sched-$1.data" --sort max 2>/dev/null | head -n 30 >"$OUT/sched-$1.txt") &
}

# cpu_at FILE: the jiffies of SERVER_CPU and CLIENT_CPU (/proc/stat)
cpu_at() { awk -v a="cpu$SERVER_CPU" -v b="cpu$CLIENT_CPU" '$1 == a || $1 == b' /proc/stat >"$1"; }

# cpu_busy BEFORE AFTER PHASE: how busy each of the two CPUs was over the
# phase (% not idle), whatever ran there (the daemon, perfdhcp, the <get>
# client, other processes of the machine)
cpu_busy() {
    awk -v phase="$3" '
        FNR == NR { for (i = 2; i <= NF; i++) t0[$1] += $i; i0[$1] = $5 + $6; next }
        { t = 0; for (i = 2; i <= NF; i++) t += $i
          busy = (t - t0[$1]) - ($5 + $6 - i0[$1])
          printf "figure %s-busy-pct-%s %.1f %%\n", $1, phase, 100 * busy / (t - t0[$1]) }' "$1" "$2"
}

rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$SERVER_PID/status"; }

OUT="$ROOT/bench/reads/out"
rm -rf "$OUT"
mkdir -p "$OUT"
FIG="$OUT/figures.txt"
: >"$FIG"

# ---------------------------------------------------------------- hotleased

D="$W/hotleased"
mkdir -p "$D/storage"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$W/client_key"
cat >"$D/hotleased.toml" <<EOF
[netconf]
listen = "127.0.0.1:18830"
host-key = "$D/host_key"
recovery-user = "bench"
[[netconf.user]]
name = "bench"
authorized-keys = ["$(cat "$W/client_key.pub")"]
[storage]
dir = "$D/storage"
[metrics]
listen = "127.0.0.1:19417"
EOF
# ack_server_at FILE: the daemon's own ACK latency histogram (request read
# to ACK sent, the lease's fsync included): "sum count"
ack_server_at() {
    ip netns exec "$S" bash -c 'exec 3<>/dev/tcp/127.0.0.1/19417 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
        awk '/^hotlease_dhcp_ack_latency_seconds_sum/ { s = $2 } /^hotlease_dhcp_ack_latency_seconds_count/ { c = $2 } END { print s + 0, c + 0 }' >"$1"
}
# ack_server_mean A B PHASE: the mean of the ACKs between two readings
ack_server_mean() {
    read -r s0 c0 <"$1"
    read -r s1 c1 <"$2"
    awk -v s0="$s0" -v c0="$c0" -v s1="$s1" -v c1="$c1" -v k="$3" 'BEGIN {
        if (c1 > c0) printf "figure server-ack-latency-%s-ms %.3f ms (%d ACKs, the daemon'"'"'s own histogram)\n", k, 1000 * (s1 - s0) / (c1 - c0), c1 - c0 }'
}
{
    echo '<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">'
    echo '  <interface><name>srv</name></interface>'
    echo '  <ip-pool><name>bench</name><gateway>10.200.0.1</gateway><mask>255.254.0.0</mask>'
    echo '    <section><start>10.200.1.0</start><end>10.201.255.254</end></section>'
    echo '    <dns-server>10.200.0.53</dns-server><domain-name>bench.test</domain-name></ip-pool>'
    for i in $(seq 1 999); do
        a=$((16 + i / 256)) b=$((i % 256))
        printf '  <ip-pool><name>p%04d</name><gateway>172.%d.%d.1</gateway><mask>255.255.255.0</mask><section><start>172.%d.%d.10</start><end>172.%d.%d.20</end></section></ip-pool>\n' \
            "$i" "$a" "$b" "$a" "$b" "$a" "$b"
    done
    echo '</dhcp-server>'
} >"$D/storage/startup.xml"

echo "==> hotleased: boot with 1,000 pools, fill $FILL leases at $FILL_RATE/s" >&2
HOTLEASE_LOG="${SERVER_LOG:-warn}" ip netns exec "$S" taskset -c "$SERVER_CPU" "$BIN" --config "$D/hotleased.toml" >"$D/log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_port67
RSS0="$(rss_kb)"
perf "$OUT/fill-hotleased.txt" "$FILL_RATE" -R 10000000 -n "$FILL" -p 600
sleep 2
RSS1="$(rss_kb)"
TABLE_KB=$((RSS1 - RSS0))
echo "figure table-rss-kb $TABLE_KB kB" | tee -a "$FIG"

if [ "${READS:-1}" != 0 ]; then
echo "==> hotleased: keyed reads over NETCONF, whole-table <get> with commits meanwhile" >&2
ip netns exec "$S" taskset -c "$CLIENT_CPU" "$PY" "$ROOT/bench/reads/reads.py" netconf \
    --key "$W/client_key" --pid "$SERVER_PID" --table-kb "$TABLE_KB" --reps "$REPS" \
    --trace "$OUT/commits-trace.txt" \
    $([ -n "${SCHED_TRACE:-}" ] && echo --sched "$OUT/sched-whole.data" --sched-cpus "$SERVER_CPU,$CLIENT_CPU") | tee -a "$FIG"
fi

# every commit above (one pool's lease-time) is a configuration change the
# DHCP actor applies (before 19dce1b with a pass over all its leases): wait
# (bounded) until it answers again, and say how long that took
T0="$(date +%s.%N)"
for i in $(seq 1 90); do
    perf "$W/probe.txt" 200 -R 10000000 -n 20 -p 2
    got="$(field "$W/probe.txt" REQUEST-ACK "received packets")"
    [ "${got:-0}" -gt 0 ] && break
done
echo "figure dhcp-answers-again-after-s $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" | tee -a "$FIG"
echo "==> hotleased: DHCP ACK delay at $ACK_RATE/s, quiet and under whole-table <get>s" >&2
threads_at "$W/t0"
cpu_at "$W/c0"
sched_trace quiet
ack_server_at "$W/a0"
PERF_CPU="$W/perf-cpu-quiet" perf "$OUT/ack-quiet.txt" "$ACK_RATE" -R 10000000 -p "$ACK_SECS"
ack_server_at "$W/a1"
ack_server_mean "$W/a0" "$W/a1" quiet | tee -a "$FIG"
cpu_at "$W/c1"
threads_at "$W/t1"
threads_diff "$W/t0" "$W/t1" "$ACK_SECS" >"$OUT/threads-quiet.txt"
cpu_busy "$W/c0" "$W/c1" quiet >>"$FIG"
timeout $((ACK_SECS + 120)) ip netns exec "$S" taskset -c "$GETLOOP_CPU" "${getloop_sched[@]}" "$PY" "$ROOT/bench/reads/reads.py" getloop \
    --key "$W/client_key" --secs $((ACK_SECS + 3)) $([ "$GETLOOP_CLIENT" = openssh ] && echo --openssh) >"$OUT/getloop.txt" &
LOOP=$!
if [ -n "${CLIENT_HOG:-}" ]; then
    timeout $((ACK_SECS + 3)) taskset -c "$CLIENT_CPU" "$PY" -c 'while True: pass' &
fi
sleep 1
threads_at "$W/t0"
cpu_at "$W/c0"
sched_trace reads
ack_server_at "$W/a0"
PERF_CPU="$W/perf-cpu-reads" perf "$OUT/ack-reads.txt" "$ACK_RATE" -R 10000000 -p "$ACK_SECS"
ack_server_at "$W/a1"
ack_server_mean "$W/a0" "$W/a1" reads | tee -a "$FIG"
cpu_at "$W/c1"
threads_at "$W/t1"
threads_diff "$W/t0" "$W/t1" "$ACK_SECS" >"$OUT/threads-reads.txt"
cpu_busy "$W/c0" "$W/c1" reads >>"$FIG"
wait "$LOOP" || true
cat "$OUT/getloop.txt" | tee -a "$FIG"
for k in quiet reads; do
    [ ! -s "$W/perf-cpu-$k" ] || echo "figure perfdhcp-cpu-s-$k $(awk 'END { print $1 + $2 }' "$W/perf-cpu-$k") s" | tee -a "$FIG"
    echo "figure ack-avg-$k-ms $(field "$OUT/ack-$k.txt" REQUEST-ACK "avg delay") ms" | tee -a "$FIG"
    echo "figure ack-drops-$k-pct $(field "$OUT/ack-$k.txt" REQUEST-ACK "drops ratio") %" | tee -a "$FIG"
done
for k in quiet reads; do echo "--- threads during the ACK delay phase: $k"; cat "$OUT/threads-$k.txt"; done >&2
stop_server
# with SERVER_LOG, the daemon's log beside the commits' trace
[ -z "${SERVER_LOG:-}" ] || cp "$D/log" "$OUT/hotleased.log"

# ---------------------------------------------------------------- Kea
if [ "${KEA:-1}" != 0 ]; then

echo "==> Kea: fill $FILL leases, keyed reads on its control socket" >&2
K="$W/kea"
mkdir -p "$K"
HOOKS=/usr/lib/x86_64-linux-gnu/kea/hooks
cat >"$K/kea-dhcp4.conf" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "srv" ], "dhcp-socket-type": "raw" },
    "control-socket": { "socket-type": "unix", "socket-name": "$K/kea.sock" },
    "lease-database": { "type": "memfile", "persist": true, "lfc-interval": 0,
                        "name": "$K/kea-leases4.csv" },
    "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2,
                         "packet-queue-size": 64 },
    "hooks-libraries": [ { "library": "$HOOKS/libdhcp_lease_cmds.so" },
                         { "library": "$HOOKS/libdhcp_stat_cmds.so" } ],
    "valid-lifetime": 86400,
    "subnet4": [ {
        "id": 1,
        "subnet": "10.200.0.0/15",
        "pools": [ { "pool": "10.200.1.0 - 10.201.255.254" } ],
        "option-data": [
            { "name": "routers", "data": "10.200.0.1" },
            { "name": "domain-name-servers", "data": "10.200.0.53" },
            { "name": "domain-name", "data": "bench.test" } ]
    } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                   "output_options": [ { "output": "$K/kea.log" } ] } ]
} }
EOF
KEA_PIDFILE_DIR="$K" KEA_LOCKFILE_DIR="$K" ip netns exec "$S" taskset -c "$SERVER_CPU" kea-dhcp4 -c "$K/kea-dhcp4.conf" >"$K/stdout" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_port67
perf "$OUT/fill-kea.txt" "$FILL_RATE" -R 10000000 -n "$FILL" -p 600
sleep 2
ip netns exec "$S" taskset -c "$CLIENT_CPU" "$PY" "$ROOT/bench/reads/reads.py" kea \
    --socket "$K/kea.sock" --reps "$REPS" | tee -a "$FIG"
stop_server
fi

# ---------------------------------------------------------------- summary

v() { awk -v n="$1" '$1 == "figure" && $2 == n { print $3 }' "$FIG" | tail -n 1; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "-") print "?"; else if (a + 0 <= b + 0) print "PASS"; else print "MISS" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "-") print "?"; else if (a + 0 >= b + 0) print "PASS"; else print "MISS" }'; }
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)"
ACKQ="$(v ack-avg-quiet-ms)" ACKR="$(v ack-avg-reads-ms)"
ACKX="$(awk -v q="$ACKQ" -v r="$ACKR" 'BEGIN { if (q > 0) printf "%.2f", r / q; else print "-" }')"
{
    echo "Machine: $(nproc) cores ($(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -n 1)), $(date -u '+%Y-%m-%d %H:%M UTC'), hotleased $COMMIT (release), $(kea-dhcp4 -V | head -n 1); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Leases: hotleased $(v leases-used) (pool bench, 1,000 pools), Kea $(v kea-leases-used); server on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU (the back-to-back <get> client: $GETLOOP_CLIENT on CPU $GETLOOP_CPU, scheduling $GETLOOP_SCHED${CLIENT_HOG:+, a CPU hog beside it}); medians of $REPS reads of different keys."
    echo
    echo "| read | hotleased (NETCONF over SSH) | Kea control socket | target | verdict |"
    echo "| --- | --- | --- | --- | --- |"
    echo "| one lease by its address (subtree; XPath) | $(v lease-by-ip-ms) ms; $(v lease-by-ip-xpath-ms) ms | $(v kea-lease-by-ip-ms) ms | ≤ 2 ms | $(le "$(v lease-by-ip-ms)" 2) |"
    echo "| one lease by its MAC address | $(v lease-by-mac-ms) ms | $(v kea-lease-by-mac-ms) ms | ≤ 2 ms | $(le "$(v lease-by-mac-ms)" 2) |"
    echo "| one pool's statistics | $(v pool-statistics-ms) ms | $(v kea-pool-statistics-ms) ms (stat-lease4-get) | ≤ 2 ms | $(le "$(v pool-statistics-ms)" 2) |"
    echo "| keyed get-config, one pool of 1,000 | $(v keyed-get-config-ms) ms | — | ≤ 1 ms | $(le "$(v keyed-get-config-ms)" 1) |"
    echo "| whole-table <get>: leases/s ($(v whole-get-leases) leases, $(v whole-get-bytes) bytes, $(v whole-get-ms) ms) | $(v whole-get-leases-per-s) | — | ≥ 100,000 | $(ge "$(v whole-get-leases-per-s)" 100000) |"
    echo "| peak RSS growth during it / RSS of the leases ($(v table-rss-kb) kB) | $(v whole-get-rss-growth-x-table) × | — | < 2 × | $(le "$(v whole-get-rss-growth-x-table)" 1.999) |"
    echo "| another session's edit + commit during it: median / max ($(v commits-during-get) commits; quiet median $(v commit-quiet-median-ms) ms) | $(v commit-during-get-median-ms) / $(v commit-during-get-max-ms) ms | — | ≤ 20 ms | $(le "$(v commit-during-get-max-ms)" 20) |"
    echo "| another session's keyed get-config during a commit of 999 pools ($(v large-commit-ms) ms): median / max ($(v reads-during-large-commit) reads; beside it $(v read-beside-large-commit-quiet-median-ms) ms) | $(v read-during-large-commit-median-ms) / $(v read-during-large-commit-max-ms) ms | — | — | — |"
    echo "| DHCP answering again after those commits | $(v dhcp-answers-again-after-s) s | — | — | — |"
    echo "| DHCP ACK delay at $ACK_RATE/s: quiet / under back-to-back whole-table <get>s ($(v getloop-gets) gets) | $ACKQ / $ACKR ms (× $ACKX) | — | within 10 % | $(le "$ACKX" 1.10) |"
} | tee "$OUT/summary.md"

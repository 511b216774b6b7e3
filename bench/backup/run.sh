#!/usr/bin/env bash
# Hot-backup benchmark (issue 10, "Figures"): a hotleased pair with the
# seed's hot backup against a Kea 2.2 hot-standby pair (libdhcp_ha +
# libdhcp_lease_cmds, memfile), and hotleased alone, in ONE run, in the same
# namespace topology, with the same CPU budget for every server process.
#
#   C (perfdhcp as a relay, 10.1.1.250) ── bridge (W) ──┬── A eth1 10.1.1.2/24 ─┐ hb 10.0.0.1/30
#                                                       └── B eth1 10.1.1.3/24 ─┘ hb 10.0.0.2/30
#
# hotleased: each router runs its own daemon, configured over NETCONF with
# the seed's steps 1-4 (examples/configure.py: VRRP vrid 1 VIP 10.1.1.1 on
# eth1, remote-backup-service over hb, profile, pool p1 bound to it, server
# identifier = VIP), then pool p1 widened to 10.0.0.0/14 (hb.py widen) so
# that 100,000 leases fit. perfdhcp relays to the VIP. "Alone": router A
# only, the same configuration with the pool's profile binding removed.
# Kea: primary in A, standby in B, HA over hb (http://10.0.0.x:8001, the
# anchor's HA settings), the same subnet and pools; with no VIP, perfdhcp
# relays to 255.255.255.255 so that both servers get every request, as a
# relay configured with both servers would do.
#
# Figures:
#  1. clean rate with hot backup on (highest achieved rate with both drop
#     ratios <= MAXDROP %, rates stepped up): pair vs Kea pair (target >= 5x),
#     pair vs hotleased alone (target >= 0.8x), each server in its own cpu
#     cgroup with the same CFS quota (BUDGET % of one core);
#  2. REQUEST-ACK delay at 1,000/s (ACK_BUDGET, default no quota): pair <= Kea pair;
#  3. device failure of the master under perfdhcp load (FAIL_RATE/s): every
#     process of its namespace frozen, its links set down, then SIGKILL.
#     dumpcap on the client side; every DHCPACK the master sent whose
#     (address, MAC) the survivor's lease table lacks afterwards (NETCONF
#     <get> / Kea lease4-get-all), target 0; time from the failure to the
#     survivor's first DHCPACK (target: VRRP bound + 50 ms; Kea anchor 10.6 s);
#  4. batch backup: A alone fills FILL_LEASES leases (perfdhcp), B starts
#     with its link to A down, is configured, then the link comes up while
#     perfdhcp keeps loading A; time from B's service last-up to B's profile
#     sync-state synchronized (polled over NETCONF), target < 1 s, and the
#     ACKs A sent in that window.
#
# Usage (root, Debian 12): bench/backup/run.sh
#   BUDGET=25 CFS_PERIOD_US=10000 PERIOD=10 CLIENTS=60000 MAXDROP=0.1
#   RATES="250 500 ..." ACK_BUDGET=full FAIL_BUDGET=full FAIL_RATE=1000
#   FAIL_AT=8 FAIL_SECS=25 FILL_LEASES=100000 FILL_RATE=4000 SYNC_BUDGET=full
#   SYNC_LOAD_RATE=500 PHASES="kea alone pair sync" FIGURES="rate ack fail"
#   CG_WEIGHT=high (the servers' cgroups before other work; "default": not)
#   NO_BUILD=1 PY=... HOTLEASED=path (a daemon built elsewhere)
# Namespaces hb<pid>{w,a,b,c} and cgroups hotlease-hb-<pid>-{a,b} are always
# removed. A benchmark, not a test: a missed target prints MISS and never
# fails; a broken setup (a server that does not start, no lease at all)
# fails loudly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

BUDGET="${BUDGET:-25}"
CFS_PERIOD_US="${CFS_PERIOD_US:-10000}"
PERIOD="${PERIOD:-10}"
CLIENTS="${CLIENTS:-60000}"
MAXDROP="${MAXDROP:-0.1}"
RATES="${RATES:-250 375 500 625 750 1000 1250 1500 2000 2500 3000 3500 4000 4500 5000 6000 7000 8000}"
ACK_BUDGET="${ACK_BUDGET:-full}"
ACK_RATE="${ACK_RATE:-1000}"
FAIL_BUDGET="${FAIL_BUDGET:-full}"
FAIL_RATE="${FAIL_RATE:-1000}"
FAIL_AT="${FAIL_AT:-8}"
FAIL_SECS="${FAIL_SECS:-25}"
FILL_LEASES="${FILL_LEASES:-100000}"
FILL_RATE="${FILL_RATE:-4000}"
SYNC_BUDGET="${SYNC_BUDGET:-full}"
SYNC_LOAD_RATE="${SYNC_LOAD_RATE:-500}"
KEA_FILL_RATE="${KEA_FILL_RATE:-1500}"
KEA_SYNC_SECS="${KEA_SYNC_SECS:-40}"
SERVER_CPUS="${SERVER_CPUS:-0}"
# perfdhcp's niceness: on a shared machine a compiler on its CPU otherwise
# delays its reads until its socket buffer overflows (losses that are the
# load generator's, not a server's)
PERF_NICE="${PERF_NICE:--10}"
SYNC_LOAD_SECS="${SYNC_LOAD_SECS:-60}"
CLIENT_CPU="${CLIENT_CPU:-1}"
PHASES="${PHASES:-kea keasync alone pair sync}"
# the figures to measure in the kea, alone and pair phases: clean rate,
# ACK delay, device failure
FIGURES="${FIGURES:-rate ack fail}"

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, cgroups)" >&2; exit 1; }
pkgs=()
for p in kea-admin kea-dhcp4-server iproute2 tshark python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ "${#pkgs[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
# HOTLEASED: a daemon built elsewhere (nothing is built)
[ -n "${NO_BUILD:-}" ] || [ -n "${HOTLEASED:-}" ] || cargo build --release -q
BIN="${HOTLEASED:-$ROOT/target/release/hotleased}"
KEA_HOOKS="${KEA_HOOKS:-/usr/lib/x86_64-linux-gnu/kea/hooks}"

# ---------------------------------------------------------------- cgroups

if [ -w /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    CG_VER=1
    CG_ROOT=/sys/fs/cgroup/cpu
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    CG_VER=2
    CG_ROOT=/sys/fs/cgroup
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
else
    echo "no cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 with cpu): cannot set CPU budgets" >&2
    exit 1
fi
declare -A CG=([a]="$CG_ROOT/hotlease-hb-$$-a" [b]="$CG_ROOT/hotlease-hb-$$-b")

# the pair's namespaces and helpers (bench/lib/pair.sh); each router's
# processes start in its cgroup (in_cg, below)
pair_exec() { in_cg "$@"; }
TAG="hb$$"
. "$ROOT/bench/lib/pair.sh"
pair_python
WK="$(mktemp -d /tmp/hbbench.XXXXXX)"
OUT="$ROOT/bench/backup/out"
rm -rf "$OUT"
mkdir -p "$OUT"

cg_pids() { [ -f "${CG[$1]}/cgroup.procs" ] && cat "${CG[$1]}/cgroup.procs" || true; }
cleanup() {
    local r p
    pair_teardown
    for r in a b; do
        for p in $(cg_pids "$r"); do kill -9 "$p" 2>/dev/null || true; done
    done
    for r in a b; do [ -d "${CG[$r]}" ] && rmdir "${CG[$r]}" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$WK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir "${CG[a]}" "${CG[b]}"
# the servers' share of a busy machine: on a machine shared with other
# work (builds), the servers' cgroups get their CPU before the other
# processes (the same weight for both servers; the quota still caps them)
CG_WEIGHT="${CG_WEIGHT:-high}"
if [ "$CG_WEIGHT" = high ]; then
    for r in a b; do
        if [ "$CG_VER" = 1 ]; then echo 262144 >"${CG[$r]}/cpu.shares"; else echo 10000 >"${CG[$r]}/cpu.weight"; fi
    done
fi

# set_budget ROUTER BUDGET: "full" (no quota) or a percentage of one core
set_budget() {
    local q
    if [ "$2" = full ]; then q=-1; else q=$(($2 * CFS_PERIOD_US / 100)); fi
    if [ "$CG_VER" = 1 ]; then
        echo "$CFS_PERIOD_US" >"${CG[$1]}/cpu.cfs_period_us"
        echo "$q" >"${CG[$1]}/cpu.cfs_quota_us"
    else
        if [ "$q" = -1 ]; then q=max; fi
        echo "$q $CFS_PERIOD_US" >"${CG[$1]}/cpu.max"
    fi
}
budget_both() { set_budget a "$1"; set_budget b "$1"; }
cg_throttle() { awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } END { print p + 0, t + 0 }' "${CG[$1]}/cpu.stat"; }

# ---------------------------------------------------------------- topology

pair_topology

# in_cg ROUTER CMD...: run CMD in the router's namespace and cgroup, on
# SERVER_CPUS (exec all the way: $! of a background call is the server)
in_cg() {
    local r="$1"
    shift
    exec sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "${CG[$r]}" ip netns exec "${NS[$r]}" taskset -c "$SERVER_CPUS" "$@"
}
stop_router() {
    local r="$1" i p
    [ -n "${PID[$r]:-}" ] && kill "${PID[$r]}" 2>/dev/null || true
    for i in $(seq 1 40); do
        [ -z "$(cg_pids "$r")" ] && break
        sleep 0.25
    done
    for p in $(cg_pids "$r"); do kill -9 "$p" 2>/dev/null || true; done
    PID[$r]=""
}
stop_all() { stop_router a; stop_router b; }

# ------------------------------------------------------------- hotleased

HASH="$(printf '%s' lab | "$BIN" hash-password)"

# ------------------------------------------------------------------- Kea

kea_conf() { # ROUTER NAME
    local r="$1" me="$2" d="$WK/kea-$1"
    cat <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "eth1" ], "dhcp-socket-type": "raw" },
    "control-socket": { "socket-type": "unix", "socket-name": "$d/ctrl" },
    "lease-database": { "type": "memfile", "persist": true, "lfc-interval": 0,
                        "name": "$d/leases4.csv" },
    "multi-threading": { "enable-multi-threading": true, "thread-pool-size": 2,
                         "packet-queue-size": 64 },
    "valid-lifetime": 3600, "renew-timer": 900, "rebind-timer": 1800,
    "authoritative": true,
    "subnet4": [ {
        "id": 1,
        "subnet": "10.0.0.0/14",
        "pools": [ { "pool": "10.0.1.0 - 10.1.0.255" }, { "pool": "10.1.1.10 - 10.1.1.200" },
                   { "pool": "10.1.2.0 - 10.3.255.254" } ],
        "option-data": [
            { "name": "routers", "data": "10.1.1.1" },
            { "name": "domain-name-servers", "data": "10.1.1.1" } ]
    } ],
    "loggers": [
        { "name": "kea-dhcp4", "severity": "WARN", "output_options": [ { "output": "$d/kea.log" } ] },
        { "name": "kea-dhcp4.ha-hooks", "severity": "INFO", "output_options": [ { "output": "$d/kea.log" } ] } ],
    "hooks-libraries": [
        { "library": "$KEA_HOOKS/libdhcp_lease_cmds.so" },
        { "library": "$KEA_HOOKS/libdhcp_ha.so",
          "parameters": { "high-availability": [ {
              "this-server-name": "$me",
              "mode": "hot-standby",
              "heartbeat-delay": 1000, "max-response-delay": 3000, "max-ack-delay": 1000,
              "max-unacked-clients": 0, "sync-timeout": 10000,
              "multi-threading": { "enable-multi-threading": true, "http-dedicated-listener": true,
                                   "http-listener-threads": 2, "http-client-threads": 2 },
              "peers": [
                  { "name": "server1", "url": "http://10.0.0.1:8001/", "role": "primary", "auto-failover": true },
                  { "name": "server2", "url": "http://10.0.0.2:8001/", "role": "standby", "auto-failover": true } ]
          } ] } } ]
} }
EOF
}

# kea_cmd ROUTER COMMAND [JSON-ARGS]: one command on its control socket
kea_cmd() {
    python3 - "$WK/kea-$1/ctrl" "$2" "${3:-}" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
cmd = {"command": sys.argv[2]}
if sys.argv[3]:
    cmd["arguments"] = json.loads(sys.argv[3])
s.sendall(json.dumps(cmd).encode())
buf = b""
while True:
    d = s.recv(1 << 20)
    if not d:
        break
    buf += d
    try:
        json.loads(buf)
        break
    except ValueError:
        pass
print(buf.decode())
EOF
}

kea_state() { kea_cmd "$1" ha-heartbeat 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["arguments"]["state"])' 2>/dev/null || echo "-"; }

# start_kea ROUTER: a fresh kea-dhcp4 (empty lease file), a primary, b standby
start_kea() {
    local r="$1"
    rm -rf "$WK/kea-$r"
    mkdir -p "$WK/kea-$r"
    if [ "$r" = a ]; then kea_conf a server1; else kea_conf b server2; fi >"$WK/kea-$r/kea.json"
    KEA_PIDFILE_DIR="$WK/kea-$r" KEA_LOCKFILE_DIR="$WK/kea-$r" in_cg "$r" kea-dhcp4 -c "$WK/kea-$r/kea.json" >"$WK/kea-$r/stdout" 2>&1 &
    PID[$r]=$!
}

start_kea_pair() {
    local i
    start_kea a
    start_kea b
    for i in $(seq 1 120); do
        if [ "$(kea_state a)" = hot-standby ] && [ "$(kea_state b)" = hot-standby ]; then return 0; fi
        kill -0 "${PID[a]}" 2>/dev/null && kill -0 "${PID[b]}" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 20 "$WK/kea-a/stdout" "$WK/kea-a/kea.log" "$WK/kea-b/kea.log" >&2 || true
    die "the Kea pair did not reach hot-standby (a: $(kea_state a), b: $(kea_state b))"
}

# kea_leases ROUTER: "ip mac" lines of the server's lease table
kea_leases() {
    kea_cmd "$1" lease4-get-all | python3 -c '
import json, sys
r = json.load(sys.stdin)
for l in (r.get("arguments") or {}).get("leases", []):
    print(l["ip-address"], l["hw-address"].lower())'
}

# ------------------------------------------------------------------ load

rcvbuf_errors() { ip netns exec "${NS[c]}" awk '$1 == "Udp:" && $2 ~ /^[0-9]/ { print $6 }' /proc/net/snmp; }
CLK_TCK="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# target_of KIND: where the relay sends (hotleased: the VIP; Kea: both)
target_of() { if [ "$1" = kea ]; then echo all; else echo "$VIP"; fi; }

# steps NAME KIND: step the rate up at the current budget; prints
# "best ack_avg ack_max" (best 0 when no step was clean). The master is
# router a; its CPU and throttling are reported for each step.
steps() {
    local name="$1" target best=0 best_ack=- best_ackmax=- fails=0 r
    target="$(target_of "$2")"
    for r in $RATES; do
        local out="$OUT/$name-$r.txt" t0 t1 c0 c1 e0 e1 got dd dr ackd ackm cpu thr pcpu
        t0="$(cpu_ticks "${PID[a]}")"
        c0="$(cg_throttle a)"
        e0="$(rcvbuf_errors)"
        perf "$out" "$r" "$PERIOD" "$target" -R "$CLIENTS"
        t1="$(cpu_ticks "${PID[a]}")"
        c1="$(cg_throttle a)"
        e1="$(rcvbuf_errors)"
        got="$(rate_of "$out")"
        dd="$(field "$out" DISCOVER-OFFER "drops ratio")"
        dr="$(field "$out" REQUEST-ACK "drops ratio")"
        ackd="$(field "$out" REQUEST-ACK "avg delay")"
        ackm="$(field "$out" REQUEST-ACK "max delay")"
        cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v g="${got:-0}" -v p="$PERIOD" \
            'BEGIN { if (g > 0) printf "%.1f", (b - a) / hz * 1e6 / (g * p); else print "-" }')"
        thr="$(echo "$c0 $c1" | awk '{ d = $3 - $1; if (d > 0) printf "%.0f", ($4 - $2) * 100 / d; else print "0" }')"
        pcpu="$(awk '{ if ($2 > 0) printf "%.0f", $1 * 100 / $2; else print "-" }' "$out.cpu")"
        printf '  %-6s offered %6s/s  achieved %9s/s  drops D-O %6s %%  R-A %6s %%  ACK avg %s max %s ms  master CPU %s us/exch, throttled %s %%  perfdhcp CPU %s %%, overflows %s\n' \
            "$name" "$r" "${got:-?}" "${dd:-?}" "${dr:-?}" "${ackd:-?}" "${ackm:-?}" "$cpu" "$thr" "$pcpu" "$((e1 - e0))" >&2
        echo "$name $BUDGET $r ${got:--} ${dd:--} ${dr:--} ${ackd:--} ${ackm:--} $cpu $thr $pcpu $((e1 - e0))" >>"$OUT/steps.txt"
        if [ -n "$got" ] && [ -n "$dd" ] && [ -n "$dr" ] &&
            awk -v a="$dd" -v b="$dr" -v m="$MAXDROP" 'BEGIN { exit !(a <= m && b <= m) }'; then
            if awk -v g="$got" -v b="$best" 'BEGIN { exit !(g > b) }'; then
                best="$got" best_ack="$ackd" best_ackmax="$ackm"
            fi
            fails=0
        else
            fails=$((fails + 1))
            [ "$fails" -ge 2 ] && break
        fi
        sleep 1
    done
    # a server that served nothing at the lowest rate is a broken setup
    [ -s "$OUT/$name-${RATES%% *}.txt" ] && [ "$(rate_of "$OUT/$name-${RATES%% *}.txt" | cut -d. -f1)" -gt 0 ] ||
        die "$name: no exchange completed at ${RATES%% *}/s (see $OUT/$name-${RATES%% *}.txt)"
    echo "$best $best_ack $best_ackmax"
}

# ack_delay NAME KIND: one ACK_RATE/s run of PERIOD s at ACK_BUDGET;
# prints "ack_avg ack_max drops_R-A"
ack_delay() {
    local out="$OUT/$1-ack-$ACK_RATE.txt"
    budget_both "$ACK_BUDGET"
    perf "$out" "$ACK_RATE" "$PERIOD" "$(target_of "$2")" -R "$CLIENTS"
    budget_both "$BUDGET"
    [ "$(rate_of "$out" | cut -d. -f1)" -gt 0 ] 2>/dev/null || die "$1: no exchange at $ACK_RATE/s ($out)"
    echo "$(field "$out" REQUEST-ACK "avg delay") $(field "$out" REQUEST-ACK "max delay") $(field "$out" REQUEST-ACK "drops ratio")"
}

# restore_links ROUTER: undo device_failure's links down
restore_links() {
    ip -n "$W" link set "p-$1" up
    ip -n "${NS[$1]}" link set eth1 up
    ip -n "${NS[$1]}" link set hb up
}

# last_advert PCAP SRC BEFORE: time of SRC's last VRRP advertisement before BEFORE
last_advert() {
    tshark -r "$1" -Y vrrp -T fields -E separator=' ' -e frame.time_epoch -e ip.src 2>/dev/null |
        awk -v s="$2" -v b="$3" '$2 == s && $1 < b { t = $1 } END { print (t == "" ? "-" : t) }'
}

# device_failure ROUTER: every process of its namespace frozen, its links
# down, then SIGKILL; prints the failure time (before the freeze)
device_failure() {
    local r="$1" t pids p
    t="$(date +%s.%N)"
    pids="$(ip netns pids "${NS[$r]}")"
    for p in $pids; do kill -STOP "$p" 2>/dev/null || true; done
    ip -n "$W" link set "p-$r" down
    ip -n "${NS[$r]}" link set eth1 down
    ip -n "${NS[$r]}" link set hb down
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    echo "$t"
}

# failover NAME KIND: FAIL_RATE/s for FAIL_SECS s, device failure of router
# a at FAIL_AT s; prints "acks_by_a lost first_ack_after_s survivor_leases drops_R-A
# first_ack_after_last_advert_s" (the last: from a's last VRRP advertisement)
failover() {
    local name="$1" kind="$2" pcap="$OUT/$1-failover.pcap" out="$OUT/$1-failover.txt" tfail lp
    budget_both "$FAIL_BUDGET"
    capture_start "$pcap"
    perf "$out" "$FAIL_RATE" "$FAIL_SECS" "$(target_of "$kind")" -R "$CLIENTS" &
    lp=$!
    sleep "$FAIL_AT"
    tfail="$(device_failure a)"
    wait "$lp" || true
    sleep 0.5
    capture_stop
    budget_both "$BUDGET"
    acks "$pcap" >"$OUT/$name-failover-acks.txt"
    if [ "$kind" = kea ]; then kea_leases b; else hb_py b leases; fi >"$OUT/$name-failover-survivor-leases.txt" ||
        die "$name: cannot read the survivor's lease table"
    restore_links a
    [ "$(awk -v m="${MAC[a]}" '$2 == m' "$OUT/$name-failover-acks.txt" | wc -l)" -gt 0 ] ||
        die "$name: no DHCPACK from the master before its failure (see $pcap)"
    awk -v tf="$tfail" -v la="$(last_advert "$pcap" 10.1.1.2 "$tfail")" -v ma="${MAC[a]}" -v mb="${MAC[b]}" -v drops="$(field "$out" REQUEST-ACK "drops ratio")" '
        FNR == NR { have[$1 " " $2] = 1; nl++; next }
        $2 == ma { na++; if (!(($3 " " tolower($4)) in have)) { lost++; print "lost: " $0 > "/dev/stderr" } }
        $2 == mb && $1 >= tf && (first == "" || $1 < first) { first = $1 }
        $2 != ma && $2 != mb { other++ }
        END {
            if (other) print "ACKs from an unknown MAC: " other > "/dev/stderr"
            printf "%d %d %s %d %s %s\n", na, lost + 0, (first == "" ? "-" : sprintf("%.3f", first - tf)), nl, drops,
                (first == "" || la == "-" ? "-" : sprintf("%.4f", first - la)) }' \
        "$OUT/$name-failover-survivor-leases.txt" "$OUT/$name-failover-acks.txt"
}

# ------------------------------------------------------------------ runs

KEA_V="$(kea-dhcp4 -V | head -n 1)"
PERF_V="$(perfdhcp -v 2>&1 | sed -n 's/^VERSION: *//p' | head -n 1)"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+dirty')"
echo "# name budget offered achieved drops_D-O_% drops_R-A_% ack_avg_ms ack_max_ms master_cpu_us_per_exchange throttled_% perfdhcp_cpu_% overflows" >"$OUT/steps.txt"
declare -A RES=()
has() { [[ " $PHASES " == *" $1 "* ]]; }
fig() { [[ " $FIGURES " == *" $1 "* ]]; }

if has kea; then
    echo "==> Kea hot-standby pair ($KEA_V), $BUDGET % of one core each" >&2
    budget_both "$BUDGET"
    start_kea_pair
    if fig rate; then RES[kea,rate]="$(steps kea kea)"; fi
    if fig ack; then RES[kea,ack]="$(ack_delay kea kea)"; fi
    if fig fail; then
        echo "==> Kea: device failure of the primary at $FAIL_RATE/s" >&2
        RES[kea,fail]="$(failover kea kea)"
    fi
    stop_all
    cp "$WK/kea-a/kea.log" "$OUT/kea-a.log" 2>/dev/null || true
    cp "$WK/kea-b/kea.log" "$OUT/kea-b.log" 2>/dev/null || true
fi

if has keasync; then
    echo "==> Kea anchor for the batch backup: primary alone fills $FILL_LEASES leases, the standby starts under load" >&2
    budget_both "$SYNC_BUDGET"
    start_kea a
    for i in $(seq 1 120); do
        st="$(kea_state a)"
        [ "$st" = partner-down ] && break
        kill -0 "${PID[a]}" 2>/dev/null || break
        sleep 0.5
    done
    [ "$st" = partner-down ] || die "Kea primary alone did not reach partner-down (state $st)"
    perf "$OUT/keasync-fill.txt" "$KEA_FILL_RATE" 900 all -R 10000000 -n "$FILL_LEASES"
    KNA="$(kea_leases a | wc -l)"
    echo "  Kea primary holds $KNA leases after the fill ($(rate_of "$OUT/keasync-fill.txt")/s)" >&2
    [ "$KNA" -gt 0 ] || die "keasync: the Kea primary holds no lease after the fill"
    capture_start "$OUT/keasync.pcap"
    perf "$OUT/keasync-load.txt" "$SYNC_LOAD_RATE" "$KEA_SYNC_SECS" all -R 10000000 -b mac=00:0c:01:00:00:00 &
    LP=$!
    sleep 3
    T_START="$(date +%s.%N)"
    start_kea b
    T_HS=""
    for i in $(seq 1 1200); do
        if [ "$(kea_state b)" = hot-standby ]; then T_HS="$(date +%s.%N)"; break; fi
        kill -0 "${PID[b]}" 2>/dev/null || break
        sleep 0.05
    done
    wait "$LP" || true
    sleep 0.5
    capture_stop
    acks "$OUT/keasync.pcap" >"$OUT/keasync-acks.txt"
    KNB="$(kea_leases b | wc -l)"
    cp "$WK/kea-b/kea.log" "$OUT/keasync-b.log"
    cp "$WK/kea-a/kea.log" "$OUT/keasync-a.log"
    # Kea logs its own sync: HA_SYNC_START ... HA_SYNC_SUCCESSFUL (local time, ms)
    RES[keasync]="$(python3 - "$OUT/keasync-b.log" "$OUT/keasync-acks.txt" "$T_START" "${T_HS:-}" "$KNA" "$KNB" <<'EOF'
import sys
from datetime import datetime
def when(pat):
    for line in open(sys.argv[1]):
        if pat in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return None
start, done = when("HA_SYNC_START"), when("HA_SYNC_SUCCESSFUL")
acks = [float(l.split()[0]) for l in open(sys.argv[2]) if l.strip()]
during = sum(1 for t in acks if start and done and start <= t <= done)
t0 = float(sys.argv[3]); hs = float(sys.argv[4]) if sys.argv[4] else None
print(f"{done - start:.3f}" if start and done else "-", during,
      f"{hs - t0:.3f}" if hs else "-", sys.argv[5], sys.argv[6])
EOF
)"
    echo "  Kea: ${RES[keasync]}" >&2
    stop_all
fi

if has alone; then
    echo "==> hotleased alone (router a, pool without profile), $BUDGET % of one core" >&2
    budget_both "$BUDGET"
    start_hotleased a
    configure_hotleased a alone
    wait_vip a
    if fig rate; then RES[alone,rate]="$(steps alone alone)"; fi
    if fig ack; then RES[alone,ack]="$(ack_delay alone alone)"; fi
    stop_all
fi

if has pair; then
    echo "==> hotleased pair (seed steps 1-4), $BUDGET % of one core each" >&2
    budget_both "$BUDGET"
    start_hotleased a
    start_hotleased b
    configure_hotleased a
    configure_hotleased b
    wait_vip a
    # bounded wait for the profile to be synchronized before loading
    hb_py b wait-sync --timeout 30 --interval 0.2 >"$OUT/pair-initial-sync.json" || true
    echo "  initial state of b: $(cat "$OUT/pair-initial-sync.json")" >&2
    hb_py a raw >"$OUT/pair-initial-a.xml" 2>&1 || true
    hb_py b raw >"$OUT/pair-initial-b.xml" 2>&1 || true
    if fig rate; then RES[pair,rate]="$(steps pair pair)"; fi
    if fig ack; then RES[pair,ack]="$(ack_delay pair pair)"; fi
    if fig fail; then
        echo "==> hotleased pair: device failure of the master at $FAIL_RATE/s" >&2
        RES[pair,fail]="$(failover pair pair)"
    fi
    stop_all
    cp "$WK/hl-a/log" "$OUT/pair-a.log" 2>/dev/null || true
    cp "$WK/hl-b/log" "$OUT/pair-b.log" 2>/dev/null || true
fi

if has sync; then
    echo "==> batch backup: a fills $FILL_LEASES leases, b connects under load" >&2
    budget_both full
    start_hotleased a
    configure_hotleased a
    wait_vip a
    perf "$OUT/sync-fill.txt" "$FILL_RATE" 600 "$VIP" -R 10000000 -n "$FILL_LEASES"
    NA="$(hb_py a count)"
    echo "  a holds $NA leases after the fill ($(rate_of "$OUT/sync-fill.txt")/s)" >&2
    [ "$NA" -gt 0 ] || die "sync: router a holds no lease after the fill ($OUT/sync-fill.txt)"
    budget_both "$SYNC_BUDGET"
    ip -n "${NS[b]}" link set hb down
    start_hotleased b
    configure_hotleased b
    hb_py b state >"$OUT/sync-b-before.json"
    capture_start "$OUT/sync.pcap"
    perf "$OUT/sync-load.txt" "$SYNC_LOAD_RATE" "$SYNC_LOAD_SECS" "$VIP" -R 10000000 -b mac=00:0c:01:00:00:00 &
    LP=$!
    sleep 3
    T_LINK="$(date +%s.%N)"
    ip -n "${NS[b]}" link set hb up
    # Wait on b's log, not on <get>: a <get> builds the whole operational
    # tree (every lease), about a second of b's CPU at 100,000 leases, so
    # polling would slow the very batch it measures. Then one <get> must
    # show the profile synchronized.
    for i in $(seq 1 1200); do
        grep -q "batch backup done: the peer's leases are durable here" "$WK/hl-b/log" && break
        sleep 0.1
    done
    hb_py b wait-sync --timeout 60 --interval 0.2 >"$OUT/sync-b.json"
    hb_py a state >"$OUT/sync-a.json"
    wait "$LP" || true
    sleep 0.5
    capture_stop
    acks "$OUT/sync.pcap" >"$OUT/sync-acks.txt"
    sleep 1
    NA2="$(hb_py a count)"
    NB2="$(hb_py b count)"
    cp "$WK/hl-a/log" "$OUT/sync-a.log"
    cp "$WK/hl-b/log" "$OUT/sync-b.log"
    # The figure from b's own log (microsecond time stamps): the first
    # session up after the link came up → the batch backup that made b
    # synchronized ("the peer's leases are durable here"). The NETCONF poll
    # brackets the same moment from outside: [start, end] of the first
    # <get> that showed sync-state synchronized.
    RES[sync]="$(python3 - "$OUT/sync-b.json" "$OUT/sync-a.json" "$OUT/sync-acks.txt" "$T_LINK" "$NA2" "$NB2" "$NA" "$OUT/sync-b.log" <<'EOF'
import json, sys
from datetime import datetime
b = json.load(open(sys.argv[1])); a = json.load(open(sys.argv[2]))
ts = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None
tlink = float(sys.argv[4])
ups, dones = [], []
for line in open(sys.argv[8]):
    t = ts(line.split()[0]) if line[:2] == "20" else None
    if t is None or t < tlink:
        continue
    if "backup::channel: session up" in line:
        ups.append(t)
    elif "batch backup done: the peer's leases are durable here" in line:
        dones.append(t)
up = ups[0] if ups else None
done = next((d for d in dones if up and d >= up), None)
last_up = max((u for u in ups if done and u <= done), default=None)
f = lambda x: f"{x:.3f}" if x is not None else "-"
acks = [float(l.split()[0]) for l in open(sys.argv[3]) if l.strip()]
during = sum(1 for t in acks if up and done and up <= t <= done)
seen, seen_end = b.get("seen"), b.get("seen_end")
print(f(done - up if up and done else None), during, sys.argv[5], sys.argv[6],
      a.get("batch_leases_sent") or "-", a.get("batch_result") or "-",
      f(up - tlink if up else None), b.get("polls", "-"), sys.argv[7],
      len([u for u in ups if done and up < u <= done]),
      f(seen - up if seen and up else None), f(seen_end - up if seen_end and up else None),
      f(done - last_up if done and last_up else None))
EOF
)"
    stop_all
fi

# ---------------------------------------------------------------- report

ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (x + 0 > 0 && y + 0 > 0) printf "%.2f", x / y; else print "n/a" }'; }
verdict() { # EXPR over x: "x >= 5"
    awk -v x="$1" "BEGIN { if (x == \"n/a\" || x == \"-\") print \"n/a\"; else if ($2) print \"PASS\"; else print \"MISS\" }"
}
get() { echo "${RES[$1]:-}" | cut -d' ' -f"$2"; }
BOUND_MS="$(awk 'BEGIN { printf "%.1f", 3 * 1000 + (256 - 100) * 1000 / 256 }')"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
{
    echo "| figure | hotleased pair | anchor | ratio | target | verdict |"
    echo "| --- | --- | --- | --- | --- | --- |"
    if has pair; then
        pr="$(get pair,rate 1)"
        if has kea; then
            kr="$(get kea,rate 1)"
            x="$(ratio "$pr" "$kr")"
            echo "| 1. clean rate, hot backup on, $BUDGET % of one core per server (exch/s) | $pr | Kea HA pair $kr | $x | ≥ 5× | $(verdict "$x" "x >= 5") |"
        fi
        if has alone; then
            ar="$(get alone,rate 1)"
            x="$(ratio "$pr" "$ar")"
            echo "| 1. clean rate vs hotleased alone, same budget | $pr | hotleased alone $ar | $x | ≥ 0.8× | $(verdict "$x" "x >= 0.8") |"
        fi
        if has kea; then
            pa="$(get pair,ack 1)"
            ka="$(get kea,ack 1)"
            x="$(ratio "$pa" "$ka")"
            echo "| 2. ACK delay avg at $ACK_RATE/s (ms), budget $ACK_BUDGET; max / R-A drops | $pa; $(get pair,ack 2) / $(get pair,ack 3) % | Kea HA $ka; $(get kea,ack 2) / $(get kea,ack 3) % | $x | ≤ 1× | $(verdict "$x" "x <= 1") |"
        fi
        pl="$(get pair,fail 2)"
        echo "| 3. ACKed leases the survivor lacks (ACKs by the master before its failure) | $pl (of $(get pair,fail 1)) | Kea HA $(get kea,fail 2) (of $(get kea,fail 1)) | | 0 | $(verdict "$pl" "x == 0") |"
        pf="$(get pair,fail 3)"
        x="$(ratio "$pf" "$(get kea,fail 3)")"
        echo "| 3. failure → survivor's first ACK (s), $FAIL_RATE/s load | $pf | Kea HA $(get kea,fail 3) (anchor 10.6) | $x | ≤ VRRP bound $BOUND_MS ms + 50 ms | $(verdict "$pf" "x * 1000 <= $BOUND_MS + 50") |"
        pv="$(get pair,fail 6)"
        echo "| 3. master's last VRRP advertisement → survivor's first ACK (s) | $pv | | | ≤ $BOUND_MS ms + 50 ms | $(verdict "$pv" "x * 1000 <= $BOUND_MS + 50") |"
    fi
    if has sync; then
        sd="$(get sync 1)"
        ks="-"
        kd="-"
        if has keasync; then
            ks="Kea standby's start-up sync of $(get keasync 4) leases $(get keasync 1) (its log; start → hot-standby $(get keasync 3))"
            kd="Kea $(get keasync 2)"
        fi
        echo "| 4. batch backup of $(get sync 9) leases: b's first session up → synchronized (s, b's log) | $sd | $ks | $(ratio "$sd" "$(get keasync 1)") | < 1 s | $(verdict "$sd" "x < 1") |"
        echo "| 4. ACKs the master sent during that window (load $SYNC_LOAD_RATE/s) | $(get sync 2) | $kd | | > 0 | $(verdict "$(get sync 2)" "x > 0") |"
    fi
    echo
    for k in kea alone pair; do
        has "$k" || continue
        echo "- $k: clean rate $(get $k,rate 1)/s (ACK avg $(get $k,rate 2) ms at that rate); ACK at $ACK_RATE/s avg $(get $k,ack 1) max $(get $k,ack 2) ms, R-A drops $(get $k,ack 3) %."
    done
    for k in kea pair; do
        has "$k" || continue
        echo "- $k failover: $(get $k,fail 1) ACKs by the master, $(get $k,fail 2) of their leases missing on the survivor (which holds $(get $k,fail 4) leases), first survivor ACK $(get $k,fail 3) s after the failure ($(get $k,fail 6) s after the master's last VRRP advertisement), R-A drops over the run $(get $k,fail 5) %."
    done
    # load_of FILE: perfdhcp's losses and ACK delay over a run
    load_of() { echo "R-A drops $(field "$1" REQUEST-ACK "drops ratio") %, D-O drops $(field "$1" DISCOVER-OFFER "drops ratio") %, ACK avg $(field "$1" REQUEST-ACK "avg delay") max $(field "$1" REQUEST-ACK "max delay") ms"; }
    if has keasync; then
        echo "- Kea anchor of the batch backup: primary filled with $(get keasync 4) leases, standby started under $SYNC_LOAD_RATE/s: HA_SYNC_START → HA_SYNC_SUCCESSFUL $(get keasync 1) s with $(get keasync 2) ACKs on the wire meanwhile (the standby disables the primary's DHCP while it syncs), start → hot-standby $(get keasync 3) s; the standby then held $(get keasync 5) leases. Load over the run: $(load_of "$OUT/keasync-load.txt")."
    fi
    if has sync; then
        echo "- batch backup: a held $(get sync 9) leases after the fill, $(get sync 3) after the run, b $(get sync 4); a's last batch: $(get sync 5) leases sent, $(get sync 6); b's first session up $(get sync 7) s after the link came up; $(get sync 10) more session(s) came up before b was synchronized (the last one up → synchronized $(get sync 13) s); then a <get> on b (sent $(get sync 11) s, answered $(get sync 12) s after the first session up) showed the profile synchronized ($(get sync 8) poll(s)). Load over the run: $(load_of "$OUT/sync-load.txt")."
    fi
    echo
    echo "Machine: $(nproc) cores ($CPU), $(date -u '+%Y-%m-%d %H:%M UTC'), hotleased $COMMIT ($(basename "$(dirname "$BIN")") build), $KEA_V, perfdhcp $PERF_V; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Budget: each server process in its own cpu cgroup (v$CG_VER), $BUDGET % of one core (CFS period $CFS_PERIOD_US µs) for figure 1, $ACK_BUDGET for 2, $FAIL_BUDGET for 3, $SYNC_BUDGET for 4; servers on CPU $SERVER_CPUS, perfdhcp on CPU $CLIENT_CPU."
} | tee "$OUT/results.md"

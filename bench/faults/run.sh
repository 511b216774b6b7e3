#!/usr/bin/env bash
# Fault campaigns under load (issue 15): perfdhcp through a hotleased
# hot-backup pair (bench/lib/pair.sh: the seed's steps 1-4 over NETCONF, the
# pool widened, leases of LEASE_TIME s) and, for each fault, a fresh pair:
#
#   kill-master       kill -9 of the master (a), restarted on its storage after DOWN s
#   kill-backup       kill -9 of the backup (b), restarted after DOWN s
#   kill-both         kill -9 of a, restart; once the pair is synchronized
#                     again, kill -9 of b, restart
#   link-down         a's client-side link (eth1) down for DOWN s
#   cut-1s, cut-60s   the backup channel cut (nftables in a's namespace: every
#                     packet in or out of hb dropped) for 1 s / 60 s
#   disk-master, disk-backup
#                     the storage of a / b (a DISK_MB tmpfs) filled for DISK_SECS s
#   clock+1h, clock-1h
#                     a's wall clock jumps by ±1 h (libfaketime,
#                     FAKETIME_TIMESTAMP_FILE; CLOCK_MONOTONIC, tokio's
#                     timers, untouched) and back after CLOCK_SECS s
#   skew+1h, skew-1h  a's wall clock ±1 h from its start (libfaketime, as
#                     above; b's is right): the pair syncs across the skew;
#                     the fault is kill -9 of a (b serves with a's leases),
#                     restarted after DOWN s with the same skew, and pulls
#                     b's table. a's lease times are on its own clock: the
#                     counts move them by its offset (offset_a, measured
#                     over NETCONF after the start)
#   stop-backup, stop-master
#                     b / a stalled with SIGSTOP for STOP_SECS s (longer than
#                     the backup channel's dead time, 3 s, and VRRP's master
#                     down interval, 3.6 s), then SIGCONT
#
# perfdhcp (RATE/s; unset: half the clean rate measured first, at most 1 %
# drops, rates RATES for MEASURE_SECS s each) runs LOAD_SECS s (cut-60s:
# + 60 s) with the fault at FAULT_AT s; dumpcap on the client side. Then
# bench/faults/faults.py counts, per fault: ACKed (address, MAC) pairs
# missing on the serving router's lease table (NETCONF <get>), addresses ACKed
# to two MACs while the first lease was valid, addresses the two tables hold
# for different MACs after the recovery, the longest ACK gap from the fault,
# and the time from the heal until the pair is synchronized again.
#
# Usage (root, Debian 12): bench/faults/run.sh
#   FAULTS="kill-master ..." RATE=... LOAD_SECS=40 FAULT_AT=8 DOWN=5 STOP_SECS=8
#   CLOCK_SECS=20 DISK_SECS=30 DISK_MB=64 LEASE_TIME=3600 CLIENTS=60000 HOTLEASED=path NO_BUILD=1
# The debug build (target/debug/hotleased) unless HOTLEASED says otherwise.
# Namespaces hf<pid>{w,a,b,c} and the tmpfs mounts are always removed. A
# campaign, not a test: it prints the counts; a broken setup fails loudly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

FAULTS="${FAULTS:-kill-master kill-backup kill-both link-down cut-1s cut-60s disk-master disk-backup clock+1h clock-1h skew+1h skew-1h stop-backup stop-master}"
LOAD_SECS="${LOAD_SECS:-40}"
FAULT_AT="${FAULT_AT:-8}"
DOWN="${DOWN:-5}"
STOP_SECS="${STOP_SECS:-8}"
CLOCK_SECS="${CLOCK_SECS:-20}"
LEASE_TIME="${LEASE_TIME:-3600}"
CLIENTS="${CLIENTS:-60000}"
RATES="${RATES:-100 200 400 800 1600}"
MEASURE_SECS="${MEASURE_SECS:-8}"
SYNC_TIMEOUT="${SYNC_TIMEOUT:-90}"
DISK_MB="${DISK_MB:-64}"
# long enough to use up the lease log's preallocation (256 KiB ahead,
# about 2,500 leases) at the campaign's rate
DISK_SECS="${DISK_SECS:-30}"

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, mounts)" >&2; exit 1; }
pkgs=()
for p in kea-admin iproute2 tshark nftables faketime python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ "${#pkgs[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
[ -n "${NO_BUILD:-}" ] || [ -n "${HOTLEASED:-}" ] || cargo build -q
BIN="${HOTLEASED:-$ROOT/target/debug/hotleased}"
FAKETIME_LIB="$(dpkg -L faketime libfaketime 2>/dev/null | grep -m1 'libfaketimeMT.so.1$')" ||
    { echo "libfaketimeMT.so.1 not found (package libfaketime)" >&2; exit 1; }

TAG="hf$$"
. "$ROOT/bench/lib/pair.sh"
pair_python
WK="$(mktemp -d /tmp/hfaults.XXXXXX)"
OUT="$ROOT/bench/faults/out"
rm -rf "$OUT"
mkdir -p "$OUT"
MOUNTS=()
cleanup() {
    local m
    pair_teardown
    for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$WK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pair_topology
HASH="$(printf '%s' lab | "$BIN" hash-password)"
FAULTS_PY="$ROOT/bench/faults/faults.py"
now() { date +%s.%N; }

# reset: no daemon, every link up, no rule, no VIP left behind by a kill -9
reset_pair() {
    local r
    stop_router a
    stop_router b
    for r in a b; do
        ip -n "${NS[$r]}" link set eth1 up
        ip -n "${NS[$r]}" link set hb up
        ip -n "${NS[$r]}" addr del "$VIP/24" dev eth1 2>/dev/null || true
        ip netns exec "${NS[$r]}" nft delete table inet hfcut 2>/dev/null || true
        WRAP[$r]=""
        STORE[$r]=""
    done
    ip -n "${NS[c]}" neigh flush dev eth1
}

cut_channel() { # ROUTER: drop everything in or out of hb
    ip netns exec "${NS[$1]}" nft -f - <<'EOF'
table inet hfcut {
    chain in { type filter hook input priority -10; iifname "hb" drop; }
    chain out { type filter hook output priority -10; oifname "hb" drop; }
}
EOF
}

# fault NAME TIMES: inject, wait, heal; "fault"/"heal" lines into TIMES
fault() {
    local name="$1" times="$2" s
    case "$name" in
        kill-master | kill-backup | skew+1h | skew-1h)
            local r=a
            [ "$name" = kill-backup ] && r=b
            echo "fault $(now)" >>"$times"
            kill -9 "${PID[$r]}"
            { wait "${PID[$r]}"; } 2>/dev/null || true
            sleep "$DOWN"
            echo "heal $(now)" >>"$times"
            start_hotleased "$r" keep ;;
        kill-both)
            echo "fault $(now)" >>"$times"
            kill -9 "${PID[a]}"
            { wait "${PID[a]}"; } 2>/dev/null || true
            sleep "$DOWN"
            start_hotleased a keep
            # a back as master with b's leases, then b goes
            hb_py a wait-sync --timeout "$SYNC_TIMEOUT" --interval 0.2 >"$OUT/kill-both-a.json" || true
            echo "a_synced $(now)" >>"$times"
            kill -9 "${PID[b]}"
            { wait "${PID[b]}"; } 2>/dev/null || true
            sleep "$DOWN"
            echo "heal $(now)" >>"$times"
            start_hotleased b keep ;;
        link-down)
            echo "fault $(now)" >>"$times"
            ip -n "${NS[a]}" link set eth1 down
            sleep "$DOWN"
            echo "heal $(now)" >>"$times"
            ip -n "${NS[a]}" link set eth1 up ;;
        cut-1s | cut-60s)
            s="${name#cut-}"
            echo "fault $(now)" >>"$times"
            cut_channel a
            sleep "${s%s}"
            echo "heal $(now)" >>"$times"
            ip netns exec "${NS[a]}" nft delete table inet hfcut ;;
        disk-master | disk-backup)
            local r=a
            [ "$name" = disk-backup ] && r=b
            echo "fault $(now)" >>"$times"
            dd if=/dev/zero of="$WK/disk-$r/fill" bs=64k status=none 2>/dev/null || true
            echo "free_after_fill $(df --output=avail -B1 "$WK/disk-$r" | tail -n 1)" >>"$times"
            sleep "$DISK_SECS"
            echo "heal $(now)" >>"$times"
            rm -f "$WK/disk-$r/fill" ;;
        clock+1h | clock-1h)
            echo "fault $(now)" >>"$times"
            echo "${name#clock}" >"$WK/faketime-a"
            sleep 2
            echo "clock_offset $(hb_py a clock 2>/dev/null || echo -)" >>"$times"
            sleep "$((CLOCK_SECS - 2))"
            echo "heal $(now)" >>"$times"
            echo "+0" >"$WK/faketime-a" ;;
        stop-backup | stop-master)
            local r=b
            [ "$name" = stop-master ] && r=a
            echo "fault $(now)" >>"$times"
            kill -STOP "${PID[$r]}"
            sleep "$STOP_SECS"
            echo "heal $(now)" >>"$times"
            kill -CONT "${PID[$r]}" ;;
        *) die "unknown fault $name" ;;
    esac
}

# run_fault NAME: a fresh pair, the load, the fault, the recovery, the counts
run_fault() {
    local name="$1" times="$OUT/$1.times" secs="$LOAD_SECS" lp sp r m
    echo "==> $name" >&2
    reset_pair
    case "$name" in
        disk-*)
            r=a
            [ "$name" = disk-backup ] && r=b
            m="$WK/disk-$r"
            mkdir -p "$m"
            mountpoint -q "$m" || { mount -t tmpfs -o size="${DISK_MB}m" "hf-disk-$r" "$m"; MOUNTS+=("$m"); }
            rm -f "$m/fill"
            STORE[$r]="$m/state" ;;
        clock* | skew*)
            echo "+0" >"$WK/faketime-a"
            case "$name" in skew*) echo "${name#skew}" >"$WK/faketime-a" ;; esac
            WRAP[a]="env LD_PRELOAD=$FAKETIME_LIB FAKETIME_TIMESTAMP_FILE=$WK/faketime-a FAKETIME_CACHE_DURATION=1 FAKETIME_DONT_FAKE_MONOTONIC=1" ;;
        cut-60s) secs=$((LOAD_SECS + 60)) ;;
        kill-both) secs=$((LOAD_SECS + 20)) ;;
        disk-*) secs=$((LOAD_SECS + DISK_SECS)) ;;
    esac
    fresh_pair
    echo "rate $RATE" >"$times"
    case "$name" in skew*) echo "offset_a $(hb_py a clock 2>/dev/null || echo -)" >>"$times" ;; esac
    capture_start "$OUT/$name.pcap"
    perf "$OUT/$name.perf" "$RATE" "$secs" "$VIP" -R "$CLIENTS" &
    lp=$!
    sleep "$FAULT_AT"
    fault "$name" "$times"
    # from the heal on, poll until both profiles are synchronized again
    # (while the load goes on)
    synced >"$OUT/$name.synced" &
    sp=$!
    wait "$lp" || true
    echo "load_end $(now)" >>"$times"
    sleep 0.5
    capture_stop
    wait "$sp" || true
    echo "synced $(cat "$OUT/$name.synced")" >>"$times"
    if has_vip a; then echo "serving a" >>"$times"; elif has_vip b; then echo "serving b" >>"$times"; else echo "serving none" >>"$times"; fi
    for r in a b; do hb_py "$r" leases >"$OUT/$name.leases-$r" || echo "cannot read $r's leases" >&2; done
    acks "$OUT/$name.pcap" >"$OUT/$name.acks"
    [ -s "$OUT/$name.acks" ] || die "$name: no DHCPACK at all (see $OUT/$name.pcap)"
    cp "$WK/hl-a/log" "$OUT/$name.log-a"
    cp "$WK/hl-b/log" "$OUT/$name.log-b"
    "$PY" "$FAULTS_PY" row "$OUT" "$name" >"$OUT/$name.row.json"
    echo "    $(cat "$OUT/$name.row.json")" >&2
    rm -f "$OUT/$name.pcap"
}

# ---------------------------------------------------------------- the rate

if [ -z "${RATE:-}" ]; then
    reset_pair
    fresh_pair
    CLEAN="$(clean_rate "$OUT" "$RATES" "$MEASURE_SECS" "$CLIENTS")"
    RATE=$((CLEAN / 2))
else
    CLEAN="-"
fi
echo "==> load: $RATE/s (clean rate $CLEAN/s)" >&2

for f in $FAULTS; do run_fault "$f"; done
reset_pair

COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+dirty')"
{
    "$PY" "$FAULTS_PY" table "$OUT"
    echo
    echo "Load: perfdhcp $RATE exchanges/s (clean rate of this pair measured first: $CLEAN/s), $CLIENTS clients, $LOAD_SECS s (cut-60s: +60 s, kill-both: +20 s, disk-*: +$DISK_SECS s), the fault at $FAULT_AT s; leases of $LEASE_TIME s."
    echo "Machine: $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), hotleased $COMMIT ($(basename "$(dirname "$BIN")") build), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$OUT/results.md"

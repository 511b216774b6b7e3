# A hotleased hot-backup pair in network namespaces, for the benchmarks
# that load one (bench/backup, bench/faults, bench/soak). Sourced, not run:
#
#   ROOT=... TAG=hb$$ . "$ROOT/bench/lib/pair.sh"
#
#   C (perfdhcp as a relay, 10.1.1.250) ── bridge (W) ──┬── A eth1 10.1.1.2/24 ─┐ hb 10.0.0.1/30
#                                                       └── B eth1 10.1.1.3/24 ─┘ hb 10.0.0.2/30
#
# Each router runs its own hotleased, configured over NETCONF with the seed's
# steps 1-4 (examples/configure.py: VRRP vrid 1 VIP 10.1.1.1 on eth1,
# remote-backup-service over hb, profile, pool p1 bound to it, server
# identifier = VIP), then pool p1 widened to 10.0.0.0/14 (hb.py widen).
# perfdhcp relays to the VIP.
#
# Names: namespaces ${TAG}{w,a,b,c}; work directory WK (mktemp). The caller
# owns the EXIT trap and calls pair_teardown from it.
# Hooks the caller may set before starting a router:
#   pair_exec ROUTER CMD...   how a router's processes start (must exec;
#                             default: ip netns exec into its namespace)
#   WRAP[ROUTER]="env ..."    words put before the daemon's command line
#                             (e.g. libfaketime's environment)
#   STORE[ROUTER]=DIR         its storage directory (default WK/hl-ROUTER/state;
#                             e.g. a directory on a small tmpfs)

: "${TAG:?TAG (the namespace prefix) must be set}"
: "${ROOT:?ROOT must be set}"

W="${TAG}w"
declare -A NS=([a]="${TAG}a" [b]="${TAG}b" [c]="${TAG}c")
declare -A MAC=([a]="02:00:00:00:00:0a" [b]="02:00:00:00:00:0b" [c]="02:00:00:00:00:0c")
declare -A PID=()
declare -A WRAP=()
declare -A STORE=()
RELAY=10.1.1.250
VIP=10.1.1.1
HB="$ROOT/bench/backup/hb.py"
CAP_PID=""
CLIENT_CPU="${CLIENT_CPU:-1}"
# perfdhcp's niceness: on a shared machine a compiler on its CPU otherwise
# delays its reads until its socket buffer overflows (losses that are the
# load generator's, not a server's)
PERF_NICE="${PERF_NICE:--10}"

die() { echo "SETUP BROKEN: $*" >&2; exit 1; }

# pair_python: PY = a python with ncclient (examples/.venv, as lab.sh makes it)
pair_python() {
    if [ -z "${PY:-}" ]; then
        PY="$ROOT/examples/.venv/bin/python"
        if [ ! -x "$PY" ]; then
            python3 -m venv "$ROOT/examples/.venv"
            "$ROOT/examples/.venv/bin/pip" install -q ncclient==0.7.1
        fi
    fi
}

# pair_topology: the namespaces, the bridge, the veths and the direct link
pair_topology() {
    local n r
    for n in "$W" "${NS[a]}" "${NS[b]}" "${NS[c]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
    ip -n "$W" link add br0 type bridge
    ip -n "$W" link set br0 up
    for r in a b c; do
        ip link add eth1 netns "${NS[$r]}" address "${MAC[$r]}" type veth peer name "p-$r" netns "$W"
        ip -n "$W" link set "p-$r" master br0 up
        ip -n "${NS[$r]}" link set eth1 up
    done
    ip -n "${NS[a]}" addr add 10.1.1.2/24 dev eth1
    ip -n "${NS[b]}" addr add 10.1.1.3/24 dev eth1
    ip -n "${NS[c]}" addr add "$RELAY/24" dev eth1
    ip link add hb netns "${NS[a]}" type veth peer name hb netns "${NS[b]}"
    ip -n "${NS[a]}" addr add 10.0.0.1/30 dev hb
    ip -n "${NS[b]}" addr add 10.0.0.2/30 dev hb
    ip -n "${NS[a]}" link set hb up
    ip -n "${NS[b]}" link set hb up
}

# pair_teardown: every process in the namespaces (stopped ones resumed
# first, so that they can die), then the namespaces
pair_teardown() {
    local r p n
    [ -n "$CAP_PID" ] && kill "$CAP_PID" 2>/dev/null || true
    for r in a b c; do
        for p in $(ip netns pids "${NS[$r]}" 2>/dev/null); do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    done
    sleep 0.5
    for r in a b c; do
        for p in $(ip netns pids "${NS[$r]}" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    done
    sleep 0.2
    for n in "${NS[a]}" "${NS[b]}" "${NS[c]}" "$W"; do ip netns del "$n" 2>/dev/null || true; done
}

# the default launcher: the router's namespace, nothing else
if ! declare -F pair_exec >/dev/null; then
    pair_exec() {
        local r="$1"
        shift
        exec ip netns exec "${NS[$r]}" "$@"
    }
fi

# start_hotleased ROUTER [keep]: a daemon in the router; without "keep" a
# fresh one (empty storage, new bootstrap file), with "keep" a restart on
# the storage it had (a crashed router coming back)
start_hotleased() {
    local r="$1" d="$WK/hl-$1" i s="${STORE[$1]:-$WK/hl-$1/state}"
    if [ "${2:-}" != keep ]; then
        mkdir -p "$d" "$s"
        find "$s" -mindepth 1 -delete
        : >"$d/log"
        HASH="${HASH:-$(printf '%s' lab | "$BIN" hash-password)}"
        cat >"$d/hotleased.toml" <<EOF
[netconf]
listen = "127.0.0.1:8830"
host-key = "$d/ssh_host_ed25519_key"
recovery-user = "admin"
[[netconf.user]]
name = "admin"
password-hash = "$HASH"
[storage]
dir = "$s"
EOF
    fi
    # shellcheck disable=SC2086 # WRAP is words on purpose
    HOTLEASE_LOG="${HOTLEASE_LOG:-info}" pair_exec "$r" ${WRAP[$r]:-} "$BIN" --config "$d/hotleased.toml" >>"$d/log" 2>&1 &
    PID[$r]=$!
    for i in $(seq 1 300); do
        ip netns exec "${NS[$r]}" bash -c '</dev/tcp/127.0.0.1/8830' 2>/dev/null && return 0
        kill -0 "${PID[$r]}" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$d/log" >&2
    die "hotleased in router $r did not open NETCONF"
}

# configure_hotleased ROUTER [alone]: the seed's steps 1-4, the wide pool,
# and for "alone" the pool's profile binding removed
configure_hotleased() {
    local r="$1"
    ip netns exec "${NS[$r]}" "$PY" "$ROOT/examples/configure.py" --router "$r" >>"$OUT/configure.log" 2>&1 ||
        { tail -n 20 "$OUT/configure.log" >&2; die "configure.py --router $r failed"; }
    ip netns exec "${NS[$r]}" "$PY" "$HB" widen >>"$OUT/configure.log" 2>&1 ||
        { tail -n 20 "$OUT/configure.log" >&2; die "hb.py widen on $r failed"; }
    if [ "${2:-}" = alone ]; then
        ip netns exec "${NS[$r]}" "$PY" "$HB" unbind >>"$OUT/configure.log" 2>&1 ||
            { tail -n 20 "$OUT/configure.log" >&2; die "hb.py unbind on $r failed"; }
    fi
}

# wait_vip ROUTER [TENTHS]: bounded wait until the router holds the VIP (VRRP master)
wait_vip() {
    local i
    for i in $(seq 1 "${2:-150}"); do
        has_vip "$1" && return 0
        sleep 0.1
    done
    die "router $1 did not become VRRP master (no $VIP on eth1)"
}
has_vip() { ip -n "${NS[$1]}" -4 -o addr show dev eth1 2>/dev/null | grep -q " $VIP/"; }

hb_py() { local r="$1"; shift; ip netns exec "${NS[$r]}" "$PY" "$HB" "$@"; }

# perf OUT RATE SECS TARGET [perfdhcp args...]: one perfdhcp run from the
# client namespace, as the relay RELAY; OUT.cpu gets its CPU and wall time
perf() {
    local out="$1" rate="$2" secs="$3" target="$4" t0 t1
    shift 4
    t0="$(date +%s.%N)"
    ip netns exec "${NS[c]}" taskset -c "$CLIENT_CPU" nice -n "$PERF_NICE" bash -c '
        out="$1"; shift
        perfdhcp "$@" >"$out" 2>&1 || true
        times >"$out.times"' _ "$out" \
        -4 -l "$RELAY" -r "$rate" -p "$secs" -d 2 -W 500000 "$@" "$target" || true
    t1="$(date +%s.%N)"
    awk -v t0="$t0" -v t1="$t1" 'NR == 2 {
            split($1, u, /[ms]/); split($2, s, /[ms]/)
            printf "%.3f %.3f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2], t1 - t0 }' "$out.times" >"$out.cpu" 2>/dev/null || echo "- -" >"$out.cpu"
    rm -f "$out.times"
}

# field FILE SECTION KEY: one figure of a perfdhcp report
field() {
    awk -v sec="$2" -v key="$3" '
        /Statistics for:/ { cur = $0 }
        index(cur, sec) && index($0, key ":") { sub(".*" key ": *", ""); print $1; exit }' "$1"
}
rate_of() { sed -n 's/^Rate: \([0-9.]*\) 4-way exchanges.*/\1/p' "$1" | tail -n 1; }

# capture_start PCAP / capture_stop: DHCP and VRRP on the client side
capture_start() {
    ip netns exec "${NS[c]}" dumpcap -q -i eth1 -f '(udp and (port 67 or port 68)) or ip proto 112' -B 64 -w "$1" 2>"$1.log" &
    CAP_PID=$!
    local i
    for i in $(seq 1 50); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    cat "$1.log" >&2
    die "dumpcap did not start"
}
capture_stop() {
    [ -n "$CAP_PID" ] && kill -INT "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
    CAP_PID=""
}
# acks PCAP: "time eth_src yiaddr chaddr lease_time" of every DHCPACK
acks() {
    tshark -r "$1" -Y 'dhcp.option.dhcp == 5' -T fields -E separator=" " -E occurrence=f \
        -e frame.time_epoch -e eth.src -e dhcp.ip.your -e dhcp.hw.mac_addr \
        -e dhcp.option.ip_address_lease_time 2>/dev/null
}

# clean_rate OUTDIR "RATES" SECS CLIENTS: the highest rate perfdhcp achieved
# through the VIP with both drop ratios <= 1 %, the rates stepped up (it
# stops at the first step that is not clean); dies when none is
clean_rate() {
    local out="$1" secs="$3" clients="$4" best=0 r got dd dr
    echo "==> clean rate of the pair (drops <= 1 %, $secs s a step)" >&2
    for r in $2; do
        perf "$out/clean-$r.perf" "$r" "$secs" "$VIP" -R "$clients"
        got="$(rate_of "$out/clean-$r.perf")"
        dd="$(field "$out/clean-$r.perf" DISCOVER-OFFER "drops ratio")"
        dr="$(field "$out/clean-$r.perf" REQUEST-ACK "drops ratio")"
        echo "    offered $r/s: achieved ${got:-?}/s, drops D-O ${dd:-?} % R-A ${dr:-?} %" >&2
        awk -v a="${dd:-100}" -v b="${dr:-100}" 'BEGIN { exit !(a <= 1 && b <= 1) }' || break
        best="${got%.*}"
    done
    [ "$best" -gt 0 ] || die "no clean step at all (see $out/clean-*.perf)"
    echo "$best"
}

# stop_router ROUTER: SIGTERM (after SIGCONT), bounded, then SIGKILL
stop_router() {
    local r="$1" p="${PID[$1]:-}" i
    [ -n "$p" ] || return 0
    kill -CONT "$p" 2>/dev/null || true
    kill "$p" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    { wait "$p"; } 2>/dev/null || true
    PID[$r]=""
}

# fresh_pair: both routers (leases of LEASE_TIME s) from empty storage, configured, a master, b synchronized
fresh_pair() {
    local r
    for r in a b; do start_hotleased "$r"; done
    for r in a b; do
        configure_hotleased "$r"
        hb_py "$r" lease-time "${LEASE_TIME:-3600}" >>"$OUT/configure.log" 2>&1 || die "lease-time on $r failed"
    done
    wait_vip a 300
    hb_py b wait-sync --timeout 60 --interval 0.2 >"$OUT/initial-sync.json" || true
    if ! grep -q '"sync_state": "synchronized"' "$OUT/initial-sync.json"; then
        hb_py b raw >"$OUT/initial-b.xml" 2>&1 || true
        die "b not synchronized: $(cat "$OUT/initial-sync.json")"
    fi
}

# synced: both profiles synchronized (bounded); prints when, or "-"
synced() {
    local ja jb
    jb="$(hb_py b wait-sync --timeout "${SYNC_TIMEOUT:-90}" --interval 0.2 2>/dev/null || true)"
    ja="$(hb_py a wait-sync --timeout "${SYNC_TIMEOUT:-90}" --interval 0.2 2>/dev/null || true)"
    python3 -c '
import json, sys
s = [json.loads(x).get("seen") if x.strip() else None for x in sys.argv[1:]]
print("-" if None in s else max(s))' "$ja" "$jb"
}

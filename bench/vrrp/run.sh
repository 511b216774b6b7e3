#!/usr/bin/env bash
# VRRP crash-takeover benchmark: a hotleased pair and a keepalived pair, same
# topology, same run, measured on the wire.
#
#   sudo bench/vrrp/run.sh               (as root)
#
# For each implementation and interval: three namespaces (a bridge and two
# routers, 10.77.0.1 master priority 200, 10.77.0.2 backup priority 100,
# VRRPv3, VIP 10.77.0.100), tshark on the bridge, the master started and
# elected, then the backup, then every process of the master's namespace is
# SIGKILLed (a crash). From the capture:
#   takeover = the old master's last advertisement → the new master's first
#   two-master moment = an advertisement of the backup sent while the master
#                       was still advertising (before its last advertisement)
# RFC bound for the backup (priority 100): 3 × interval + 156/256 × interval.
#
# Knobs: RUNS_1S=3 RUNS_10MS=20 KEEP=1 (keep the work dir) NO_BUILD=1
# LOAD=N (N busy loops on the CPUs during the runs: timing under load).
# Installs keepalived and tshark if missing, builds hotleased --release.
# Prints a table; a missed target never fails the script.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RUNS_1S=${RUNS_1S:-3}
RUNS_10MS=${RUNS_10MS:-20}
VIP=10.77.0.100
TAG="vr$$b"
WORK=$(mktemp -d /tmp/hotlease-vrrp-bench.XXXXXX)

log() { printf '# %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, raw sockets)"

need=()
command -v keepalived >/dev/null || need+=(keepalived)
command -v tshark >/dev/null || need+=(tshark)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
if [ -z "${NO_BUILD:-}" ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release -q)
fi
HOTLEASED="$ROOT/target/release/hotleased"
[ -x "$HOTLEASED" ] || die "$HOTLEASED not built"
HASH=$(printf 'bench-password' | "$HOTLEASED" hash-password)

SW="${TAG}s"; RA="${TAG}a"; RB="${TAG}b"
teardown() {
    for ns in "$RA" "$RB" "$SW"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}
LOAD_PIDS=()
cleanup() {
    for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    teardown
    if [ -n "${KEEP:-}" ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

topology() {
    teardown
    ip netns add "$SW"
    ip -n "$SW" link add br0 type bridge
    ip -n "$SW" link set br0 up
    local i=0
    for ns in "$RA" "$RB"; do
        ip netns add "$ns"
        ip -n "$SW" link add "p$i" type veth peer name eth0 netns "$ns"
        ip -n "$SW" link set "p$i" master br0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0
        ip -n "$ns" link set eth0 up
        i=$((i + 1))
    done
}

has_vip() { ip -n "$1" -4 -o addr show dev eth0 | grep -q " $VIP/"; }

wait_until() { # seconds command...
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    while ! "$@"; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}

# start_router IMPL NS PRIORITY INTERVAL_MS DIR
start_router() {
    local impl=$1 ns=$2 prio=$3 ms=$4 dir=$5
    mkdir -p "$dir"
    if [ "$impl" = hotlease ]; then
        mkdir -p "$dir/storage"
        cat >"$dir/hotleased.toml" <<EOT
[netconf]
listen = "127.0.0.1:8830"
host-key = "$dir/host_key"
recovery-user = "admin"
[[netconf.user]]
name = "admin"
password-hash = "$HASH"
[storage]
dir = "$dir/storage"
EOT
        cat >"$dir/storage/startup.xml" <<EOT
<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth0</interface><vrid>51</vrid><virtual-ip>$VIP</virtual-ip><priority>$prio</priority><advertise-interval>$ms</advertise-interval></group></vrrp>
EOT
        ip netns exec "$ns" "$HOTLEASED" --config "$dir/hotleased.toml" >"$dir/log" 2>&1 &
        disown
    else
        local int
        int=$(awk -v m="$ms" 'BEGIN { printf "%g", m / 1000 }')
        cat >"$dir/keepalived.conf" <<EOT
global_defs {
  vrrp_version 3
  script_user root
  enable_script_security
  max_auto_priority -1
}
vrrp_instance VI {
  interface eth0
  state BACKUP
  virtual_router_id 51
  priority $prio
  advert_int $int
  virtual_ipaddress {
    $VIP/32
  }
}
EOT
        ip netns exec "$ns" keepalived -n -l -D -P -f "$dir/keepalived.conf" \
            -p "$dir/keepalived.pid" -r "$dir/vrrp.pid" >"$dir/log" 2>&1 &
        disown
    fi
}

# one_run IMPL INTERVAL_MS RUN → appends a line to $WORK/results
one_run() {
    local impl=$1 ms=$2 run=$3
    local dir="$WORK/$impl-$ms-$run"
    mkdir -p "$dir"
    topology
    ip netns exec "$SW" tshark -q -n -i br0 -f "ip proto 112" -w "$dir/cap.pcap" 2>"$dir/tshark.log" &
    local tshark=$!
    wait_until 10 grep -qs "Capturing on" "$dir/tshark.log" || die "tshark did not start"
    start_router "$impl" "$RA" 200 "$ms" "$dir/a"
    # master elected (VIP on it), then the backup starts and settles
    wait_until 15 has_vip "$RA" || die "$impl: the first router never became master ($dir)"
    start_router "$impl" "$RB" 100 "$ms" "$dir/b"
    local settle
    settle=$(awk -v m="$ms" 'BEGIN { s = m * 8 / 1000; if (s < 1.5) s = 1.5; print s }')
    sleep "$settle"
    local t_kill
    t_kill=$(date +%s.%N)
    # A crash: freeze every process of the namespace first, so that none
    # can react to another's death (keepalived's VRRP child would resign
    # with priority 0 on its parent's death), then kill them.
    local pids
    pids=$(ip netns pids "$RA")
    for pid in $pids; do kill -STOP "$pid" 2>/dev/null || true; done
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
    wait_until 15 has_vip "$RB" || log "$impl: the backup never took the VIP ($dir)"
    sleep "$(awk -v m="$ms" 'BEGIN { print m * 3 / 1000 + 0.2 }')"
    kill -INT "$tshark"; wait "$tshark" 2>/dev/null || true
    tshark -n -r "$dir/cap.pcap" -Y vrrp -T fields -E separator=, \
        -e frame.time_epoch -e ip.src -e vrrp.prio >"$dir/adverts.csv" 2>/dev/null
    python3 "$HERE/analyze.py" run "$impl" "$ms" "$t_kill" "$dir/adverts.csv" >>"$WORK/results"
}

: >"$WORK/results"
for _ in $(seq 1 "${LOAD:-0}"); do
    ( while :; do :; done ) &
    LOAD_PIDS+=("$!")
done
for ms in 1000 10; do
    runs=$RUNS_1S; [ "$ms" = 10 ] && runs=$RUNS_10MS
    for run in $(seq 1 "$runs"); do
        for impl in hotlease keepalived; do
            one_run "$impl" "$ms" "$run"
            log "$(tail -1 "$WORK/results")"
        done
    done
done
teardown
echo "command: sudo bench/vrrp/run.sh (RUNS_1S=$RUNS_1S RUNS_10MS=$RUNS_10MS LOAD=${LOAD:-0})"
echo "machine: $(nproc) cores, $(uname -r); keepalived $(keepalived --version 2>&1 | head -1 | awk '{print $2}'); hotleased $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
python3 "$HERE/analyze.py" report "$WORK/results"

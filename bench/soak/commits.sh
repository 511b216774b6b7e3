#!/usr/bin/env bash
# Memory per commit (issue 15, the soak's "≈ 1.9 KB a commit" on the
# master): one hotleased (VRRP off) in a namespace of its own, POOLS pools,
# then COMMITS commits from one session; RSS every SAMPLE commits
# (bench/soak/commits.py). REPLAY sets [netconf] notification-replay: each
# commit's netconf-config-change notification is kept in the replay log
# (the last REPLAY ones, in memory), so growth that stops after REPLAY
# commits is that log filling up, and growth that goes on is a leak.
#
# Usage (root): REPLAY=500 COMMITS=3000 bench/soak/commits.sh
#   POOLS=100 SAMPLE=250 HOTLEASED=path NO_BUILD=1 HEAPTRACK=1 (run the
#   daemon under heaptrack; its report lands in bench/soak/out-commits)
# The namespace hc<pid> is always removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
REPLAY="${REPLAY:-10000}"
COMMITS="${COMMITS:-3000}"
POOLS="${POOLS:-100}"
SAMPLE="${SAMPLE:-250}"
[ "$(id -u)" = 0 ] || { echo "run as root (network namespace)" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || [ -n "${HOTLEASED:-}" ] || cargo build -q
BIN="${HOTLEASED:-$ROOT/target/debug/hotleased}"
PY="${PY:-/work/main/netconf-tests/.venv/bin/python}"
[ -x "$PY" ] || PY="$ROOT/netconf-tests/.venv/bin/python"

NS="hc$$"
WK="$(mktemp -d /tmp/hcommits.XXXXXX)"
OUT="$ROOT/bench/soak/out-commits"
mkdir -p "$OUT"
PID=""
cleanup() {
    [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
    [ -z "$PID" ] || wait "$PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WK"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
mkdir -p "$WK/state"
chmod 0700 "$WK/state"
cat >"$WK/hotleased.toml" <<TOML
[netconf]
listen = "127.0.0.1:8830"
host-key = "$WK/ssh_host_ed25519_key"
recovery-user = "admin"
notification-replay = $REPLAY
[[netconf.user]]
name = "admin"
password-hash = "$(printf '%s' lab | "$BIN" hash-password)"
[storage]
dir = "$WK/state"
[vrrp]
enabled = false
TOML
WRAP=()
[ -z "${HEAPTRACK:-}" ] || WRAP=(heaptrack -o "$OUT/heaptrack.replay$REPLAY")
HOTLEASE_LOG=warn ip netns exec "$NS" "${WRAP[@]}" "$BIN" --config "$WK/hotleased.toml" >"$OUT/log.replay$REPLAY" 2>&1 &
PID=$!
for _ in $(seq 1 300); do
    ip netns exec "$NS" bash -c '</dev/tcp/127.0.0.1/8830' 2>/dev/null && break
    sleep 0.1
done
EXE="$(realpath "$BIN")"
DPID="$(ip netns pids "$NS" | while read -r p; do [ "$(readlink /proc/"$p"/exe)" = "$EXE" ] && echo "$p"; done | head -n 1)"
[ -n "$DPID" ] || { cat "$OUT/log.replay$REPLAY" >&2; echo "no hotleased" >&2; exit 1; }
echo "==> REPLAY=$REPLAY POOLS=$POOLS COMMITS=$COMMITS ($BIN, pid $DPID)"
cd bench/soak
ip netns exec "$NS" "$PY" commits.py --pid "$DPID" --pools "$POOLS" --commits "$COMMITS" --sample "$SAMPLE" | tee "$OUT/replay$REPLAY.txt"

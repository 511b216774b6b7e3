#!/usr/bin/env bash
# Load and soak (issue 15): SESSIONS NETCONF sessions (bench/soak/soak.py,
# ncclient) editing and committing on the master of a hotleased hot-backup
# pair (bench/lib/pair.sh) while perfdhcp runs through the pair and it
# syncs, for DURATION s (default 600).
#
#  1. the pair's clean rate (RATE unset: drops <= 1 %, RATES stepped, as in
#     bench/faults), the load RATE = half of it;
#  2. quiet: perfdhcp at RATE for QUIET_SECS s, no NETCONF session;
#  3. soak: the sessions log in, then perfdhcp at RATE for DURATION s while
#     each session loops lock / edit-config / commit / unlock on its own
#     pool (every INVALID-th round an edit the commit must refuse), THINK s
#     between rounds; RSS and open fds of both daemons every SAMPLE s;
#  4. after: the sessions closed, the pair synchronized, both lease tables
#     read over NETCONF and compared.
# Prints: RSS and fds at start and end, DHCP rate (and drops, ACK delay)
# soak vs quiet, the NETCONF rounds and errors by kind (expected: lock
# denied, the invalid commit's validation error; anything else unexpected),
# the tables. A benchmark: a missed target prints MISS.
#
# Usage (root, Debian 12): bench/soak/run.sh
#   DURATION=600 SESSIONS=100 THINK=2 INVALID=10 QUIET_SECS=60 RATE=...
#   SAMPLE=30 LEASE_TIME=3600 CLIENTS=1000000 HOTLEASED=path NO_BUILD=1
# The debug build (target/debug/hotleased) unless HOTLEASED says otherwise.
# Namespaces hs<pid>{w,a,b,c} are always removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

DURATION="${DURATION:-600}"
SESSIONS="${SESSIONS:-100}"
THINK="${THINK:-2}"
INVALID="${INVALID:-10}"
QUIET_SECS="${QUIET_SECS:-60}"
SAMPLE="${SAMPLE:-30}"
LEASE_TIME="${LEASE_TIME:-3600}"
CLIENTS="${CLIENTS:-1000000}"
RATES="${RATES:-100 200 400 800 1600}"
MEASURE_SECS="${MEASURE_SECS:-8}"

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
pkgs=()
for p in kea-admin iproute2 python3-venv; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if [ "${#pkgs[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
[ -n "${NO_BUILD:-}" ] || [ -n "${HOTLEASED:-}" ] || cargo build -q
BIN="${HOTLEASED:-$ROOT/target/debug/hotleased}"

TAG="hs$$"
. "$ROOT/bench/lib/pair.sh"
pair_python
WK="$(mktemp -d /tmp/hsoak.XXXXXX)"
OUT="$ROOT/bench/soak/out"
rm -rf "$OUT"
mkdir -p "$OUT"
SAMPLER=""
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    pair_teardown
    [ -n "${KEEP:-}" ] || rm -rf "$WK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pair_topology
HASH="$(printf '%s' lab | "$BIN" hash-password)"

# usage ROUTER: "rss_kib fds" of its daemon
usage() {
    local p="${PID[$1]}"
    echo "$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status") $(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 | wc -l)"
}
sample() { echo "$(date +%s) $(usage a) $(usage b)"; }

fresh_pair
if [ -z "${RATE:-}" ]; then
    CLEAN="$(clean_rate "$OUT" "$RATES" "$MEASURE_SECS" 60000)"
    RATE=$((CLEAN / 2))
else
    CLEAN="-"
fi
echo "==> quiet: $RATE/s for $QUIET_SECS s (clean rate $CLEAN/s)" >&2
perf "$OUT/quiet.perf" "$RATE" "$QUIET_SECS" "$VIP" -R "$CLIENTS"
hb_py b wait-sync --timeout 60 --interval 0.2 >/dev/null || true

START="$(sample)"
echo "# time rss_a_kib fds_a rss_b_kib fds_b" >"$OUT/samples.txt"
echo "$START" >>"$OUT/samples.txt"
echo "==> soak: $SESSIONS NETCONF sessions on a, perfdhcp $RATE/s, $DURATION s" >&2
ip netns exec "${NS[a]}" "$PY" "$ROOT/bench/soak/soak.py" --sessions "$SESSIONS" --duration "$DURATION" \
    --think "$THINK" --invalid-every "$INVALID" >"$OUT/netconf.jsonl" 2>"$OUT/netconf.err" &
NCP=$!
for i in $(seq 1 1300); do
    grep -q '"event": "up"' "$OUT/netconf.jsonl" 2>/dev/null && break
    kill -0 "$NCP" 2>/dev/null || break
    sleep 0.1
done
grep -q '"event": "up"' "$OUT/netconf.jsonl" || die "the NETCONF sessions did not log in ($OUT/netconf.err)"
echo "    $(head -n 1 "$OUT/netconf.jsonl")" >&2
UP="$(sample)"
(while sleep "$SAMPLE"; do sample >>"$OUT/samples.txt" 2>/dev/null || true; done) &
SAMPLER=$!
perf "$OUT/soak.perf" "$RATE" "$DURATION" "$VIP" -R "$CLIENTS"
wait "$NCP" || true
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
sleep 5
END="$(sample)"
echo "$END" >>"$OUT/samples.txt"
SYNCED="$(synced)"
hb_py a leases --rpc-timeout 1800 >"$OUT/leases-a" 2>"$OUT/leases-a.err" || echo "cannot read a's lease table: $(tail -n 1 "$OUT/leases-a.err")" >&2
hb_py b leases --rpc-timeout 1800 >"$OUT/leases-b" 2>"$OUT/leases-b.err" || echo "cannot read b's lease table: $(tail -n 1 "$OUT/leases-b.err")" >&2
cp "$WK/hl-a/log" "$OUT/log-a"
cp "$WK/hl-b/log" "$OUT/log-b"

COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo '+dirty')"
"$PY" - "$OUT" "$START" "$UP" "$END" "$SYNCED" "$RATE" "$CLEAN" "$DURATION" "$SESSIONS" "$QUIET_SECS" <<'EOF' | tee "$OUT/results.md"
import json, sys
out, start, up, end, synced, rate, clean, duration, sessions, quiet_secs = sys.argv[1:]
def perf(path):
    sec, d = "", {}
    for line in open(path):
        if "Statistics for:" in line:
            sec = line
        for key in ("drops ratio", "avg delay", "max delay"):
            if key + ":" in line and ("REQUEST-ACK" in sec):
                d.setdefault(key, line.split(key + ":")[1].split()[0])
        if line.startswith("Rate:"):
            d["rate"] = float(line.split()[1])
    return d
q, s = perf(f"{out}/quiet.perf"), perf(f"{out}/soak.perf")
nc = [json.loads(l) for l in open(f"{out}/netconf.jsonl") if l.strip()]
upline, done = nc[0], (nc[-1] if nc[-1].get("event") == "done" else {})
def tbl(path):
    t = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 4:
            t[f[0]] = (f[1], f[3])
    return t
a, b = tbl(f"{out}/leases-a"), tbl(f"{out}/leases-b")
read = bool(a) and bool(b)  # an empty table: the read failed (see leases-*.err)
differ = sum(1 for ip in a.keys() & b.keys() if a[ip][0] != b[ip][0])
only = len(a.keys() ^ b.keys())
st, en = start.split()[1:], end.split()[1:]
ratio = s["rate"] / q["rate"] if q.get("rate") else 0
unexpected = {k: v for k, v in done.items() if k.startswith("unexpected")}
expected = {k: v for k, v in done.items() if k.startswith("expected")}
verdict = lambda ok: "PASS" if ok else "MISS"
print("| figure | start | end | target | verdict |")
print("| --- | --- | --- | --- | --- |")
print(f"| RSS of a (master, the NETCONF sessions' router), KiB | {st[0]} | {en[0]} (samples: samples.txt) | no leak | see note |")
print(f"| open fds of a | {st[1]} | {en[1]} | equal | {verdict(st[1] == en[1])} |")
print(f"| RSS of b (backup), KiB | {st[2]} | {en[2]} | no leak | see note |")
print(f"| open fds of b | {st[3]} | {en[3]} | equal | {verdict(st[3] == en[3])} |")
print(f"| DHCP rate (exchanges/s): quiet {quiet_secs} s → soak {duration} s | {q.get('rate')} | {s.get('rate')} ({ratio:.3f}×) | within 10 % | {verdict(abs(ratio - 1) <= 0.10)} |")
print(f"| REQUEST-ACK drops %, ACK avg / max ms: quiet → soak | {q.get('drops ratio')}, {q.get('avg delay')} / {q.get('max delay')} | {s.get('drops ratio')}, {s.get('avg delay')} / {s.get('max delay')} | | |")
print(f"| NETCONF: sessions up, rounds, commits | {upline.get('sessions_up')} of {sessions} (login {upline.get('login_s')} s) | {done.get('rounds')} rounds, {done.get('commits')} commits | | |")
print(f"| NETCONF errors, expected (by kind) | | {json.dumps(expected)} | lock, validation only | |")
print(f"| NETCONF errors, unexpected (by kind) | | {json.dumps(unexpected) if unexpected else 0} | 0 | {verdict(not unexpected and bool(done))} |")
if read:
    print(f"| lease tables after: a / b, addresses held for different MACs, in one table only | | {len(a)} / {len(b)}, {differ}, {only} | 0, 0 | {verdict(differ == 0 and only == 0)} |")
else:
    print("| lease tables after | | not read (leases-a.err, leases-b.err) | | n/a |")
print(f"| pair synchronized after the soak | | {'yes' if synced != '-' else 'no'} | yes | {verdict(synced != '-')} |")
EOF
echo
echo "Load: perfdhcp $RATE exchanges/s (half the clean rate $CLEAN/s measured first), $CLIENTS clients; $SESSIONS sessions, think time $THINK s, one invalid edit in $INVALID rounds; $DURATION s."
echo "Machine: $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), hotleased $COMMIT ($(basename "$(dirname "$BIN")") build), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."

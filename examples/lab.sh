#!/usr/bin/env bash
# The hot-backup lab: three network namespaces (client, rtr-a, rtr-b) on one
# bridge, a hotleased in each router, both configured over NETCONF (ncclient,
# candidate + commit) with the seed procedure of ../shared/seeds.
#
# What runs today: the NETCONF server, its datastores and commit pipeline, and
# VRRP (A becomes master of 10.1.1.1, B its backup: shown at the end). The
# DHCP server runs too, but the seed binds pool p1 to a remote-backup-profile,
# and such a pool serves only while the hot-backup runtime (the next issue)
# says its profile is master; the lab grows with it.
#
# Usage (as root): examples/lab.sh         run the lab and tear it down
#                  KEEP=1 examples/lab.sh  leave it running (then: examples/lab.sh down)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
work=/tmp/hotlease-lab
ns=(hl-client hl-rtr-a hl-rtr-b hl-sw)

down() {
  for n in hl-rtr-a hl-rtr-b; do
    [ -f "$work/$n/pid" ] && kill "$(cat "$work/$n/pid")" 2>/dev/null || true
  done
  for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}
if [ "${1:-}" = down ]; then down; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "lab.sh: run as root (it creates network namespaces)" >&2; exit 1; }

# Tools: a Rust build of hotleased and a Python venv with ncclient.
need=()
for p in cmake pkg-config python3-venv iproute2; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
dpkg -s libpcre2-dev >/dev/null 2>&1 || need+=(libpcre2-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
(cd "$top" && cargo build -q)
bin="$top/target/debug/hotleased"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ncclient==0.7.0
fi

down
trap '[ -n "${KEEP:-}" ] || down' EXIT
rm -rf "$work"; mkdir -p "$work"

# Topology: a bridge in hl-sw joins the client and both routers' eth1
# (10.1.1.0/24, VRRP virtual IP 10.1.1.1); a direct link carries the
# remote-backup service between the routers (10.0.0.0/30).
for n in "${ns[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n hl-sw link add br0 type bridge
ip -n hl-sw link set br0 up
for n in hl-client hl-rtr-a hl-rtr-b; do
  ip link add eth1 netns "$n" type veth peer name "p-${n#hl-}" netns hl-sw
  ip -n hl-sw link set "p-${n#hl-}" master br0 up
  ip -n "$n" link set eth1 up
done
ip -n hl-rtr-a addr add 10.1.1.2/24 dev eth1
ip -n hl-rtr-b addr add 10.1.1.3/24 dev eth1
ip link add hb netns hl-rtr-a type veth peer name hb netns hl-rtr-b
ip -n hl-rtr-a addr add 10.0.0.1/30 dev hb
ip -n hl-rtr-b addr add 10.0.0.2/30 dev hb
ip -n hl-rtr-a link set hb up
ip -n hl-rtr-b link set hb up

# One hotleased per router, NETCONF on the router's own loopback.
hash=$(printf '%s' lab | "$bin" hash-password)
for n in hl-rtr-a hl-rtr-b; do
  mkdir -p "$work/$n"
  cat > "$work/$n/hotleased.toml" <<TOML
[netconf]
listen = "127.0.0.1:8830"
host-key = "$work/$n/ssh_host_ed25519_key"
[[netconf.user]]
name = "admin"
password-hash = "$hash"
[storage]
dir = "$work/$n/state"
TOML
  ip netns exec "$n" "$bin" --config "$work/$n/hotleased.toml" 2>"$work/$n/hotleased.log" &
  echo $! > "$work/$n/pid"
done
for n in hl-rtr-a hl-rtr-b; do
  for _ in $(seq 50); do
    ip netns exec "$n" bash -c '</dev/tcp/127.0.0.1/8830' 2>/dev/null && break
    sleep 0.1
  done
done

# The seed procedure on each router: A is the VRRP master (priority 120,
# preempt delay 1200 s), B the backup (priority 100, no delay).
ip netns exec hl-rtr-a "$venv/bin/python" "$here/configure.py" --router a
ip netns exec hl-rtr-b "$venv/bin/python" "$here/configure.py" --router b

# VRRP elects A (priority 120) once its Master_Down_Interval (3.6 s) passed;
# the remote-backup-service channel is up by then.
for _ in $(seq 60); do
  ip netns exec hl-rtr-a ip -4 -o addr show dev eth1 | grep -q ' 10.1.1.1/' && break
  sleep 0.1
done
for r in a b; do
  ip netns exec "hl-rtr-$r" "$venv/bin/python" "$here/configure.py" --router "$r" --vrrp-status
done

echo
echo "lab: both routers configured over NETCONF; logs in $work/*/hotleased.log"
if [ -n "${KEEP:-}" ]; then
  echo "lab: left running (KEEP=1); NETCONF: ip netns exec hl-rtr-a ... 127.0.0.1:8830 admin/lab; stop with: $0 down"
fi

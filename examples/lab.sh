#!/usr/bin/env bash
# The hot-backup lab, the whole story of "DHCP server dual-device hot backup"
# (../shared/seeds) on one machine: three network namespaces (a client and two
# routers on one bridge, plus a direct link between the routers), a hotleased
# in each router configured over NETCONF with the seed's steps 1-4, a real
# DHCP client (busybox udhcpc), then the master crashes and comes back.
#
#   hl-client eth1 ─┐                  ┌─ eth1 hl-rtr-a (A) 10.1.1.2  hb 10.0.0.1 ─┐
#                   └─ br0 in hl-sw ───┤                                            │ direct link
#                                      └─ eth1 hl-rtr-b (B) 10.1.1.3  hb 10.0.0.2 ─┘ (backup channel)
#   VRRP group 1 on eth1, virtual IP 10.1.1.1 (the clients' gateway and DHCP server identifier)
#
# Usage (as root, fresh Debian 12 is fine: it installs what it needs):
#   examples/lab.sh          run the story and tear everything down
#   KEEP=1 examples/lab.sh   leave the lab running at the end (then: examples/lab.sh down)
#   HOTLEASED=/path/to/hotleased examples/lab.sh   use that daemon, build nothing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
work=/tmp/hotlease-lab
ns=(hl-client hl-rtr-a hl-rtr-b hl-sw)

down() {
  for p in "$work"/*.pid "$work"/*/pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
  for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}
if [ "${1:-}" = down ]; then down; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "lab.sh: run as root (it creates network namespaces)" >&2; exit 1; }

if [ -t 1 ]; then bold=$'\e[1m'; off=$'\e[0m'; else bold=; off=; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
say() { printf '   %s\n' "$*"; }

# --- what the lab needs --------------------------------------------------------
# A Rust toolchain (rustup, the version pinned in rust-toolchain.toml), what
# the build of libyang needs, iproute2 for the namespaces, busybox udhcpc as
# the DHCP client, and a Python venv with ncclient for the NETCONF side.
need=()
for p in cmake pkg-config libpcre2-dev python3-venv iproute2 udhcpc curl ca-certificates; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]} (apt-get, from the Debian mirrors)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null; then
  step "installing Rust (rustup from sh.rustup.rs, minimal profile; the toolchain comes with the build)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none >/dev/null
  . "$HOME/.cargo/env"
fi
if [ -n "${HOTLEASED:-}" ]; then
  bin=$HOTLEASED   # a daemon built elsewhere
else
  # cargo's own progress goes to the terminal (a line per crate when it is
  # not one): a first build compiles every dependency and would otherwise
  # look like a hang.
  step "building hotleased (target/debug; the first time: about 5 minutes on 2 cores, cargo shows its progress)"
  (cd "$top" && cargo build)
  bin="$top/target/debug/hotleased"
fi
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  step "python venv $venv: ncclient from PyPI"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ncclient==0.7.1
fi
cfg() { local r=$1; shift; ip netns exec "hl-rtr-$r" "$venv/bin/python" "$here/configure.py" --router "$r" "$@"; }
vip_on() { ip -n "hl-rtr-$1" -4 -o addr show dev eth1 2>/dev/null | grep ' 10.1.1.1/' >/dev/null; }
now_ms() { date +%s%3N; }
last_event() { tail -n 1 "$work/client.events"; }

down
trap '[ -n "${KEEP:-}" ] || down' EXIT
rm -rf "$work"; mkdir -p "$work"

# --- topology ------------------------------------------------------------------
step "1. Three namespaces: a client and two routers on one bridge, a direct link between the routers"
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
say "client segment 10.1.1.0/24 (A 10.1.1.2, B 10.1.1.3), backup link 10.0.0.0/30 (A .1, B .2)"

# --- daemons -----------------------------------------------------------------------
hash=$(printf '%s' lab | "$bin" hash-password)
start_router() {
  local n=$1
  ip netns exec "$n" "$bin" --config "$work/$n/hotleased.toml" 2>>"$work/$n/hotleased.log" &
  echo $! > "$work/$n/pid"
  disown $!   # its kill -9 below is part of the story, not news from the shell
  for _ in $(seq 100); do
    ip netns exec "$n" bash -c '</dev/tcp/127.0.0.1/8830' 2>/dev/null && return 0
    sleep 0.1
  done
  echo "lab.sh: $n did not start; see $work/$n/hotleased.log" >&2
  return 1
}
step "2. One hotleased per router, NETCONF on each router's own loopback"
for n in hl-rtr-a hl-rtr-b; do
  mkdir -p "$work/$n"
  cat > "$work/$n/hotleased.toml" <<TOML
[netconf]
listen = "127.0.0.1:8830"
host-key = "$work/$n/ssh_host_ed25519_key"
recovery-user = "admin"
[[netconf.user]]
name = "admin"
password-hash = "$hash"
[storage]
dir = "$work/$n/state"
TOML
  start_router "$n"
done
say "hl-rtr-a and hl-rtr-b: NETCONF over SSH on 127.0.0.1:8830 (admin/lab); logs in $work/*/hotleased.log"

# --- the seed procedure --------------------------------------------------------------
step "3. The seed's steps 1-4 over NETCONF on each router (one candidate edit + commit per step)"
say "A: VRRP priority 120, B: 100; both: service rbs1 on the direct link, profile rbp1 following"
say "the VRRP group, pool p1 bound to rbp1 with the virtual IP as server identifier, 60 s leases."
say "No 1200 s preempt delay on A: hotleased holds A's preemption until it holds B's leases."
cfg a
cfg b
cfg a --wait vrrp.state=master rbs.connection=connected rbp.sync-state=synchronized
cfg b --wait vrrp.state=backup rbs.connection=connected rbp.sync-state=synchronized
say "A is VRRP master of 10.1.1.1, B backup; the backup channel is up, the profile synchronized:"
cfg a --status
cfg b --status

# --- a client ----------------------------------------------------------------------------
step "4. A real DHCP client (busybox udhcpc) in hl-client asks for an address"
cat > "$work/udhcpc.sh" <<'SH'
#!/bin/sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$subnet" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
echo "$1 ip=$ip serverid=$serverid lease=$lease" >> /tmp/hotlease-lab/client.events
SH
chmod +x "$work/udhcpc.sh"
: > "$work/client.events"
ip netns exec hl-client udhcpc -i eth1 -f -t 5 -T 1 -s "$work/udhcpc.sh" >"$work/udhcpc.log" 2>&1 &
echo $! > "$work/udhcpc.pid"
disown $!
wait_event() {  # wait_event WORD: the client's log has a line WORD beyond line $2
  for _ in $(seq 300); do
    tail -n +"$(($2 + 1))" "$work/client.events" | grep -q "^$1 " && return 0
    sleep 0.1
  done
  echo "lab.sh: the client logged no '$1' event:" >&2; cat "$work/client.events" >&2; return 1
}
wait_event bound 0
say "client: $(last_event)"
client_ip=$(sed -n 's/^bound ip=\([^ ]*\) .*/\1/p' "$work/client.events" | tail -n 1)

step "5. The lease is on both routers: granted by A (origin local), mirrored to B (origin peer)"
say "A sent its DHCPACK only once the lease was on its disk and acknowledged by B."
cfg a --leases
cfg b --leases

# --- the master fails ------------------------------------------------------------------------
step "6. Router A crashes: kill -9, and its links go down"
t0=$(now_ms)
kill -9 "$(cat "$work/hl-rtr-a/pid")"
ip -n hl-rtr-a link set eth1 down
ip -n hl-rtr-a link set hb down
until vip_on b; do
  [ $(( $(now_ms) - t0 )) -lt 10000 ] || { echo "lab.sh: B did not take over" >&2; exit 1; }
  sleep 0.01
done
say "B owns 10.1.1.1 $(( $(now_ms) - t0 )) ms later (VRRP: at most 3.6 s after A's last advert, with 1 s adverts)"
cfg b --wait vrrp.state=master rbp.role=master
cfg b --status

step "7. The client renews (as at T1: unicast to the server identifier 10.1.1.1), now answered by B"
n=$(wc -l < "$work/client.events")
kill -USR1 "$(cat "$work/udhcpc.pid")"   # busybox renews at lease/2; SIGUSR1 sends that renewal now
wait_event renew "$n"
say "client: $(last_event)"
grep -q "^renew ip=$client_ip serverid=10.1.1.1 " "$work/client.events" \
  || { echo "lab.sh: the renewal did not keep $client_ip with server id 10.1.1.1" >&2; exit 1; }
say "same address, same server identifier: B knew the lease, no NAK, no new DISCOVER"
cfg b --leases

# --- the master returns ----------------------------------------------------------------------------
step "8. Router A comes back (priority 120 > 100), its backup link still down"
ip -n hl-rtr-a link set eth1 up
start_router hl-rtr-a
cfg a --wait vrrp.state=backup vrrp.preempt-hold=true
cfg a --status
say "A has the higher priority but does not preempt: it cannot have B's leases yet."
sleep 3
cfg a --wait vrrp.state=backup vrrp.preempt-hold=true --timeout 1
say "3 s later A still waits; B serves."

step "9. The backup link comes back: batch backup from B, then A takes over"
ip -n hl-rtr-a link set hb up
cfg a --wait vrrp.state=master rbp.sync-state=synchronized
cfg b --wait vrrp.state=backup
cfg a --status
cfg b --status
cfg a --leases

step "10. The client renews again: A answers, same address, same server identifier"
n=$(wc -l < "$work/client.events")
kill -USR1 "$(cat "$work/udhcpc.pid")"
wait_event renew "$n"
say "client: $(last_event)"
grep -q "^renew ip=$client_ip serverid=10.1.1.1 " <(tail -n +"$((n + 1))" "$work/client.events") \
  || { echo "lab.sh: the renewal did not keep $client_ip with server id 10.1.1.1" >&2; exit 1; }
say "the client never noticed either switchover"

echo
if [ -n "${KEEP:-}" ]; then
  say "lab left running (KEEP=1). NETCONF: ip netns exec hl-rtr-a $venv/bin/python $here/configure.py --router a --status"
  say "client events: $work/client.events; stop with: $0 down"
else
  say "done; removing the namespaces and processes (KEEP=1 keeps them)"
fi

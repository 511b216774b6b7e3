#!/usr/bin/env bash
# NETCONF benchmark: hotleased vs yuma123 netconfd on the same work, same run.
#
#   sudo bench/netconf/run.sh            (as root; idempotent)
#
# Installs what it needs (apt: netconfd, openssh-server; a venv with ncclient
# at bench/.venv), builds hotleased --release, then inside a private network
# namespace (loopback only, removed on exit) starts
#   - yuma123 netconfd behind its own sshd (private sshd_config, netconf
#     subsystem = netconf-subsystem), with a copy of hotlease-dhcp-server
#     derived from the real one by bench/netconf/netconfd-module.py
#     (netconfd cannot load the real YANG 1.1 modules), and
#   - hotleased (target/release) with the real modules,
# each in its own CPU-accounting cgroup, and runs bench.py against both.
# Figures and PASS/MISS against the issue-2 targets are printed; a miss never
# fails the script.
#
# Knobs (environment): POOLS=1000 REPS=5 GET_REPS=20 SESSIONS=50
# SESSION_REPS=3 SMALL=200 SMALL_REPS=3 NETCONFD_WITH_STARTUP=true
# KEEP=1 (keep the temp dir with the servers' logs) NO_BUILD=1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV="$ROOT/bench/.venv"
POOLS=${POOLS:-1000}
REPS=${REPS:-5}
GET_REPS=${GET_REPS:-20}
SESSIONS=${SESSIONS:-50}
SESSION_REPS=${SESSION_REPS:-3}
SMALL=${SMALL:-200}
SMALL_REPS=${SMALL_REPS:-3}
# true: netconfd advertises :startup and a commit changes running only, as in
# hotleased (persisting needs copy-config running->startup on both).  false:
# yuma's default, every commit also rewrites its startup file.
NETCONFD_WITH_STARTUP=${NETCONFD_WITH_STARTUP:-true}
# musts: netconfd's copy of the module keeps the real module's per-pool
# 'must' rules but the five it evaluates wrongly (netconfd-module.py), so
# both servers validate nearly the same rules on a commit.  none: the copy
# has no 'must' at all (what earlier runs measured).
NETCONFD_RULES=${NETCONFD_RULES:-musts}
case "$NETCONFD_RULES" in musts|none) ;; *) echo "NETCONFD_RULES is musts or none" >&2; exit 2 ;; esac

log() { printf '%s\n' "# $*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt, sshd, network namespace, cgroups)"

# ---------------------------------------------------------------------------
# 1. what it needs
# ---------------------------------------------------------------------------
need=()
[ -x /usr/sbin/netconfd ] && [ -x /usr/sbin/netconf-subsystem ] || need+=(netconfd)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v yanglint >/dev/null 2>&1 || need+=(libyang2-tools)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    # policy-rc.d-less machines may start the system sshd on install; that
    # one is not ours and is left alone.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import ncclient, paramiko, lxml' 2>/dev/null; then
    log "creating $VENV with ncclient"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q ncclient
fi
grep -qxF '/bench/.venv' "$ROOT/.gitignore" 2>/dev/null || echo '/bench/.venv' >> "$ROOT/.gitignore"

if [ -z "${NO_BUILD:-}" ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
fi
HOTLEASED="$ROOT/target/release/hotleased"
[ -x "$HOTLEASED" ] || die "$HOTLEASED missing (cargo build --release)"

# ---------------------------------------------------------------------------
# 2. temp dir, namespace, cgroups; cleanup on any exit
# ---------------------------------------------------------------------------
T=$(mktemp -d /tmp/hl-netconf-bench.XXXXXX)
NS="hlbench$$"
NSEXEC=()
CG_KIND=""
CG_HL=""
CG_NC=""
PIDS=()
NC_USER=hlbench
NC_USER_MARK="hotlease netconf benchmark (bench/netconf/run.sh)"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    # Anything still in our cgroups (per-connection sshd, netconf-subsystem)
    # was started by us: end it by pid, then remove the cgroups.
    for cg in "$CG_HL" "$CG_NC"; do
        [ -n "$cg" ] && [ -d "$cg" ] || continue
        for _ in $(seq 50); do
            left=$(cat "$cg/cgroup.procs" 2>/dev/null || true)
            [ -z "$left" ] && break
            for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
            sleep 0.1
        done
        rmdir "$cg" 2>/dev/null || echo "run.sh: could not remove cgroup $cg" >&2
    done
    [ -e "/run/netns/$NS" ] && ip netns del "$NS" 2>/dev/null || true
    if [ "$(getent passwd "$NC_USER" | cut -d: -f5)" = "$NC_USER_MARK" ]; then
        userdel "$NC_USER" 2>/dev/null || echo "run.sh: could not remove user $NC_USER" >&2
    fi
    if [ -n "${KEEP:-}" ] || [ $rc -ne 0 ]; then
        echo "run.sh: logs kept in $T" >&2
    else
        rm -rf "$T"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ip netns add "$NS" 2>/dev/null; then
    ip netns exec "$NS" ip link set lo up
    # nsenter --net enters only the network namespace (ip netns exec would
    # also remount /sys, hiding the cgroup files).
    NSEXEC=(nsenter "--net=/run/netns/$NS")
    HL_PORT=18830
    NC_PORT=18831
    log "network namespace $NS (loopback only)"
else
    log "no network namespace available: using 127.0.0.1 on free high ports"
    read -r HL_PORT NC_PORT < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1",0))
print(*[s.getsockname()[1] for s in ss])')
fi

# CPU accounting: one cgroup per server (cgroup v1 cpuacct, else cgroup v2),
# else /proc (process + reaped children).
for base in /sys/fs/cgroup/cpuacct /sys/fs/cgroup/cpu,cpuacct; do
    if [ -f "$base/cpuacct.usage" ] && mkdir "$base/$NS-hl" 2>/dev/null; then
        mkdir "$base/$NS-nc"
        CG_KIND=cgroup1 CG_HL="$base/$NS-hl" CG_NC="$base/$NS-nc"
        break
    fi
done
if [ -z "$CG_KIND" ]; then
    for base in /sys/fs/cgroup/unified /sys/fs/cgroup; do
        if [ -f "$base/cgroup.procs" ] && [ ! -f "$base/cpuacct.usage" ] && mkdir "$base/$NS-hl" 2>/dev/null; then
            if [ -f "$base/$NS-hl/cpu.stat" ]; then
                mkdir "$base/$NS-nc"
                CG_KIND=cgroup2 CG_HL="$base/$NS-hl" CG_NC="$base/$NS-nc"
                break
            fi
            rmdir "$base/$NS-hl"
        fi
    done
fi
log "CPU accounting: ${CG_KIND:-/proc only}"

# start_in CGROUP LOGFILE CMD...: start CMD (in the namespace, in CGROUP),
# remember its pid in START_PID.
start_in() {
    local cg=$1 logf=$2
    shift 2
    (
        [ -n "$cg" ] && echo "$BASHPID" > "$cg/cgroup.procs"
        exec "${NSEXEC[@]}" "$@"
    ) >"$logf" 2>&1 </dev/null &
    START_PID=$!
    PIDS+=("$START_PID")
}

# wait_listen PORT PID NAME: wait (10 s at most) for a TCP listener.
wait_listen() {
    local port=$1 pid=$2 name=$3
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "$name exited at start (log: $T)"
        if "${NSEXEC[@]}" ss -Hltn "sport = :$port" | grep -q LISTEN; then return 0; fi
        sleep 0.1
    done
    die "$name is not listening on $port after 10 s (log: $T)"
}

ssh-keygen -q -t ed25519 -N '' -C bench -f "$T/client_key"
PUBKEY=$(cat "$T/client_key.pub")

# ---------------------------------------------------------------------------
# 3. netconfd behind its own sshd
# ---------------------------------------------------------------------------
mkdir -p "$T/nc/modules" "$T/nc/home" /run/sshd
# The NETCONF user of netconfd's sshd: a system user with /bin/sh as shell,
# created here and removed on exit.  sshd starts a subsystem through the
# user's login shell, and bash started by sshd reads ~/.bashrc even when not
# interactive: logging in as root here ran root's .bashrc (pyenv init) on
# every session, ~70 ms of CPU that has nothing to do with netconfd.
if ! getent passwd "$NC_USER" >/dev/null; then
    useradd --system --no-create-home --home-dir "$T/nc/home" --shell /bin/sh --password "*" \
        --comment "$NC_USER_MARK" "$NC_USER"
elif [ "$(getent passwd "$NC_USER" | cut -d: -f5)" = "$NC_USER_MARK" ]; then
    usermod --home "$T/nc/home" --shell /bin/sh --password "*" "$NC_USER"   # left by an aborted run
else
    die "a user $NC_USER exists that this script did not create"
fi
# sshd reads authorized_keys as the user, and netconf-subsystem (as the user)
# connects to netconfd's socket: the user must traverse the temp dir.
chmod 755 "$T" "$T/nc" "$T/nc/home"
python3 "$HERE/netconfd-module.py" "$ROOT/yang/hotlease-dhcp-server.yang" "$NETCONFD_RULES" \
    >"$T/nc/modules/hotlease-dhcp-server.yang"
yanglint -p "$ROOT/yang" "$T/nc/modules/hotlease-dhcp-server.yang" 2>&1 | grep -v 'does not match module name' \
    && die "the derived netconfd module does not pass yanglint"
# Same configuration tree as the real module (but remote-backup-profile)?
tree_of() { yanglint -f tree -p "$ROOT/yang" "$1" | grep -- '--rw' | sed 's/^[ |+-]*--rw //; s/  */ /g'; }
shape_diff=$(diff <(tree_of "$T/nc/modules/hotlease-dhcp-server.yang") \
                  <(tree_of "$ROOT/yang/hotlease-dhcp-server.yang") | grep '^[<>]' || true)
log "netconfd runs a copy of hotlease-dhcp-server derived from the real one (YANG 1.0, no"
log "  remote-backup-profile; 'must' rules: $NETCONFD_RULES): netconfd 2.13 rejects the real"
log "  modules (hotlease-vrrp's 'modifier invert-match', a YANG 1.1 statement)."
log "  $(grep -c '^ *must ' "$T/nc/modules/hotlease-dhcp-server.yang") must rules in the copy," \
    "$(grep -c '^ *must ' "$ROOT/yang/hotlease-dhcp-server.yang") in the real module.  Config-tree difference:"
printf '%s\n' "${shape_diff:-(none)}" | sed 's/^/#     /'

"${NSEXEC[@]}" true
start_in "$CG_NC" "$T/nc/netconfd.out" env HOME="$T/nc/home" /usr/sbin/netconfd \
    --modpath="$T/nc/modules:/usr/share/yuma/modules" \
    --module=hotlease-dhcp-server \
    --no-startup --with-startup="$NETCONFD_WITH_STARTUP" \
    --ncxserver-sockname="$T/nc/ncxserver.sock" \
    --port="$NC_PORT" --access-control=off --superuser="$NC_USER" \
    --log="$T/nc/netconfd.log" --log-level=warn
NETCONFD_PID=$START_PID
for _ in $(seq 100); do
    [ -S "$T/nc/ncxserver.sock" ] && break
    kill -0 "$NETCONFD_PID" 2>/dev/null || { cat "$T/nc/netconfd.log" >&2; die "netconfd exited at start"; }
    sleep 0.1
done
[ -S "$T/nc/ncxserver.sock" ] || die "netconfd socket missing after 10 s (log: $T/nc)"

ssh-keygen -q -t ed25519 -N '' -f "$T/nc/ssh_host_ed25519_key"
echo "$PUBKEY" > "$T/nc/authorized_keys"
chmod 644 "$T/nc/authorized_keys"
cat > "$T/nc/sshd_config" <<EOF
# private sshd for the benchmark: loopback, key login, netconf only
Port $NC_PORT
ListenAddress 127.0.0.1
HostKey $T/nc/ssh_host_ed25519_key
PidFile $T/nc/sshd.pid
AuthorizedKeysFile $T/nc/authorized_keys
StrictModes no
PermitRootLogin no
AllowUsers $NC_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
MaxStartups 200
LogLevel ERROR
Subsystem netconf "/usr/sbin/netconf-subsystem --ncxserver-sockname=$NC_PORT@$T/nc/ncxserver.sock"
EOF
/usr/sbin/sshd -t -f "$T/nc/sshd_config"
start_in "$CG_NC" "$T/nc/sshd.out" /usr/sbin/sshd -D -e -f "$T/nc/sshd_config"
SSHD_PID=$START_PID
wait_listen "$NC_PORT" "$SSHD_PID" sshd

# ---------------------------------------------------------------------------
# 4. hotleased
# ---------------------------------------------------------------------------
mkdir -p "$T/hl/storage"
cat > "$T/hl/hotleased.toml" <<EOF
[netconf]
listen = "127.0.0.1:$HL_PORT"
host-key = "$T/hl/hostkey"
recovery-user = "bench"

[[netconf.user]]
name = "bench"
authorized-keys = ["$PUBKEY"]

[storage]
dir = "$T/hl/storage"
EOF
start_in "$CG_HL" "$T/hl/hotleased.log" "$HOTLEASED" --config "$T/hl/hotleased.toml"
HL_PID=$START_PID
wait_listen "$HL_PORT" "$HL_PID" hotleased

if [ -n "$CG_KIND" ]; then
    HL_CPU="$CG_KIND:$CG_HL" NC_CPU="$CG_KIND:$CG_NC"
else
    HL_CPU="proc:$HL_PID" NC_CPU="proc:$NETCONFD_PID,$SSHD_PID+"
fi

log "hotleased $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" \
    "(binary built $(date -u -r "$HOTLEASED" +%FT%TZ)) pid $HL_PID port $HL_PORT;" \
    "netconfd $(dpkg-query -W -f='${Version}' netconfd) pid $NETCONFD_PID (with-startup=$NETCONFD_WITH_STARTUP)," \
    "sshd $(dpkg-query -W -f='${Version}' openssh-server) pid $SSHD_PID port $NC_PORT"
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
    "$(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------
# 5. the work
# ---------------------------------------------------------------------------
BENCH_RC=0
"${NSEXEC[@]}" "$VENV/bin/python" "$HERE/bench.py" \
    --hl-port "$HL_PORT" --hl-user bench --hl-cpu "$HL_CPU" --hl-proc "proc:$HL_PID" \
    --nc-port "$NC_PORT" --nc-user "$NC_USER" --nc-cpu "$NC_CPU" \
    --nc-proc "proc:$NETCONFD_PID,$SSHD_PID+" \
    --nc-parts "netconfd=proc:$NETCONFD_PID;sshd+subsystem=proc:$SSHD_PID+" \
    --key "$T/client_key" --pools "$POOLS" --reps "$REPS" --get-reps "$GET_REPS" \
    --sessions "$SESSIONS" --session-reps "$SESSION_REPS" \
    --small "$SMALL" --small-reps "$SMALL_REPS" ${BENCH_ARGS:-} || BENCH_RC=$?

log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
# A server that died is a failure of the run (not a missed target): keep the
# logs and exit non-zero.  A missed target never fails the script.
DIED=0
for entry in "hotleased:$HL_PID:$T/hl/hotleased.log" "netconfd:$NETCONFD_PID:$T/nc/netconfd.log" \
             "sshd:$SSHD_PID:$T/nc/sshd.out"; do
    IFS=: read -r name pid logf <<<"$entry"
    if ! kill -0 "$pid" 2>/dev/null; then
        st=0
        wait "$pid" || st=$?
        log "ERROR: $name (pid $pid) died during the run, exit status $st; last lines of $logf:"
        tail -n 20 "$logf" | sed 's/^/#   /'
        DIED=1
    fi
done
if [ "$DIED" -ne 0 ] || [ "$BENCH_RC" -ne 0 ]; then
    KEEP=1
    log "bench.py exit status $BENCH_RC; logs kept in $T"
    exit 1
fi

#!/usr/bin/env bash
# The hotlease test command (README): lint, build, unit tests, YANG checks,
# then the black-box NETCONF suite against the real daemon, then the Debian
# package (packaging/test-package.sh; HOTLEASE_SKIP_PACKAGE=1 skips it).
#
# Installs what it needs by itself (Debian packages, only when missing; a
# Python venv in netconf-tests/.venv), runs from any cwd, exits non-zero on
# any failure.  Extra arguments go to pytest (e.g. -k lock -x).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi

step() { printf '\n==> %s\n' "$*"; }

# --- system packages --------------------------------------------------------
# keepalived and tshark: the VRRP peer and wire checks of test_vrrp.py; iproute2
# and util-linux (setpriv) for its namespaces and the capability test;
# udhcpc, dhclient, dhcpcd (dhcpcd-base: the binary without the service that
# would manage the host's interfaces) and dhcrelay: the DHCP clients of
# test_dhcp.py; nftables: the split brain of test_hot_backup.py (a bridge
# filter between the routers); gcc, libnetconf2-dev and libssh-dev: the C
# client of test_libnetconf2.py; yangcli: the yuma123 client of
# test_yangcli.py; prometheus: the real scraper of test_metrics.py; strace:
# the recorder of the lease store crash checker (tests/crash_consistency.rs);
# faketime: the clock jumps of the fault campaign (bench/faults/run.sh).
APT_PKGS=(cmake libpcre2-dev pkg-config libyang2-tools python3-venv python3-dev openssh-client
          keepalived tshark iproute2 util-linux udhcpc isc-dhcp-client dhcpcd-base isc-dhcp-relay
          nftables gcc libnetconf2-dev libssh-dev yangcli prometheus strace faketime)
missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    step "apt-get install ${missing[*]} (from the Debian mirrors)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    # the package starts a Prometheus of its own (and a node exporter): the
    # test runs its own on loopback, so the package's ones are stopped
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
fi

# --- python venv ---------------------------------------------------------------
VENV="$ROOT/netconf-tests/.venv"
REQ="$ROOT/netconf-tests/requirements.txt"
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
stamp="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$stamp" ]; then
    step "python venv ($VENV): the test tools from PyPI"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
    echo "$stamp" >"$VENV/.requirements.sha256"
fi

# --- rust ------------------------------------------------------------------
if ! command -v cargo >/dev/null; then
    step "installing Rust (rustup from sh.rustup.rs, minimal profile; rust-toolchain.toml picks the toolchain)"
    command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl ca-certificates >/dev/null; }
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none >/dev/null
    . "$HOME/.cargo/env"
fi
step "cargo fmt --check"
cargo fmt --check
# The first run compiles every dependency here (several minutes on 2 cores);
# cargo prints a line per crate meanwhile.
step "cargo clippy --all-targets -- -D warnings (the first time: several minutes, compiling the dependencies)"
cargo clippy --all-targets -- -D warnings
step "cargo doc --no-deps, warnings denied (broken links in the API documentation)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
step "cargo build (the first time: a few minutes more)"
cargo build
step "cargo test"
cargo test

# --- yang ------------------------------------------------------------------
if [ -f yang-tests/check.sh ]; then
    step "yang-tests/check.sh"
    bash yang-tests/check.sh
fi
step "yanglint yang/*.yang"
lint_out="$(yanglint -p yang -p yang/ietf yang/*.yang 2>&1)" || {
    printf '%s\n' "$lint_out"
    echo "yanglint failed" >&2
    exit 1
}
if [ -n "$lint_out" ]; then
    printf '%s\n' "$lint_out"
    echo "yanglint printed warnings" >&2
    exit 1
fi

# --- black-box NETCONF suite -------------------------------------------------------
step "pytest netconf-tests"
export HOTLEASED="${HOTLEASED:-$ROOT/target/debug/hotleased}"
cd "$ROOT/netconf-tests"
"$VENV/bin/python" -m pytest -q "$@"

# --- Debian package (as root): build, lintian, install, run, upgrade, purge ----
if [ "${HOTLEASE_SKIP_PACKAGE:-0}" != 1 ]; then
    step "packaging/test-package.sh"
    bash "$ROOT/packaging/test-package.sh"
fi

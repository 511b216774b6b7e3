"""File modes (issue 14, item 8): lease data (MAC addresses, host names) is
personal data, configuration may hold secrets.

A daemon started with the usual umask 022 on a storage directory that does
not exist yet creates it 0700; after a real DHCP exchange (udhcpc in a
namespace) and a copy to startup, every file in it is 0600. A lease log
left 0644 by an older version is made 0600 at the next start, and a
directory the package made 0750 keeps its mode.
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from test_dhcp import NsDaemon, commit, dhcp, pool, settled, topo, udhcpc  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not shutil.which("udhcpc"), reason="udhcpc is needed (run.sh installs it)"),
]


def mode(p) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def modes(d) -> dict:
    return {p.name: mode(p) for p in sorted(d.iterdir())}


def test_storage_is_private_whatever_the_umask(topo, creds, tmp_path, request):
    from conftest import _finish

    d = NsDaemon(topo.S, tmp_path / "d", creds)
    # as a hand-started daemon finds it: no storage dir yet, umask 022
    d.storage.rmdir()
    old = os.umask(0o022)
    try:
        d.start()
    finally:
        os.umask(old)
    try:
        m = d.connect()
        commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")])))
        r = udhcpc(topo, topo.C, "lan", topo.tmp / "udhcpc.log")
        assert "obtained" in r.stderr, r.stderr
        settled(m, lambda s: s["leases"].get("10.77.0.10", {}).get("state") == "bound")
        m.copy_config(source="running", target="startup")
        assert d.stop() == 0
        files = modes(d.storage)
        assert all(m == 0o600 for m in files.values()), {k: oct(v) for k, v in files.items()}
        assert mode(d.storage) == 0o700, oct(mode(d.storage))
        assert {"leases.log", "startup.xml", "hotleased.lock"} <= set(files), files
        assert mode(d.dir / "ssh_host_ed25519_key") == 0o600

        # an older version's lease log, in a directory the package made
        (d.storage / "leases.log").chmod(0o644)
        d.storage.chmod(0o750)
        d.start()
        assert mode(d.storage / "leases.log") == 0o600
        assert mode(d.storage) == 0o750
        # and its leases are still there
        m = d.connect()
        st = settled(m, lambda s: "10.77.0.10" in s["leases"])
        assert st["leases"]["10.77.0.10"]["state"] == "bound"
    finally:
        _finish(request, [d])

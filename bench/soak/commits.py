"""Memory per commit (bench/soak/commits.sh): one ncclient session against
the hotleased on 127.0.0.1:8830 of the namespace it runs in; POOLS pools
created first (as the soak's sessions do), then COMMITS rounds of
edit-config (one pool's lease time) + commit, the daemon's RSS read from
/proc every SAMPLE commits. Prints one line per sample (commits, RSS KiB)
and a JSON summary."""
import argparse
import json
import time

from ncclient import manager
from ncclient.transport import session as nc_session

from soak import pool

nc_session.TICK = 0.01


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--pools", type=int, default=100)
    ap.add_argument("--commits", type=int, default=4000)
    ap.add_argument("--sample", type=int, default=250)
    args = ap.parse_args()
    m = manager.connect(host="127.0.0.1", port=8830, username="admin", password="lab",
                        hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=120)
    for n in range(args.pools):
        m.edit_config(target="candidate", config=pool(n, 3600))
    m.commit()
    samples = [(0, rss_kib(args.pid))]
    print(f"commits 0 rss_kib {samples[0][1]}", flush=True)
    t0 = time.time()
    for i in range(1, args.commits + 1):
        m.edit_config(target="candidate", config=pool(i % args.pools, 600 + i % 80000))
        m.commit()
        if i % args.sample == 0:
            samples.append((i, rss_kib(args.pid)))
            print(f"commits {i} rss_kib {samples[-1][1]} ({time.time() - t0:.0f} s)", flush=True)
    m.close_session()
    print(json.dumps({"samples": samples}))


if __name__ == "__main__":
    main()

"""Counts of one fault of the campaign (bench/faults/run.sh), and the table.

    faults.py row DIR NAME   one JSON line from DIR/NAME.* (the files run.sh leaves)
    faults.py table DIR      the Markdown table of every DIR/*.row.json, in run order

Inputs of a fault NAME (all written by run.sh):
  NAME.acks      "time eth_src yiaddr chaddr lease_time" of every DHCPACK seen
                 on the client side (tshark on the dumpcap file)
  NAME.leases-a, NAME.leases-b
                 "ip mac origin state expires" of each router's lease table after
                 the recovery (NETCONF <get>)
  NAME.times     "key epoch" lines: fault (injected), heal (the fault undone:
                 restart, link up, rule removed, space freed, clock back,
                 SIGCONT), synced (both profiles synchronized again, polled
                 over NETCONF), load_end; serving (the router holding the VIP
                 at the end), clock_offset (the clock fault's offset as the
                 daemon itself reported it, s), offset_a (a's clock minus the
                 real one when a ran skewed from its start: its lease times
                 are on that clock, and are moved back by it here)
  NAME.perf      perfdhcp's report

Counts (each is a defect when above 0):
  lost     ACKed (address, MAC) pairs that the serving router's table lacks,
           or holds in another state than bound, or with an expiry earlier
           than the ACK's time + its lease time (SLACK s allowed): the
           client holds the address, the server no longer protects it
  dup      an address ACKed to a second MAC while the first one's lease
           (its ACK's time + option 51) was still valid, on the wire
  differ   addresses both tables hold for different MACs after the recovery
And, for the record: ACKed pairs the other router lacks (`lost on peer`),
addresses bound in one table only, the longest stretch without any DHCPACK from
the fault on (the outage), and the time from the heal until both profiles
were synchronized.
"""
import glob
import json
import os
import sys
from datetime import datetime


def read_times(path):
    out = {}
    for line in open(path):
        k, _, v = line.strip().partition(" ")
        if k:
            out[k] = v
    return out


SLACK = 5.0


def read_leases(path, offset=0.0):
    """{ip: (mac, state, expires epoch or None)}; `offset`: the router's
    clock minus the real one (its expiries are on its clock)"""
    t = {}
    if os.path.exists(path):
        for line in open(path):
            f = line.split()
            if len(f) >= 2:
                exp = None
                if len(f) >= 5:
                    exp = datetime.fromisoformat(f[4].replace("Z", "+00:00")).timestamp() - offset
                t[f[0]] = (f[1].lower(), f[3] if len(f) >= 4 else "bound", exp)
    return t


def kept(table, ip, mac, until):
    """Whether the table protects ip for mac until `until` (epoch);
    else why not."""
    e = table.get(ip)
    if e is None or e[0] != mac:
        return "missing"
    if e[1] != "bound":
        return e[1]
    if e[2] is not None and e[2] < until - SLACK:
        return "shortened"
    return None


def read_acks(path):
    acks = []
    for line in open(path):
        f = line.split()
        if len(f) >= 4:
            lt = int(f[4]) if len(f) > 4 and f[4].isdigit() else 0
            acks.append((float(f[0]), f[1].lower(), f[2], f[3].lower(), lt))
    acks.sort()
    return acks


def field(path, section, key):
    cur = ""
    for line in open(path):
        if "Statistics for:" in line:
            cur = line
        elif section in cur and key + ":" in line:
            return line.split(key + ":")[1].split()[0]
    return "-"


def row(d, name):
    p = os.path.join(d, name)
    times = read_times(p + ".times")
    acks = read_acks(p + ".acks")
    # a skewed router's offset must have been measured ("-": fails here)
    offsets = {"a": float(times.get("offset_a", 0)), "b": 0.0}
    tables = {r: read_leases(f"{p}.leases-{r}", offsets[r]) for r in "ab"}
    serving = times.get("serving", "a")
    peer = "b" if serving == "a" else "a"
    # each (address, MAC) pair must be protected until its last ACK's end
    until = {}
    for t, _, ip, mac, lt in acks:
        until[(ip, mac)] = max(until.get((ip, mac), 0), t + lt)
    pairs = set(until)

    def losses(table):
        out = {}
        for (ip, mac), u in sorted(until.items()):
            why = kept(table, ip, mac, u)
            if why:
                out.setdefault(why, []).append((ip, mac))
        return out

    lost = losses(tables[serving])
    lost_peer = losses(tables[peer])
    # two clients on one address while the first lease is valid
    holder = {}
    dups = []
    for t, src, ip, mac, lt in acks:
        h = holder.get(ip)
        if h and h[0] != mac and t < h[1]:
            dups.append((ip, h[0], mac, round(t, 3)))
        if not h or h[0] != mac or t + lt > h[1]:
            holder[ip] = (mac, t + lt)
    a, b = tables["a"], tables["b"]
    differ = sorted(ip for ip in a.keys() & b.keys()
                    if a[ip][0] != b[ip][0] and a[ip][1] == "bound" and b[ip][1] == "bound")
    # bound in one table, not bound (or absent) in the other (offers are
    # not replicated)
    bound = lambda t: {ip for ip, e in t.items() if e[1] == "bound"}  # noqa: E731
    only = len((bound(a) - bound(b)) | (bound(b) - bound(a)))
    fault = float(times["fault"])
    heal = float(times.get("heal", fault))
    end = float(times.get("load_end", acks[-1][0] if acks else fault))
    # the longest stretch without a DHCPACK from the fault to the load's end
    last, gap, resume = fault, 0.0, None
    for t, *_ in acks:
        if t < fault:
            continue
        if resume is None:
            resume = t - fault
        gap = max(gap, t - last)
        last = t
    gap = max(gap, end - last)
    synced = times.get("synced")
    by = {}
    for _, src, *_ in acks:
        by[src] = by.get(src, 0) + 1
    out = dict(name=name, acks=len(acks), pairs=len(pairs), by_src=by,
               before=sum(1 for x in acks if x[0] < fault),
               lost=sum(map(len, lost.values())), lost_peer=sum(map(len, lost_peer.values())),
               lost_why={k: len(v) for k, v in lost.items()},
               lost_peer_why={k: len(v) for k, v in lost_peer.items()}, dup=len(dups), differ=len(differ),
               only_one=only, table_a=len(a), table_b=len(b), serving=serving,
               outage=round(gap, 3), first_ack=None if resume is None else round(resume, 3),
               sync=None if not synced or synced == "-" else round(float(synced) - heal, 3),
               heal_after=round(heal - fault, 3),
               drops=field(p + ".perf", "REQUEST-ACK", "drops ratio"),
               rate=times.get("rate"), clock_offset=times.get("clock_offset"),
               offset_a=times.get("offset_a"),
               examples=dict(lost={k: v[:3] for k, v in lost.items()},
                             lost_peer={k: v[:3] for k, v in lost_peer.items()},
                             dup=dups[:5], differ=differ[:5]))
    return out


def table(d):
    rows = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, "*.row.json")), key=os.path.getmtime)]
    print("| fault | ACKs (before fault) | lost on the serving router | addresses held twice (wire) "
          "| tables differ after recovery | lost on the other router / in one table only "
          "| longest ACK gap from the fault (s) | heal → pair synchronized (s) | R-A drops % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    why = lambda d: "" if not d else " (" + ", ".join(f"{v} {k}" for k, v in sorted(d.items())) + ")"  # noqa: E731
    for r in rows:
        sync = "-" if r["sync"] is None else f'{r["sync"]:.1f}'
        print(f'| {r["name"]} | {r["acks"]} ({r["before"]}) | {r["lost"]}{why(r["lost_why"])} | {r["dup"]} '
              f'| {r["differ"]} | {r["lost_peer"]}{why(r["lost_peer_why"])} / {r["only_one"]} | {r["outage"]:.2f} | {sync} | {r["drops"]} |')


def main():
    if sys.argv[1] == "row":
        print(json.dumps(row(sys.argv[2], sys.argv[3])))
    elif sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""netconfd's copy of hotlease-dhcp-server, derived from the real module.

    netconfd-module.py yang/hotlease-dhcp-server.yang musts|none > copy.yang

yuma123 netconfd 2.13 cannot load the real modules (YANG 1.1 'modifier
invert-match'; the module imports hotlease-vrrp and hotlease-remote-backup,
which it cannot load either).  The copy keeps the namespace, prefix and the
whole configuration tree of the real module, with every type, range,
pattern, default, mandatory and max-elements, and drops:
  - the import of hotlease-vrrp / hotlease-remote-backup, the leaf
    remote-backup-profile (a leafref into them) and every 'must' that reads
    them (server-identifier-not-virtual-ip, remote-backup-profile service);
  - patterns with 'modifier' (the interface name '.' / '..' rule);
  - config false nodes, notifications, rpcs, descriptions;
and, with 'none', every other 'must' too.  With 'musts' netconfd evaluates
the per-pool rules with the same XPath text as hotleased, except the five
that compute a subnet with 'mod (4294967296 - A(mask))' (YUMA_WRONG below):
netconfd 2.13 evaluates those wrongly and refuses valid pools (a lone
gateway 10.0.0.1/255.255.255.0 fails gateway-outside-subnet), so they are
left out too.  netconfd then checks every rule that hotleased checks on the
benchmark's pools but those five.

A small YANG statement parser (quoted strings with '+', comments), enough
for our modules; the output is checked with yanglint by run.sh.
"""
import os
import re
import sys

def tokens(text):
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif c in "{};":
            yield c; i += 1
        elif c in "\"'":
            j = i + 1; buf = []
            while text[j] != c:
                if c == '"' and text[j] == "\\":
                    buf.append({"n": "\n", "t": "\t"}.get(text[j + 1], text[j + 1])); j += 2
                else:
                    buf.append(text[j]); j += 1
            yield ("str", "".join(buf)); i = j + 1
        elif c == "+":
            yield "+"; i += 1
        else:
            m = re.compile(r"[^\s{};\"']+").match(text, i)
            yield ("word", m.group(0)); i = m.end()

def parse(toks):
    toks = list(toks); pos = 0
    def stmts():
        nonlocal pos
        out = []
        while pos < len(toks) and toks[pos] != "}":
            kw = toks[pos][1]; pos += 1
            arg = None
            if toks[pos] not in ("{", ";"):
                parts = [toks[pos][1]]; pos += 1
                while toks[pos] == "+":
                    parts.append(toks[pos + 1][1]); pos += 2
                arg = "".join(parts)
            subs = []
            if toks[pos] == "{":
                pos += 1; subs = stmts(); pos += 1
            else:
                pos += 1
            out.append([kw, arg, subs])
        return out
    return stmts()

def quote(s):
    if "'" not in s:
        return "'" + s + "'"
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

def emit(stmts, ind=0):
    out = []
    for kw, arg, subs in stmts:
        head = " " * ind + kw + ("" if arg is None else " " + (arg if re.fullmatch(r"[\w:.\-/]+", arg) else quote(" ".join(arg.split()) if kw == "must" else arg)))
        if subs:
            out.append(head + " {"); out += emit(subs, ind + 2); out.append(" " * ind + "}")
        else:
            out.append(head + ";")
    return out

DROP_KW = {"description", "reference", "organization", "contact", "notification", "rpc", "units"}

def transform(stmts, keep_must):
    res = []
    for st in stmts:
        kw, arg, subs = st
        if kw in DROP_KW:
            continue
        if kw == "import" and arg not in ("ietf-inet-types", "ietf-yang-types"):
            continue
        if kw == "yang-version":
            st = [kw, "1", []]
        if kw == "modifier":
            return None  # drop the enclosing pattern
        if any(s[0] == "config" and s[1] == "false" for s in subs):
            continue
        if kw == "leaf" and arg == "remote-backup-profile":
            continue
        if kw == "must":
            tag = next((x[1] for x in subs if x[0] == "error-app-tag"), None)
            if not keep_must or "vrrp:" in arg or "rbk:" in arg or tag in DROP_TAGS:
                continue
        if kw == "revision":
            subs = []
        new = transform(subs, keep_must)
        if new is None:
            continue
        res.append([st[0], st[1], new])
    return res

if len(sys.argv) != 3 or sys.argv[2] not in ("musts", "none"):
    sys.exit("usage: netconfd-module.py MODULE.yang musts|none")
src, keep = sys.argv[1], sys.argv[2] == "musts"
# Rules netconfd 2.13 gets wrong (bench/netconf/run.sh checked each alone:
# with any of the first four netconfd refuses valid pools or accepts
# invalid ones; the fifth uses the same arithmetic).
YUMA_WRONG = {"gateway-outside-subnet", "section-outside-subnet", "network-host-bits-set",
              "static-bind-outside-subnet", "excluded-outside-subnet"}
# must rules left out by error-app-tag (NETCONFD_DROP_MUSTS="tag tag ..."
# replaces the list above, to try rules one by one)
DROP_TAGS = set(os.environ.get("NETCONFD_DROP_MUSTS", " ".join(sorted(YUMA_WRONG))).split())
tree = parse(tokens(open(src).read()))
print("\n".join(emit(transform(tree, keep))))

"""The docs a newcomer pastes (issue 14, item 5), checked against the daemon
so that they cannot drift apart:

* every bootstrap file in README.md (a ``toml`` fence, or a here-document
  that writes a ``.toml`` file) passes ``hotleased check`` as written;
* the README's hand-run example ("Running the daemon") runs as pasted: its
  shell block (namespace, veth, bootstrap file, check, daemon), then its
  ncclient script inside that namespace, then its clean-up block. Only the
  binary path, the namespace name and the scratch directory are swapped for
  the test's own. The VRRP group it configures becomes master inside the
  namespace, on the namespace's ``eth1``;
* every key the bootstrap file accepts is documented in the man page, under
  its table, and shown in the packaged bootstrap file. The keys come from the
  daemon itself: a file with an unknown key in a table makes
  ``hotleased check`` name every key that table accepts (serde's
  ``deny_unknown_fields``), so a key added to ``src/bootstrap.rs`` and not
  to the docs fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import HOTLEASED, ROOT

README = ROOT / "README.md"
MAN = ROOT / "packaging" / "hotleased.8"
PACKAGED_TOML = ROOT / "packaging" / "hotleased.toml"

# what the README's example names, swapped for the test's own
README_BIN = "target/debug/hotleased"
README_DIR = "/tmp/hl-demo"
README_NS = "hl-demo"


def fences(text: str) -> list[tuple[str, str, str]]:
    """(section heading, language, body) of every fenced block."""
    out = []
    section = ""
    lang = None
    body: list[str] = []
    for line in text.splitlines():
        if lang is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            m = re.match(r"^```(\w*)\s*$", line)
            if m:
                lang, body = m.group(1), []
        elif line.startswith("```"):
            out.append((section, lang, "\n".join(body) + "\n"))
            lang = None
        else:
            body.append(line)
    return out


def heredocs(script: str) -> list[tuple[str, str]]:
    """(target file, body) of each ``cat > FILE <<'EOF'`` in a shell block."""
    return [
        (m.group(1), m.group(3))
        for m in re.finditer(
            r"^cat > (\S+) <<'(\w+)'\n(.*?\n)\2$", script, flags=re.M | re.S
        )
    ]


def readme_bootstrap_files() -> list[tuple[str, str]]:
    found = []
    for section, lang, body in fences(README.read_text()):
        if lang == "toml":
            found.append((f"toml block in '{section}'", body))
        elif lang == "sh":
            for target, doc in heredocs(body):
                if target.endswith(".toml"):
                    found.append((f"{target} in '{section}'", doc))
    return found


def check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HOTLEASED, "check", "--config", str(path)],
        capture_output=True, text=True, timeout=30,
    )


# --------------------------------------------------------------------------
# the README's bootstrap files
# --------------------------------------------------------------------------


def test_readme_bootstrap_files_pass_check(binary, tmp_path):
    files = readme_bootstrap_files()
    assert files, "README.md shows no bootstrap file (toml block or here-document)"
    for i, (where, text) in enumerate(files):
        d = tmp_path / str(i)
        d.mkdir()
        f = d / "hotleased.toml"
        f.write_text(text.replace(README_DIR, str(d)))
        r = check(f)
        assert r.returncode == 0, f"README.md, {where}, fails as pasted:\n{r.stderr}"


# --------------------------------------------------------------------------
# the hand-run example, as pasted
# --------------------------------------------------------------------------


def running_the_daemon() -> tuple[str, str, str]:
    """The example's setup (shell), client (python) and clean-up (shell)."""
    blocks = [(lang, body) for section, lang, body in fences(README.read_text())
              if section == "Running the daemon"]
    assert blocks, "README.md has no 'Running the daemon' section with code"
    setup = [b for lang, b in blocks if lang == "sh" and f"ip netns add {README_NS}" in b]
    client = [b for lang, b in blocks if lang == "python"]
    cleanup = [b for lang, b in blocks if lang == "sh" and f"ip netns del {README_NS}" in b]
    assert len(setup) == 1, (
        f"'Running the daemon' must run the daemon in a namespace of its own "
        f"(one sh block with 'ip netns add {README_NS}'), found {len(setup)}"
    )
    assert len(client) == 1, f"'Running the daemon' needs one python block, found {len(client)}"
    assert len(cleanup) == 1, f"'Running the daemon' needs a clean-up block ('ip netns del {README_NS}')"
    return setup[0], client[0], cleanup[0]


def ns_exists(ns: str) -> bool:
    return Path(f"/run/netns/{ns}").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespace)")
def test_readme_example_runs_as_pasted(binary, tmp_path):
    setup, client, cleanup = running_the_daemon()
    ns = f"hlrd{uuid.uuid4().hex[:8]}"
    work = tmp_path / "demo"

    def ours(s: str) -> str:
        return (s.replace(README_BIN, HOTLEASED).replace(README_DIR, str(work))
                .replace(README_NS, ns))

    lines = setup.rstrip("\n").split("\n")
    start = lines[-1]
    assert start.startswith(f"ip netns exec {README_NS} {README_BIN} --config"), (
        f"the setup block should end by starting the daemon in {README_NS}: {start!r}"
    )
    daemon = None
    try:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", ours("\n".join(lines[:-1]))],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"README setup failed:\n{r.stdout}\n{r.stderr}"
        log = open(tmp_path / "daemon.log", "wb")
        daemon = subprocess.Popen(["bash", "-c", "exec " + ours(start)], cwd=ROOT,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        port = re.search(r'listen = "127\.0\.0\.1:(\d+)"', setup).group(1)
        deadline = time.monotonic() + 30
        while subprocess.run(["ip", "netns", "exec", ns, "bash", "-c",
                              f"</dev/tcp/127.0.0.1/{port}"],
                             capture_output=True).returncode != 0:
            assert daemon.poll() is None, (
                f"the README's daemon exited {daemon.returncode}:\n"
                f"{(tmp_path / 'daemon.log').read_text()}")
            assert time.monotonic() < deadline, "the README's daemon does not listen"
            time.sleep(0.1)

        # the ncclient script, inside the namespace as the README says
        script = tmp_path / "demo.py"
        script.write_text(client)
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(script)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"README's ncclient example failed:\n{r.stderr}"
        assert "<virtual-ip>10.1.1.1</virtual-ip>" in r.stdout, r.stdout

        # its VRRP group runs in the namespace: master, 10.1.1.1 on its eth1
        deadline = time.monotonic() + 15
        while "10.1.1.1/32" not in subprocess.run(
                ["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth1"],
                capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, (
                "the README's VRRP group never put 10.1.1.1 on the namespace's eth1:\n"
                f"{(tmp_path / 'daemon.log').read_text()}")
            time.sleep(0.2)

        daemon.terminate()
        assert daemon.wait(timeout=15) == 0
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", ours(cleanup)],
                           cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"README clean-up failed:\n{r.stderr}"
        assert not ns_exists(ns), "the README's clean-up leaves the namespace"
        assert not work.exists(), "the README's clean-up leaves its directory"
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# --------------------------------------------------------------------------
# every bootstrap key, from the daemon, in the man page and the packaged file
# --------------------------------------------------------------------------

UNKNOWN = "zz-not-a-key"


def accepted_keys(table: list[str], tmp_path: Path) -> list[str] | None:
    """The keys a table accepts, as the daemon names them when it meets an
    unknown one; None when ``table`` is not a table (nor array of tables)."""
    headers = [""] if not table else [f"[{'.'.join(table)}]\n", f"[[{'.'.join(table)}]]\n"]
    for header in headers:
        f = tmp_path / "probe.toml"
        f.write_text(f"{header}{UNKNOWN} = 1\n")
        err = check(f).stderr
        m = re.search(rf"unknown field `{UNKNOWN}`, expected (.*)", err)
        if m:
            return re.findall(r"`([^`]+)`", m.group(1))
    return None


def bootstrap_keys(tmp_path: Path) -> dict[str, list[str]]:
    """{table: [leaf keys]} of the whole bootstrap file ("" is the top)."""
    tables: dict[str, list[str]] = {}

    def walk(path: list[str]):
        keys = accepted_keys(path, tmp_path)
        assert keys is not None or path, f"no key list from the daemon:\n{check(tmp_path / 'probe.toml').stderr}"
        leaves = []
        for k in keys:
            if accepted_keys(path + [k], tmp_path) is not None:
                walk(path + [k])
            else:
                leaves.append(k)
        tables[".".join(path)] = leaves

    walk([])
    return tables


def man_text() -> str:
    return MAN.read_text().replace("\\-", "-")


def man_tables(man: str | None = None) -> dict[str, str]:
    """{table: the man page's text under its ``.B [table]`` headings}: in
    BOOTSTRAP FILE, or in a section of its own (each heading runs to the
    next table heading or section)."""
    man = man_text() if man is None else man
    assert re.search(r"^\.SH BOOTSTRAP FILE$", man, flags=re.M), "the man page has no BOOTSTRAP FILE section"
    tables: dict[str, str] = {}
    for section in re.split(r"^\.SH .*$", man, flags=re.M):
        parts = re.split(r"^\.B \[\[?([\w.-]+)\]\]?\s*$", section, flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            tables[name] = tables.get(name, "") + body
    return tables


def test_bootstrap_keys_probe_finds_the_known_ones(binary, tmp_path):
    # the probe itself: it must see the keys every file has, and tables
    keys = bootstrap_keys(tmp_path)
    assert "listen" in keys["netconf"] and "dir" in keys["storage"], keys
    assert "password-hash" in keys["netconf.user"], keys
    assert "vrrp" in keys and "realtime-priority" in keys["vrrp"], keys


def test_man_page_documents_every_bootstrap_key(binary, tmp_path):
    keys = bootstrap_keys(tmp_path)
    man = man_tables()
    missing = []
    for table, leaves in keys.items():
        if not table:
            assert not leaves, f"top-level keys outside a table: {leaves}"
            continue
        if table not in man:
            missing.append(f"[{table}] (all of it)")
            continue
        # a key is documented where it is a term: on a .B/.BR/.BI line
        terms = "\n".join(l for l in man[table].splitlines() if re.match(r"^\.(B|BR|BI)\s", l))
        for k in leaves:
            if not re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", terms):
                missing.append(f"{table}.{k}")
    assert not missing, (
        "bootstrap keys the daemon accepts but packaging/hotleased.8 does not document "
        f"(on a .B/.BR line after a '.B [table]' line): {missing}")


def test_packaged_bootstrap_file_shows_every_key(binary, tmp_path):
    keys = bootstrap_keys(tmp_path)
    text = PACKAGED_TOML.read_text()
    parts = re.split(r"^#?\s*\[\[?([\w.-]+)\]\]?\s*$", text, flags=re.M)
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        blocks[name] = blocks.get(name, "") + body
    missing = []
    for table, leaves in keys.items():
        for k in leaves:
            # set, or shown commented out with its default
            if not re.search(rf"^#?\s*{re.escape(k)}\s*=", blocks.get(table, ""), flags=re.M):
                missing.append(f"{table}.{k}")
    assert not missing, f"packaging/hotleased.toml does not show: {missing}"
    # and the packaged file itself is a working bootstrap file once a user exists
    f = tmp_path / "packaged.toml"
    hash_ = subprocess.run([HOTLEASED, "hash-password"], input="x\n", capture_output=True,
                           text=True, timeout=30).stdout.strip()
    f.write_text(
        text.replace("/var/lib/hotlease", str(tmp_path / "state"))
        + f'\n[[netconf.user]]\nname = "admin"\npassword-hash = "{hash_}"\n')
    r = check(f)
    assert r.returncode == 0, r.stderr


def test_man_page_documents_every_command_and_option(binary):
    # from the daemon's own --help (clap), so that a new command or option
    # must reach the man page
    out = subprocess.run([HOTLEASED, "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    commands = re.findall(r"^  ([a-z][\w-]*)  ", out.split("Commands:")[1].split("Options:")[0],
                          flags=re.M)
    options = re.findall(r"--([a-z][\w-]*)", out.split("Options:")[1])
    assert "check" in commands and "config" in options, out
    man = man_text()
    sections = {m.group(1): m.group(2) for m in re.finditer(
        r"^\.SH (\w[\w ]*)\n(.*?)(?=^\.SH |\Z)", man, flags=re.M | re.S)}
    missing = [f"command {c}" for c in commands
               if c != "help" and not re.search(rf"^\.BI? \"?{c}\b", sections.get("COMMANDS", ""), flags=re.M)]
    missing += [f"option --{o}" for o in options
                if not re.search(rf"--{o}\b", sections.get("OPTIONS", ""))]
    assert not missing, f"packaging/hotleased.8 does not document: {missing}"

//! Crash consistency of the lease store, in the style of ALICE and
//! CrashMonkey: record what the store asks of the file system while
//! clients are served, build every state a power cut can leave, start the
//! store on each and check what it finds.
//!
//! 1. **Record.** This test binary runs itself again under `strace -f`
//!    (the real `FileStore`, its compaction helper thread included, on a
//!    real file system). The child serves DHCP clients through the pure
//!    handler (grants, renewals, releases) and drives the store as the
//!    server's writer does: a group of requests per batch (`begin`,
//!    `append`, one `sync`), the ACKs after the sync, a compaction started
//!    now and then and polled after each sync, a restart half way; as
//!    root, a full disk after the restart (the storage is a 1 MiB tmpfs in
//!    the child's own mount namespace): four syncs fail with ENOSPC, their
//!    ACKs never leave, and the sync after the room returns writes their
//!    records. It marks what it appended (`C`), each sync that returned
//!    (`S`) and each ACK that left (`A`) with a write to a marker file, so
//!    the trace holds the file operations and the promises in one order.
//!    The child starts no process once the store is open: the recorder
//!    keeps one descriptor table for every process it traces.
//! 2. **Crash states.** At every point of the trace: each file holds what
//!    its last `fsync`/`fdatasync` made durable plus any subset of the
//!    writes and truncations since, applied in order (writes through the
//!    page cache reach the disk in any order, but a sector never goes back
//!    to an older content, so a subset in order covers the reorderings),
//!    and torn writes: some of the 512-byte sectors of a write only.
//!    Names (create, rename, unlink) are durable after an `fsync` of the
//!    directory; before it any prefix of them may be (a journal keeps
//!    their order). Small spaces are enumerated, large ones sampled with a
//!    fixed seed.
//! 3. **Check.** On each state `FileStore::load` must succeed; every
//!    address must hold a version at least as new as the latest one whose
//!    batch was synced (so every ACKed lease is there, in its latest
//!    synced version) and only versions that were written (nothing
//!    invented); the batch number never goes back; and the store works
//!    after the start (a new batch syncs and loads again).
//!
//! `HOTLEASE_CRASH_BATCHES` (default 60) and `HOTLEASE_CRASH_SAMPLES`
//! (random variants per crash point, default 12) make longer runs.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

mod common;
use common::Rng;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType};
use dhcproto::Encodable;
use hotlease::dhcp::config::Pool;
use hotlease::dhcp::handler::{decode, handle, Ctx, Globals};
use hotlease::dhcp::leases::{
    decode_record, encode_record, Change, FileStore, Lease, LeaseState, LeaseStore, LeaseTable,
    Origin,
};
use hotlease::dhcp::pool::PoolRt;

const CHILD: &str = "HOTLEASE_CRASH_CHILD";
const FULL: &str = "HOTLEASE_CRASH_FULL";
const SECTOR: u64 = 512;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn pool() -> Pool {
    Pool {
        name: "crash".into(),
        gateways: vec![ip("10.9.0.1")],
        mask: ip("255.255.255.0"),
        network: ip("10.9.0.0"),
        sections: vec![(ip("10.9.0.10"), ip("10.9.0.250"))],
        excluded: Vec::new(),
        shared_network: None,
        utilization_threshold: 90,
        dns_servers: vec![ip("10.9.0.53")],
        domain_name: None,
        lease_time_s: 600,
        renew_time_s: None,
        rebind_time_s: None,
        next_server: None,
        boot_file: None,
        options: BTreeMap::new(),
        server_identifier: Some(ip("10.9.0.1")),
        remote_backup_profile: None,
        static_binds: BTreeMap::new(),
    }
}

fn request(
    kind: MessageType,
    client: usize,
    ciaddr: Option<Ipv4Addr>,
    want: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut m = Message::default();
    m.set_chaddr(&[2, 0, 0, 0, (client >> 8) as u8, client as u8]);
    m.set_xid(client as u32);
    m.set_flags(Flags::default().set_broadcast());
    if let Some(c) = ciaddr {
        m.set_ciaddr(c);
    }
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    if let Some(w) = want {
        o.insert(DhcpOption::ServerIdentifier(ip("10.9.0.1")));
        o.insert(DhcpOption::RequestedIpAddress(w));
    }
    if kind == MessageType::Release {
        o.insert(DhcpOption::ServerIdentifier(ip("10.9.0.1")));
    }
    o.insert(DhcpOption::Hostname(format!("host-{client}")));
    m.to_vec().unwrap()
}

/// The recorded run: clients served, the store driven as the server's
/// writer drives it, every promise marked in `marks`.
/// `filler`: where a file fills the disk after the restart, for four
/// batches (the storage is a small tmpfs then): their syncs fail, as the
/// server's writer does the store keeps their records and the next sync
/// writes them; no ACK leaves meanwhile.
fn workload(dir: &Path, marks: &Path, batches: usize, filler: Option<&Path>) {
    let mut marks = std::fs::File::create(marks).unwrap();
    let mut mark = |line: String| marks.write_all(line.as_bytes()).unwrap();
    let pool = PoolRt::from(&pool());
    let g = Globals::default();
    let mut rng = Rng(0x005e_ed0f_c7a5);
    let clients = 64;
    let mut now = 1_800_000_000u64;
    let mut store = FileStore::new(dir);
    let mut table = LeaseTable::new();
    let mut bound: Vec<Option<Ipv4Addr>> = vec![None; clients];
    store.load().unwrap();
    let mut lsn = store.lsn() + 1;
    // a batch begun and not yet synced (the writer's `open`)
    let mut open = false;
    let mut failed = 0;
    let may_fail = |r: Result<_, hotlease::dhcp::leases::StoreError>| match r {
        Ok(_) => {}
        Err(e) => {
            assert!(filler.is_some(), "{e}");
            eprintln!("store: {e}");
        }
    };
    for b in 0..batches {
        if b == batches / 2 {
            // a clean restart: the load cuts the zeros written ahead
            while !matches!(store.compact_poll(), Ok(true) | Err(_)) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            store = FileStore::new(dir);
            table = LeaseTable::new();
            for l in store.load().unwrap() {
                table.insert(l);
            }
            lsn = store.lsn() + 1;
            if let Some(f) = filler {
                // the next sync needs a new stretch of zeros: 16 KiB of
                // room left (no `stat -f` here: a process started now
                // would share descriptor numbers with the recorded ones)
                let mut file = std::fs::File::create(f).unwrap();
                let block = vec![1u8; 4096];
                let mut len = 0u64;
                while file.write_all(&block).is_ok() {
                    len += 4096;
                }
                file.set_len(len - (16 << 10)).unwrap();
            }
        }
        now += 1 + rng.below(3) as u64;
        let ctx = Ctx {
            now,
            default_sid: ip("10.9.0.1"),
            globals: &g,
            ciaddr_on_link: false,
        };
        let mut changes = Vec::new();
        let mut acks = Vec::new();
        // a big batch now and then: it crosses the zeros written ahead
        let n = if b % 17 == 16 { 60 } else { 1 + rng.below(6) };
        for _ in 0..n {
            let c = rng.below(clients);
            let serve = |raw: Vec<u8>, table: &mut LeaseTable| {
                let m = decode(&raw).unwrap();
                handle(table, &pool, &ctx, &m, &raw)
            };
            let out = match bound[c] {
                None => {
                    let offer = serve(request(MessageType::Discover, c, None, None), &mut table);
                    let Some(r) = offer.reply else { continue };
                    let yi = decode(&r.bytes).unwrap().yiaddr();
                    serve(request(MessageType::Request, c, None, Some(yi)), &mut table)
                }
                Some(a) if rng.below(4) == 0 => {
                    bound[c] = None;
                    serve(request(MessageType::Release, c, Some(a), None), &mut table)
                }
                Some(a) => serve(request(MessageType::Request, c, Some(a), None), &mut table),
            };
            changes.extend(out.changes);
            if let Some(r) = out.reply {
                let yi = decode(&r.bytes).unwrap().yiaddr();
                match r.kind {
                    MessageType::Ack => {
                        bound[c] = Some(yi);
                        acks.push(table.get(yi).unwrap().clone());
                    }
                    _ => bound[c] = None,
                }
            }
        }
        let (gone, _) = table.expire(now);
        changes.extend(gone);
        if changes.is_empty() {
            continue;
        }
        if !open {
            store.begin(lsn);
            open = true;
        }
        for c in &changes {
            mark(format!("C {lsn} {}", encode_record(c)));
        }
        store.append(&changes).unwrap();
        if let Err(e) = store.sync() {
            // fail closed: no ACK; the records stay pending
            assert!(filler.is_some(), "{e}");
            failed += 1;
            if failed == 4 {
                std::fs::remove_file(filler.unwrap()).unwrap();
            }
            if b % 11 == 10 {
                may_fail(store.compact_start());
            }
            continue;
        }
        open = false;
        mark(format!("S {lsn}\n"));
        for a in acks {
            mark(format!("A {lsn} {}", encode_record(&Change::Upsert(a))));
        }
        lsn += 1;
        if b % 11 == 10 {
            may_fail(store.compact_start());
        }
        if b % 11 == 2 {
            // the helper runs at the lowest priority: on a fast disk it
            // may not be done for a long time, and a compaction is only
            // renamed into place once it is; batches were synced meanwhile
            while !matches!(store.compact_poll(), Ok(true) | Err(_)) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        may_fail(store.compact_poll().map(|_| ()));
    }
    assert!(filler.is_none() || failed >= 4, "the disk filled up");
    while !matches!(store.compact_poll(), Ok(true) | Err(_)) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A data operation on one file.
#[derive(Debug, Clone)]
enum DataOp {
    Write { off: u64, data: Vec<u8> },
    Truncate(u64),
}

/// A change of the store directory's names.
#[derive(Debug, Clone)]
enum NsOp {
    Create(String, usize),
    Rename(String, String),
    Unlink(String),
    Link(String, String),
}

/// A promise the workload made, as marked.
#[derive(Debug, Clone)]
enum Mark {
    Appended(u64, Change),
    Synced(u64),
    Acked(Lease),
}

#[derive(Debug, Clone)]
enum Ev {
    Data(usize, DataOp),
    Sync(usize),
    Ns(NsOp),
    DirSync,
    Mark(Mark),
}

/// Decode a C string as strace prints it with `-xx`.
fn unquote(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                    i += 4;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                }
                b'v' => {
                    out.push(11);
                    i += 2;
                }
                b'f' => {
                    out.push(12);
                    i += 2;
                }
                c if c.is_ascii_digit() => {
                    let mut j = i + 1;
                    let mut v = 0u32;
                    while j < b.len() && j < i + 4 && b[j].is_ascii_digit() {
                        v = v * 8 + u32::from(b[j] - b'0');
                        j += 1;
                    }
                    out.push(v as u8);
                    i = j;
                }
                c => {
                    out.push(c);
                    i += 2;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The arguments of a system call line (`name(a, b, ...) = ret`), strings
/// decoded, and its return value.
fn split_call(line: &str) -> Option<(String, Vec<String>, i64)> {
    let open = line.find('(')?;
    let name = line[..open].trim().to_string();
    let b = line.as_bytes();
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                cur.push('"');
                cur.push_str(&line[start..j]);
                i = j + 1;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' if depth == 0 => {
                args.push(cur.trim().to_string());
                let rest = &line[i + 1..];
                let ret = rest.split('=').nth(1)?.split_whitespace().next()?;
                return Some((name, args, ret.parse().ok()?));
            }
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                args.push(cur.trim().to_string());
                cur.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        cur.push(b[i] as char);
        i += 1;
    }
    None
}

fn string_arg(a: &str) -> Option<Vec<u8>> {
    a.strip_prefix('"')
        .map(|s| unquote(s.trim_end_matches("...")))
}

#[derive(Debug, Clone, Copy)]
enum Target {
    File(usize),
    Dir,
    Marks,
}

/// Turn an strace log into events on inodes of the store directory.
fn parse_trace(text: &str, dir: &Path, marks: &Path) -> Vec<Ev> {
    let dir_s = dir.to_str().unwrap().to_string();
    let marks_s = marks.to_str().unwrap().to_string();
    let name_of = |p: &[u8]| -> Option<String> {
        let p = String::from_utf8(p.to_vec()).ok()?;
        p.strip_prefix(&format!("{dir_s}/")).map(str::to_string)
    };
    let mut evs = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut inodes = 0usize;
    let mut fds: HashMap<i64, (Target, u64)> = HashMap::new();
    let mut unfinished: HashMap<String, String> = HashMap::new();
    for raw in text.lines() {
        let (pid, rest) = raw.split_once(' ').unwrap();
        let rest = rest.trim_start();
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid.to_string(), head.to_string());
            continue;
        } else if rest.starts_with("<... ") {
            let head = unfinished.remove(pid).expect("resumed call was started");
            let tail = rest.split_once("resumed>").unwrap().1;
            format!("{head}{tail}")
        } else {
            rest.to_string()
        };
        let Some((name, args, ret)) = split_call(&line) else {
            continue;
        };
        if ret < 0 {
            continue;
        }
        let fd = |i: usize| args.get(i).and_then(|a| a.parse::<i64>().ok());
        match name.as_str() {
            "openat" | "open" => {
                let (p, flags) = if name == "openat" {
                    (&args[1], &args[2])
                } else {
                    (&args[0], &args[1])
                };
                let p = string_arg(p).unwrap();
                let ps = String::from_utf8_lossy(&p).to_string();
                let target = if ps == dir_s {
                    Target::Dir
                } else if ps == marks_s {
                    Target::Marks
                } else if let Some(n) = name_of(&p) {
                    let ino = match names.get(&n) {
                        Some(i) => *i,
                        None => {
                            assert!(flags.contains("O_CREAT"), "{line}");
                            let i = inodes;
                            inodes += 1;
                            names.insert(n.clone(), i);
                            evs.push(Ev::Ns(NsOp::Create(n, i)));
                            i
                        }
                    };
                    if flags.contains("O_TRUNC") {
                        evs.push(Ev::Data(ino, DataOp::Truncate(0)));
                    }
                    Target::File(ino)
                } else {
                    continue;
                };
                fds.insert(ret, (target, 0));
            }
            "close" => {
                fds.remove(&fd(0).unwrap());
            }
            "write" | "pwrite64" => {
                let Some((t, off)) = fds.get_mut(&fd(0).unwrap()) else {
                    continue;
                };
                let mut data = string_arg(&args[1]).unwrap();
                assert!(
                    data.len() as i64 >= ret,
                    "strace cut a write short (-s): {line:.100}"
                );
                data.truncate(ret as usize);
                let at = if name == "pwrite64" {
                    args[3].parse().unwrap()
                } else {
                    *off += ret as u64;
                    *off - ret as u64
                };
                match *t {
                    Target::File(ino) => evs.push(Ev::Data(ino, DataOp::Write { off: at, data })),
                    Target::Marks => {
                        let s = String::from_utf8(data).unwrap();
                        let (kind, rest) = s.split_once(' ').unwrap();
                        let (lsn, rec) = rest.split_once(' ').unwrap_or((rest.trim(), ""));
                        let lsn: u64 = lsn.trim().parse().unwrap();
                        let m = match kind {
                            "C" => Mark::Appended(lsn, decode_record(rec.trim_end()).unwrap()),
                            "S" => Mark::Synced(lsn),
                            "A" => match decode_record(rec.trim_end()).unwrap() {
                                Change::Upsert(l) => Mark::Acked(l),
                                c => panic!("ACK of {c:?}"),
                            },
                            k => panic!("mark {k}"),
                        };
                        evs.push(Ev::Mark(m));
                    }
                    Target::Dir => panic!("write to a directory"),
                }
            }
            "fsync" | "fdatasync" => match fds.get(&fd(0).unwrap()) {
                Some((Target::File(ino), _)) => evs.push(Ev::Sync(*ino)),
                Some((Target::Dir, _)) => evs.push(Ev::DirSync),
                _ => {}
            },
            "ftruncate" => {
                if let Some((Target::File(ino), _)) = fds.get(&fd(0).unwrap()) {
                    evs.push(Ev::Data(*ino, DataOp::Truncate(args[1].parse().unwrap())));
                }
            }
            "rename" | "renameat" | "renameat2" | "link" | "linkat" => {
                let (a, b) = if name.ends_with("at") || name.ends_with("at2") {
                    (&args[1], &args[3])
                } else {
                    (&args[0], &args[1])
                };
                let (Some(a), Some(b)) = (
                    name_of(&string_arg(a).unwrap()),
                    name_of(&string_arg(b).unwrap()),
                ) else {
                    continue;
                };
                let ino = names[&a];
                if name.starts_with("rename") {
                    names.remove(&a);
                    evs.push(Ev::Ns(NsOp::Rename(a, b.clone())));
                } else {
                    evs.push(Ev::Ns(NsOp::Link(a, b.clone())));
                }
                names.insert(b, ino);
            }
            "unlink" | "unlinkat" => {
                let a = if name == "unlinkat" {
                    &args[1]
                } else {
                    &args[0]
                };
                if let Some(n) = name_of(&string_arg(a).unwrap()) {
                    names.remove(&n);
                    evs.push(Ev::Ns(NsOp::Unlink(n)));
                }
            }
            _ => {}
        }
    }
    evs
}

fn apply_ns(names: &mut BTreeMap<String, usize>, op: &NsOp) {
    match op {
        NsOp::Create(n, i) => {
            names.insert(n.clone(), *i);
        }
        NsOp::Rename(a, b) => {
            if let Some(i) = names.remove(a) {
                names.insert(b.clone(), i);
            }
        }
        NsOp::Unlink(n) => {
            names.remove(n);
        }
        NsOp::Link(a, b) => {
            if let Some(i) = names.get(a).copied() {
                names.insert(b.clone(), i);
            }
        }
    }
}

/// Apply `op` to `file`; for a write, only the sectors `keep` says.
fn apply_data(file: &mut Vec<u8>, op: &DataOp, keep: &dyn Fn(usize) -> bool) {
    match op {
        DataOp::Truncate(n) => file.resize(*n as usize, 0),
        DataOp::Write { off, data } => {
            for (k, (a, b)) in sectors(*off, data.len()).into_iter().enumerate() {
                if !keep(k) {
                    continue;
                }
                let (a, b) = (a as usize, b as usize);
                if file.len() < b {
                    file.resize(b, 0);
                }
                let o = *off as usize;
                file[a..b].copy_from_slice(&data[a - o..b - o]);
            }
        }
    }
}

/// The 512-byte-aligned pieces of a write at `off` of `len` bytes.
fn sectors(off: u64, len: usize) -> Vec<(u64, u64)> {
    let end = off + len as u64;
    let mut out = Vec::new();
    let mut a = off;
    while a < end {
        let b = ((a / SECTOR) + 1) * SECTOR;
        out.push((a, b.min(end)));
        a = b.min(end);
    }
    out
}

/// Which pending data operations a crash state keeps: per operation, none,
/// all, or some sectors of a write.
#[derive(Debug, Clone)]
enum Keep {
    None,
    All,
    Sectors(Vec<bool>),
}

#[derive(Default)]
struct Inode {
    durable: Vec<u8>,
    pending: Vec<DataOp>,
}

/// What the store found on a crash state.
#[derive(Debug, Clone)]
struct Found {
    leases: HashMap<Ipv4Addr, Lease>,
    lsn: u64,
    problem: Option<String>,
}

/// Start the store on the files `state` in `scratch`, and check it goes on.
fn start_on(scratch: &Path, state: &BTreeMap<String, Vec<u8>>) -> Found {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).unwrap();
    for (n, b) in state {
        std::fs::write(scratch.join(n), b).unwrap();
    }
    let mut s = FileStore::new(scratch);
    let leases = match s.load() {
        Ok(l) => l,
        Err(e) => {
            return Found {
                leases: HashMap::new(),
                lsn: 0,
                problem: Some(format!("load failed: {e}")),
            }
        }
    };
    let lsn = s.lsn();
    let leases: HashMap<Ipv4Addr, Lease> = leases.into_iter().map(|l| (l.ip, l)).collect();
    // the store must go on: a new batch, synced, loads with the rest
    let probe = Lease {
        ip: ip("10.99.0.1"),
        pool: "probe".into(),
        hw: vec![2, 9, 9, 9, 9, 9],
        client_id: None,
        hostname: None,
        state: LeaseState::Bound,
        lifetime: 60,
        expires: 1,
        origin: Origin::Local,
    };
    s.begin(lsn + 2);
    let mut problem = None;
    if let Err(e) = s
        .append(&[Change::Upsert(probe.clone())])
        .and_then(|()| s.sync())
    {
        problem = Some(format!("sync after start failed: {e}"));
    } else {
        let again: HashMap<Ipv4Addr, Lease> = FileStore::new(scratch)
            .load()
            .map(|v| v.into_iter().map(|l| (l.ip, l)).collect())
            .unwrap_or_default();
        let mut want = leases.clone();
        want.insert(probe.ip, probe);
        if again != want {
            problem = Some("the leases after a restart on the restarted store differ".into());
        }
    }
    Found {
        leases,
        lsn,
        problem,
    }
}

/// The figures of a checker run.
#[derive(Debug, Default)]
struct Tally {
    points: usize,
    states: usize,
    distinct: usize,
    torn: usize,
    acked: usize,
    acked_lost: usize,
    lost: usize,
    invented: usize,
    failures: Vec<String>,
}

/// What must hold at a crash point, from the marks before it.
#[derive(Default, Clone)]
struct Promises {
    /// Per address, its versions in append order (None: deleted), with
    /// the batch of each.
    versions: HashMap<Ipv4Addr, Vec<(u64, Option<Lease>)>>,
    synced: u64,
    acked: HashMap<Ipv4Addr, Lease>,
}

impl Promises {
    fn check(&self, f: &Found, t: &mut Tally, what: &str) {
        if t.failures.len() >= 40 {
            t.failures.truncate(40);
        }
        if let Some(p) = &f.problem {
            t.failures.push(format!("{what}: {p}"));
        }
        if f.lsn < self.synced {
            t.failures.push(format!(
                "{what}: batch number {} went back below {}",
                f.lsn, self.synced
            ));
        }
        for (ip, vs) in &self.versions {
            let found = f.leases.get(ip);
            // the oldest version that may be found: the last synced one
            let need = vs.iter().rposition(|(lsn, _)| *lsn <= self.synced);
            let ok = vs
                .iter()
                .enumerate()
                .any(|(i, (_, v))| need.is_none_or(|n| i >= n) && v.as_ref() == found)
                || (need.is_none() && found.is_none());
            if !ok {
                if found.is_some() && !vs.iter().any(|(_, v)| v.as_ref() == found) {
                    t.invented += 1;
                } else {
                    t.lost += 1;
                }
                if t.failures.len() < 20 {
                    t.failures.push(format!(
                        "{what}: {ip} found {found:?}, last synced {:?}",
                        need.map(|n| &vs[n])
                    ));
                }
            }
        }
        for ip in f.leases.keys() {
            if !self.versions.contains_key(ip) {
                t.invented += 1;
                t.failures.push(format!("{what}: {ip} was never written"));
            }
        }
        for (ip, l) in &self.acked {
            // the version ACKed, or one written after it
            let vs = &self.versions[ip];
            let at = vs.iter().rposition(|(_, v)| v.as_ref() == Some(l)).unwrap();
            if !vs[at..].iter().any(|(_, v)| v.as_ref() == f.leases.get(ip)) {
                t.acked_lost += 1;
            }
        }
    }
}

fn pick_subsets(n: usize, rng: &mut Rng, samples: usize) -> Vec<Vec<bool>> {
    if n <= 6 {
        return (0..1u32 << n)
            .map(|m| (0..n).map(|i| m >> i & 1 == 1).collect())
            .collect();
    }
    let mut out: Vec<Vec<bool>> = (0..=n).map(|p| (0..n).map(|i| i < p).collect()).collect();
    for _ in 0..samples {
        out.push((0..n).map(|_| rng.below(2) == 1).collect());
    }
    out
}

fn check_trace(evs: &[Ev], scratch: &Path, samples: usize) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng(0xc0ff_ee00_d15c);
    let mut inodes: HashMap<usize, Inode> = HashMap::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut ns_pending: Vec<NsOp> = Vec::new();
    let mut promises = Promises::default();
    let mut seen: HashMap<u64, Found> = HashMap::new();
    for (i, ev) in evs.iter().enumerate() {
        match ev {
            Ev::Data(ino, op) => inodes.entry(*ino).or_default().pending.push(op.clone()),
            Ev::Sync(ino) => {
                let f = inodes.entry(*ino).or_default();
                for op in std::mem::take(&mut f.pending) {
                    apply_data(&mut f.durable, &op, &|_| true);
                }
            }
            Ev::Ns(op) => ns_pending.push(op.clone()),
            Ev::DirSync => {
                for op in ns_pending.drain(..) {
                    apply_ns(&mut names, &op);
                }
            }
            Ev::Mark(m) => {
                match m {
                    Mark::Appended(lsn, c) => {
                        let (ip, v) = match c {
                            Change::Upsert(l) => (l.ip, Some(l.clone())),
                            Change::Delete(ip) => (*ip, None),
                        };
                        promises.versions.entry(ip).or_default().push((*lsn, v));
                    }
                    Mark::Synced(lsn) => promises.synced = *lsn,
                    Mark::Acked(l) => {
                        promises.acked.insert(l.ip, l.clone());
                        t.acked += 1;
                    }
                }
                // appends change nothing on disk; a sync or an ACK changes
                // what must be found: check this point too
                if matches!(m, Mark::Appended(..)) {
                    continue;
                }
            }
        }
        t.points += 1;
        for p in 0..=ns_pending.len() {
            let mut ns = names.clone();
            for op in &ns_pending[..p] {
                apply_ns(&mut ns, op);
            }
            // the pending operations of the files named
            let mut ops: Vec<(usize, usize)> = Vec::new();
            let mut inos: Vec<usize> = ns.values().copied().collect();
            inos.sort_unstable();
            inos.dedup();
            for ino in &inos {
                if let Some(f) = inodes.get(ino) {
                    ops.extend((0..f.pending.len()).map(|k| (*ino, k)));
                }
            }
            let mut variants: Vec<Vec<Keep>> = pick_subsets(ops.len(), &mut rng, samples)
                .into_iter()
                .map(|s| {
                    s.into_iter()
                        .map(|b| if b { Keep::All } else { Keep::None })
                        .collect()
                })
                .collect();
            let mut torn = 0;
            // torn writes: a write cut at a sector boundary with the writes
            // before it kept; then sectors chosen at random across writes
            for (k, (ino, j)) in ops.iter().enumerate() {
                if let DataOp::Write { off, data } = &inodes[ino].pending[*j] {
                    let n = sectors(*off, data.len()).len();
                    if n < 2 {
                        continue;
                    }
                    let cuts: Vec<usize> = if n <= 8 {
                        (1..n).collect()
                    } else {
                        vec![1, n / 2, n - 1, 1 + rng.below(n - 1)]
                    };
                    for c in cuts {
                        let mut v: Vec<Keep> = (0..ops.len())
                            .map(|x| if x < k { Keep::All } else { Keep::None })
                            .collect();
                        v[k] = Keep::Sectors((0..n).map(|s| s < c).collect());
                        // and the tail of the write without its head
                        let mut v2 = v.clone();
                        variants.push(v);
                        v2[k] = Keep::Sectors((0..n).map(|s| s >= c).collect());
                        variants.push(v2);
                        torn += 2;
                    }
                }
            }
            for _ in 0..samples / 2 {
                let v = ops
                    .iter()
                    .map(|(ino, j)| match &inodes[ino].pending[*j] {
                        DataOp::Write { off, data } => Keep::Sectors(
                            (0..sectors(*off, data.len()).len())
                                .map(|_| rng.below(2) == 1)
                                .collect(),
                        ),
                        DataOp::Truncate(_) => {
                            if rng.below(2) == 1 {
                                Keep::All
                            } else {
                                Keep::None
                            }
                        }
                    })
                    .collect();
                variants.push(v);
                torn += 1;
            }
            t.torn += torn;
            for v in variants {
                let mut files: HashMap<usize, Vec<u8>> = inos
                    .iter()
                    .map(|ino| {
                        (
                            *ino,
                            inodes
                                .get(ino)
                                .map(|f| f.durable.clone())
                                .unwrap_or_default(),
                        )
                    })
                    .collect();
                for ((ino, j), keep) in ops.iter().zip(&v) {
                    let op = &inodes[ino].pending[*j];
                    let file = files.get_mut(ino).unwrap();
                    match keep {
                        Keep::None => {}
                        Keep::All => apply_data(file, op, &|_| true),
                        Keep::Sectors(s) => apply_data(file, op, &|x| s[x]),
                    }
                }
                let state: BTreeMap<String, Vec<u8>> = ns
                    .iter()
                    .map(|(n, ino)| (n.clone(), files[ino].clone()))
                    .collect();
                let key = state_key(&state);
                t.states += 1;
                let found = seen.entry(key).or_insert_with(|| {
                    t.distinct += 1;
                    start_on(scratch, &state)
                });
                let what = format!(
                    "event {i} ({}), names {p}/{}",
                    match ev {
                        Ev::Data(ino, DataOp::Write { off, data }) => {
                            format!("write {} at {off} to file {ino}", data.len())
                        }
                        e => format!("{e:?}").chars().take(80).collect(),
                    },
                    ns_pending.len()
                );
                promises.check(found, &mut t, &what);
            }
        }
    }
    t
}

/// A key for a crash state: names, sizes and the contents up to the
/// zeros written ahead (hashing those in a debug build costs more than
/// the check).
fn state_key(state: &BTreeMap<String, Vec<u8>>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (n, b) in state {
        // whole zero blocks first: a byte loop is slow in a debug build
        let zero = [0u8; 4096];
        let mut used = b.len();
        while used >= zero.len() && b[used - zero.len()..used] == zero {
            used -= zero.len();
        }
        let used = b[..used].iter().rposition(|x| *x != 0).map_or(0, |i| i + 1);
        (n, b.len(), &b[..used]).hash(&mut h);
    }
    h.finish()
}

/// The recorded run, then every crash state of it.
#[test]
fn every_crash_state_keeps_every_synced_lease() {
    let batches = knob("HOTLEASE_CRASH_BATCHES", 60);
    if let Ok(d) = std::env::var(CHILD) {
        let d = PathBuf::from(d);
        if std::env::var_os(FULL).is_some() {
            // a 1 MiB tmpfs in the private mount namespace `unshare`
            // gave this process: gone with it
            let fs = d.join("fs");
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
                .arg(&fs)
                .status()
                .unwrap();
            assert!(ok.success(), "mount tmpfs");
            std::fs::create_dir(fs.join("store")).unwrap();
            workload(
                &fs.join("store"),
                &d.join("marks"),
                batches,
                Some(&fs.join("filler")),
            );
        } else {
            workload(&d.join("store"), &d.join("marks"), batches, None);
        }
        return;
    }
    let samples = knob("HOTLEASE_CRASH_SAMPLES", 12);
    let work = tempfile::tempdir().unwrap();
    // as root the recorded run also fills its disk (a tmpfs in a mount
    // namespace of its own) for a while
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0);
    let dir = if root {
        std::fs::create_dir(work.path().join("fs")).unwrap();
        work.path().join("fs").join("store")
    } else {
        eprintln!("not root: the recorded run's disk does not fill up");
        let d = work.path().join("store");
        std::fs::create_dir(&d).unwrap();
        d
    };
    let marks = work.path().join("marks");
    let trace = work.path().join("trace");
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-xx", "-s", "16777216", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=openat,open,close,write,pwrite64,fsync,fdatasync,ftruncate,\
             rename,renameat,renameat2,link,linkat,unlink,unlinkat",
        ]);
    if root {
        cmd.args(["unshare", "--mount", "--propagation", "private"])
            .env(FULL, "1");
    }
    let out = cmd
        .arg(std::env::current_exe().unwrap())
        .args([
            "every_crash_state_keeps_every_synced_lease",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, work.path())
        .output()
        .expect("strace runs (the package strace is needed)");
    assert!(
        out.status.success(),
        "recorded run: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let enospc = text.lines().filter(|l| l.contains("= -1 ENOSPC")).count();
    if root {
        assert!(enospc > 0, "the recorded run's disk filled up");
    }
    let evs = parse_trace(&text, &dir, &marks);
    let count = |f: &dyn Fn(&Ev) -> bool| evs.iter().filter(|e| f(e)).count();
    let syncs = count(&|e| matches!(e, Ev::Sync(_)));
    let renames = count(&|e| matches!(e, Ev::Ns(NsOp::Rename(..))));
    let dir_syncs = count(&|e| matches!(e, Ev::DirSync));
    // the states are checked on a tmpfs where there is one: their syncs
    // cost nothing there, and what they make durable is not in question
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let started = std::time::Instant::now();
    let t = check_trace(&evs, scratch.path(), samples);
    eprintln!("checked in {:?}", started.elapsed());
    eprintln!(
        "crash states: {} checked ({} distinct, {} torn) at {} crash points; \
         trace: {} events, {syncs} file syncs, {renames} renames, {dir_syncs} directory syncs, \
         {} ACKs, {enospc} calls failed with ENOSPC; ACKed leases lost {}, synced versions lost {}, invented {}",
        t.states,
        t.distinct,
        t.torn,
        t.points,
        evs.len(),
        t.acked,
        t.acked_lost,
        t.lost,
        t.invented
    );
    // the recording must have exercised what it claims to
    assert!(t.acked > batches, "ACKs {}", t.acked);
    assert!(renames >= 2, "compactions renamed into place: {renames}");
    assert!(syncs > batches / 2);
    assert!(
        t.failures.is_empty(),
        "{} problems:\n{}",
        t.failures.len(),
        t.failures.join("\n")
    );
    assert_eq!((t.acked_lost, t.lost, t.invented), (0, 0, 0));
}

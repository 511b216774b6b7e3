//! The operations the northbound executes, as typed values: what a
//! NETCONF `<rpc>` asks of the datastores once `netconf/rpc.rs` has decoded
//! it (RFC 6241 §7, RFC 6243 with-defaults, RFC 6022 get-schema, the
//! remote-backup `batch-backup` rpc), and what they answer. The
//! configuration and filter payloads stay `xml::Element`s, interpreted
//! against the YANG schema by `edit` and `filter`.

use crate::xml::Element;
use crate::yang::WithDefaults;

/// Namespace of ietf-netconf-monitoring (`<get-schema>` and its reply).
pub const MONITORING_NS: &str = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring";

/// A configuration datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Datastore {
    Running,
    Candidate,
    Startup,
}

impl Datastore {
    pub fn name(self) -> &'static str {
        match self {
            Datastore::Running => "running",
            Datastore::Candidate => "candidate",
            Datastore::Startup => "startup",
        }
    }
}

/// Source of a copy-config or validate.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Datastore(Datastore),
    /// Inline `<config>` element.
    Config(Element),
}

/// A `<filter>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// The `<filter>` element; its children are the filter's top nodes.
    Subtree(Element),
    /// XPath 1.0 `select` with the namespace prefixes in scope.
    XPath {
        select: String,
        namespaces: Vec<(String, String)>,
    },
}

/// edit-config `operation` values (RFC 6241 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditOp {
    Merge,
    Replace,
    Create,
    Delete,
    Remove,
    None,
}

impl EditOp {
    pub fn parse(s: &str) -> Option<EditOp> {
        Some(match s {
            "merge" => EditOp::Merge,
            "replace" => EditOp::Replace,
            "create" => EditOp::Create,
            "delete" => EditOp::Delete,
            "remove" => EditOp::Remove,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestOption {
    TestThenSet,
    Set,
    TestOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOption {
    StopOnError,
    ContinueOnError,
    RollbackOnError,
}

/// Parameters of `<commit>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commit {
    pub confirmed: bool,
    /// Seconds; RFC default 600.
    pub confirm_timeout: u32,
    pub persist: Option<String>,
    pub persist_id: Option<String>,
}

/// One decoded operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Get {
        filter: Option<Filter>,
        with_defaults: WithDefaults,
    },
    GetConfig {
        source: Datastore,
        filter: Option<Filter>,
        with_defaults: WithDefaults,
    },
    EditConfig {
        target: Datastore,
        default_operation: EditOp,
        test_option: TestOption,
        error_option: ErrorOption,
        config: Element,
    },
    CopyConfig {
        target: Datastore,
        source: Source,
    },
    DeleteConfig {
        target: Datastore,
    },
    Lock {
        target: Datastore,
    },
    Unlock {
        target: Datastore,
    },
    CloseSession,
    KillSession {
        session_id: u32,
    },
    Commit(Commit),
    CancelCommit {
        persist_id: Option<String>,
    },
    DiscardChanges,
    Validate {
        source: Source,
    },
    GetSchema {
        identifier: String,
        version: Option<String>,
        format: Option<String>,
    },
    BatchBackup {
        service: String,
        service_type: String,
    },
    /// RFC 5277 create-subscription: carried out by the session itself
    /// (it changes what the session sends), with the notification bus.
    CreateSubscription(super::notify::SubscribeRequest),
}

impl Operation {
    /// The module and name of the RPC (RFC 8341 exec rules name them).
    pub fn rpc_name(&self) -> (&'static str, &'static str) {
        let nc = "ietf-netconf";
        match self {
            Operation::Get { .. } => (nc, "get"),
            Operation::GetConfig { .. } => (nc, "get-config"),
            Operation::EditConfig { .. } => (nc, "edit-config"),
            Operation::CopyConfig { .. } => (nc, "copy-config"),
            Operation::DeleteConfig { .. } => (nc, "delete-config"),
            Operation::Lock { .. } => (nc, "lock"),
            Operation::Unlock { .. } => (nc, "unlock"),
            Operation::CloseSession => (nc, "close-session"),
            Operation::KillSession { .. } => (nc, "kill-session"),
            Operation::Commit(_) => (nc, "commit"),
            Operation::CancelCommit { .. } => (nc, "cancel-commit"),
            Operation::DiscardChanges => (nc, "discard-changes"),
            Operation::Validate { .. } => (nc, "validate"),
            Operation::GetSchema { .. } => ("ietf-netconf-monitoring", "get-schema"),
            Operation::BatchBackup { .. } => ("hotlease-remote-backup", "batch-backup"),
            Operation::CreateSubscription(_) => ("notifications", "create-subscription"),
        }
    }
}

/// What an operation returns on success.
#[derive(Debug)]
pub enum Reply {
    Ok,
    /// Inner content of `<data>` (already serialised XML).
    Data(String),
    /// A complete element placed in the reply as is (get-schema, RPC output).
    Raw(String),
    /// Inner content of `<data>` written in pieces as it is produced (a
    /// whole lease table): the session writes it into its output with the
    /// output's back-pressure, never holding the whole of it.
    Stream(Box<StreamedData>),
}

/// The content of a streamed `<data>`: `head`, the entries (inside
/// `open` … `close`, when there is at least one), `tail`.
#[derive(Debug)]
pub struct StreamedData {
    head: String,
    open: String,
    entries: Box<dyn crate::config::Entries>,
    close: String,
    tail: String,
    /// The first piece of entries, taken before anything is written (an
    /// empty reply is `<data/>`, as the usual path writes it).
    first: Option<String>,
    peeked: bool,
    /// Whether an entry was written (the wrapper is then closed).
    had: bool,
    step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Head,
    Entries,
    Done,
}

impl StreamedData {
    pub fn new(
        head: String,
        open: String,
        entries: Box<dyn crate::config::Entries>,
        close: String,
        tail: String,
    ) -> StreamedData {
        StreamedData {
            head,
            open,
            entries,
            close,
            tail,
            first: None,
            peeked: false,
            had: false,
            step: Step::Head,
        }
    }

    /// Whether there is nothing to write (before the first piece).
    pub fn is_empty(&mut self) -> bool {
        self.head.is_empty() && self.tail.is_empty() && self.peek().is_none()
    }

    fn peek(&mut self) -> Option<&String> {
        if !self.peeked {
            self.peeked = true;
            let mut p = String::new();
            if self.entries.next_piece(&mut p) {
                self.first = Some(p);
            }
        }
        self.first.as_ref()
    }

    /// The next piece of the content into `out` (cleared first); false
    /// when all is written. A piece is the head, at most
    /// [`crate::config::PIECE_ENTRIES`] entries (the first with the
    /// opening wrapper), or the end (closing wrapper and tail).
    pub fn next_piece(&mut self, out: &mut String) -> bool {
        out.clear();
        loop {
            match self.step {
                Step::Head => {
                    self.step = Step::Entries;
                    if !self.head.is_empty() {
                        std::mem::swap(out, &mut self.head);
                        return true;
                    }
                }
                Step::Entries => {
                    if !self.had {
                        self.peek();
                        if let Some(first) = self.first.take() {
                            self.had = true;
                            out.push_str(&self.open);
                            out.push_str(&first);
                            return true;
                        }
                    } else if self.entries.next_piece(out) {
                        return true;
                    }
                    self.step = Step::Done;
                    if self.had {
                        out.push_str(&self.close);
                    }
                    out.push_str(&self.tail);
                    return !out.is_empty();
                }
                Step::Done => return false,
            }
        }
    }

    /// The whole content as one string (a test, or an output that takes
    /// a reply whole).
    pub fn collect(mut self) -> String {
        let mut all = String::new();
        let mut piece = String::new();
        while self.next_piece(&mut piece) {
            all.push_str(&piece);
        }
        all
    }
}

/// Operations that change something (an edit, a commit, a lock) under
/// way on the actor: a streamed reply gives way to them between its
/// pieces, so that with the daemon on one CPU another session's commit is
/// not slowed down by a whole-table read (reads give way to writes).
#[derive(Debug)]
pub struct Writes {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    /// The longest a streamed reply waits before its next piece: a
    /// session committing back to back slows a read down, it does not
    /// stop it.
    most: std::time::Duration,
}

impl Default for Writes {
    fn default() -> Writes {
        Writes::giving_way_at_most(std::time::Duration::from_millis(50))
    }
}

/// One write under way ([`Writes::start`]); it ends when dropped.
#[derive(Debug)]
pub struct WriteUnderWay<'a>(&'a Writes);

impl Drop for WriteUnderWay<'_> {
    fn drop(&mut self) {
        if self
            .0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl Writes {
    pub fn giving_way_at_most(most: std::time::Duration) -> Writes {
        Writes {
            running: std::sync::atomic::AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            most,
        }
    }

    pub fn start(&self) -> WriteUnderWay<'_> {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        WriteUnderWay(self)
    }

    /// Whether a write is under way.
    pub fn under_way(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// [`Writes::give_way`] for a thread of its own (the rest of a large
    /// `<get>`, rendered through libyang): it sleeps, looking again every
    /// millisecond, until no write is under way or `most` has passed.
    pub fn give_way_blocking(&self) {
        let t0 = std::time::Instant::now();
        while self.under_way() && t0.elapsed() < self.most {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Until no write is under way, or its `most` has passed.
    pub async fn give_way(&self) {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(self.most, wait).await;
    }
}

impl Operation {
    /// Whether a streamed reply gives way to the operation while it is
    /// under way: an operation on the datastores that changes or checks
    /// them (short, on the actor). Not reads, nor a subsystem's rpc that
    /// may last (batch-backup).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Operation::EditConfig { .. }
                | Operation::CopyConfig { .. }
                | Operation::DeleteConfig { .. }
                | Operation::Lock { .. }
                | Operation::Unlock { .. }
                | Operation::Commit(_)
                | Operation::CancelCommit { .. }
                | Operation::DiscardChanges
                | Operation::Validate { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A thread giving way returns at once with no write under way, and
    /// with one only after it ended (within `most`); a write that never
    /// ends holds it for `most` only.
    #[test]
    fn a_thread_gives_way_until_the_write_ends() {
        let writes = Arc::new(Writes::giving_way_at_most(std::time::Duration::from_secs(
            3600,
        )));
        writes.give_way_blocking();
        let ended = Arc::new(AtomicBool::new(false));
        let (started_tx, started) = std::sync::mpsc::channel();
        let writer = {
            let (writes, ended) = (writes.clone(), ended.clone());
            std::thread::spawn(move || {
                let w = writes.start();
                started_tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
                ended.store(true, Ordering::SeqCst);
                drop(w);
            })
        };
        started.recv().unwrap();
        writes.give_way_blocking();
        assert!(ended.load(Ordering::SeqCst), "went on during the write");
        writer.join().unwrap();
        let bounded = Writes::giving_way_at_most(std::time::Duration::from_millis(5));
        std::mem::forget(bounded.start());
        bounded.give_way_blocking();
        assert!(bounded.under_way());
    }
}

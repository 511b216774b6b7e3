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
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok,
    /// Inner content of `<data>` (already serialised XML).
    Data(String),
    /// A complete element placed in the reply as is (get-schema, RPC output).
    Raw(String),
}

//! The libyang context, the YANG modules embedded in the binary, and the
//! helpers that turn libyang's error list into data the NETCONF layer maps to
//! `<rpc-error>`s.
//!
//! One context lives for the whole process (`context()`); data trees borrow
//! it for `'static`. libyang stores every error of a call (`LY_LOSTORE`), so
//! a validation with `MULTI_ERROR` yields all violations, not only the last.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::OnceLock;

use yang2::context::{Context, ContextFlags, EmbeddedModuleKey, EmbeddedModules};
use yang2::data::{
    Data, DataFormat, DataImplicitFlags, DataParserFlags, DataPrinterFlags, DataTree,
    DataValidationFlags,
};
use yang2::ffi;

/// A YANG module shipped inside the binary.
#[derive(Debug)]
pub struct Module {
    pub name: &'static str,
    pub revision: &'static str,
    pub namespace: &'static str,
    pub prefix: &'static str,
    pub text: &'static str,
    /// Implemented (its data, RPCs and notifications are ours) rather than
    /// only imported.
    pub implemented: bool,
}

/// Every module the daemon loads, in load order.
pub const MODULES: &[Module] = &[
    Module {
        name: "ietf-netconf-acm",
        revision: "2018-02-14",
        namespace: "urn:ietf:params:xml:ns:yang:ietf-netconf-acm",
        prefix: "nacm",
        text: include_str!("../yang/ietf/ietf-netconf-acm@2018-02-14.yang"),
        implemented: true,
    },
    Module {
        name: "ietf-netconf",
        revision: "2011-06-01",
        namespace: "urn:ietf:params:xml:ns:netconf:base:1.0",
        prefix: "nc",
        text: include_str!("../yang/ietf/ietf-netconf@2011-06-01.yang"),
        implemented: true,
    },
    Module {
        name: "ietf-netconf-monitoring",
        revision: "2010-10-04",
        namespace: "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring",
        prefix: "ncm",
        text: include_str!("../yang/ietf/ietf-netconf-monitoring@2010-10-04.yang"),
        implemented: true,
    },
    Module {
        name: "ietf-netconf-with-defaults",
        revision: "2011-06-01",
        namespace: "urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults",
        prefix: "ncwd",
        text: include_str!("../yang/ietf/ietf-netconf-with-defaults@2011-06-01.yang"),
        implemented: true,
    },
    Module {
        name: "hotlease-vrrp",
        revision: "2026-11-25",
        namespace: "urn:hotlease:yang:vrrp",
        prefix: "vrrp",
        text: include_str!("../yang/hotlease-vrrp.yang"),
        implemented: true,
    },
    Module {
        name: "hotlease-remote-backup",
        revision: "2026-11-25",
        namespace: "urn:hotlease:yang:remote-backup",
        prefix: "rbk",
        text: include_str!("../yang/hotlease-remote-backup.yang"),
        implemented: true,
    },
    Module {
        name: "hotlease-dhcp-server",
        revision: "2026-11-25",
        namespace: "urn:hotlease:yang:dhcp-server",
        prefix: "dhcps",
        text: include_str!("../yang/hotlease-dhcp-server.yang"),
        implemented: true,
    },
    // RFC 5277 (create-subscription, the stream list) and RFC 6470 (the
    // base notifications): the notifications we send are built and
    // validated against them (`notification_xml`).
    Module {
        name: "notifications",
        revision: "2008-07-14",
        namespace: "urn:ietf:params:xml:ns:netconf:notification:1.0",
        prefix: "ncEvent",
        text: include_str!("../yang/ietf/notifications@2008-07-14.yang"),
        implemented: true,
    },
    Module {
        name: "nc-notifications",
        revision: "2008-07-14",
        namespace: "urn:ietf:params:xml:ns:netmod:notification",
        prefix: "manageEvent",
        text: include_str!("../yang/ietf/nc-notifications@2008-07-14.yang"),
        implemented: true,
    },
    Module {
        name: "ietf-netconf-notifications",
        revision: "2012-02-06",
        namespace: "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications",
        prefix: "ncn",
        text: include_str!("../yang/ietf/ietf-netconf-notifications@2012-02-06.yang"),
        implemented: true,
    },
];

/// The features of ietf-netconf the server implements (RFC 6241 §8: the
/// capabilities it announces; no :writable-running, no :url). Enabled in
/// the context, so that the YANG library and the hello list them.
pub const NETCONF_FEATURES: &[&str] = &[
    "candidate",
    "confirmed-commit",
    "rollback-on-error",
    "validate",
    "startup",
    "xpath",
];

/// A list whose entries can be parsed and validated one by one: the direct
/// entries, with a single key, of a top-level container, where no YANG rule
/// of an entry reads another entry of the list (rules across entries are
/// checked in Rust by the subsystem that declares the list). With thousands
/// of entries, an edit of many is parsed in parts (`northbound::edit`) and a
/// commit that changes only some validates only those
/// (`northbound::validate`). Which lists qualify is the subsystems' word:
/// `config::ENTRY_LISTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryList {
    /// Module name, as in data paths.
    pub module: &'static str,
    /// Module namespace, as in XML.
    pub namespace: &'static str,
    /// The top-level container.
    pub container: &'static str,
    /// The list, a child of the container.
    pub list: &'static str,
    /// Its single key leaf.
    pub key: &'static str,
}

impl EntryList {
    /// Data path of the container (`/module:container`).
    pub fn container_path(&self) -> String {
        format!("/{}:{}", self.module, self.container)
    }

    /// Whether a top-level data node is the container.
    pub fn is_container(&self, node: &yang2::data::DataNodeRef<'_, '_>) -> bool {
        let s = node.schema();
        s.name() == self.container && s.module().name() == self.module
    }

    /// Whether a child of the container is an entry of the list.
    pub fn is_entry(&self, node: &yang2::data::DataNodeRef<'_, '_>) -> bool {
        let s = node.schema();
        s.name() == self.list && s.module().name() == self.module
    }

    /// The key value of an entry, as the tree holds it.
    pub fn key_of(node: &yang2::data::DataNodeRef<'_, '_>) -> Option<String> {
        node.list_keys().next().and_then(|k| k.value_canonical())
    }
}

/// One entry of an `EntryList`, by its key value as the tree holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub list: EntryList,
    pub key: String,
}

/// Our own data modules (the ones whose configuration the daemon serves).
pub fn data_modules() -> impl Iterator<Item = &'static Module> {
    MODULES.iter().filter(|m| m.name.starts_with("hotlease-"))
}

/// Find a module by namespace.
pub fn module_by_ns(ns: &str) -> Option<&'static Module> {
    MODULES.iter().find(|m| m.namespace == ns)
}

/// Find a module by name.
pub fn module_by_name(name: &str) -> Option<&'static Module> {
    MODULES.iter().find(|m| m.name == name)
}

static CONTEXT: OnceLock<Context> = OnceLock::new();
static EMBEDDED: OnceLock<EmbeddedModules> = OnceLock::new();

/// The process-wide libyang context, built on first use.
pub fn context() -> &'static Context {
    CONTEXT.get_or_init(|| build_context().expect("embedded YANG modules load"))
}

fn build_context() -> Result<Context, yang2::Error> {
    let embedded = EMBEDDED.get_or_init(|| {
        let mut map: EmbeddedModules = HashMap::new();
        for m in MODULES {
            map.insert(EmbeddedModuleKey::new(m.name, None, None, None), m.text);
            map.insert(
                EmbeddedModuleKey::new(m.name, Some(m.revision), None, None),
                m.text,
            );
        }
        map
    });
    // With ietf-yang-library (and ietf-datastores): libyang reports the
    // module set itself (`yang_library`).
    let mut ctx =
        Context::new(ContextFlags::DISABLE_SEARCHDIRS | ContextFlags::DISABLE_SEARCHDIR_CWD)?;
    // SAFETY: plain setter of a global libyang option. Store every error so a
    // multi-error validation reports them all, and never print to stderr.
    // It must come after the first Context::new, which sets LY_LOSTORE_LAST.
    unsafe { ffi::ly_log_options(ffi::LY_LOSTORE) };
    ctx.set_embedded_modules(embedded);
    for m in MODULES.iter().filter(|m| m.implemented) {
        let features = if m.name == "ietf-netconf" {
            NETCONF_FEATURES
        } else {
            &[]
        };
        ctx.load_module(m.name, Some(m.revision), features)?;
    }
    Ok(ctx)
}

/// RFC 8341 §3.5.1: what a `nacm:default-deny-*` extension on a schema
/// node (or one of its ancestors) says when no rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultDeny {
    None,
    Write,
    All,
}

/// The `nacm:default-deny-*` extension in force at a schema node: its own
/// or an ancestor's (`default-deny-all` on `/nacm` covers its groups too),
/// as libyang compiled the modules.
pub fn default_deny(node: &yang2::schema::SchemaNode<'_>) -> DefaultDeny {
    let mut out = DefaultDeny::None;
    let mut raw = node.as_raw() as *const ffi::lysc_node;
    // SAFETY: compiled schema nodes live as long as the process-wide
    // context.
    unsafe {
        while !raw.is_null() {
            match own_default_deny(raw) {
                DefaultDeny::All => return DefaultDeny::All,
                DefaultDeny::Write => out = DefaultDeny::Write,
                DefaultDeny::None => {}
            }
            raw = (*raw).parent;
        }
    }
    out
}

/// The `nacm:default-deny-*` extension of one compiled schema node itself
/// (`raw`: a live compiled node of the process-wide context).
fn own_default_deny(raw: *const ffi::lysc_node) -> DefaultDeny {
    let mut out = DefaultDeny::None;
    // SAFETY: callers pass compiled schema nodes of the process-wide
    // context; their `exts` sized array has its count in the
    // LY_ARRAY_COUNT_TYPE (u64) before the first item.
    unsafe {
        let exts = (*raw).exts;
        let count = if exts.is_null() {
            0
        } else {
            *(exts as *const u64).sub(1)
        };
        for i in 0..count as usize {
            let def = (*exts.add(i)).def;
            if def.is_null() || (*def).module.is_null() {
                continue;
            }
            if opt_cstr((*(*def).module).name).as_deref() != Some("ietf-netconf-acm") {
                continue;
            }
            match opt_cstr((*def).name).as_deref() {
                Some("default-deny-all") => return DefaultDeny::All,
                Some("default-deny-write") => out = DefaultDeny::Write,
                _ => {}
            }
        }
    }
    out
}

/// Whether no `default-deny-all` extension sits below a top-level data
/// node anywhere in the schema (true of the modules we ship: it is on
/// `/nacm` and on RPCs): then a read that no rule can deny needs only look
/// at the top-level nodes.
pub fn deny_all_only_at_top() -> bool {
    static ONLY_TOP: OnceLock<bool> = OnceLock::new();
    /// Whether `n`, a sibling after it, or a descendant of either is
    /// `default-deny-all` while its parent (`parent_all`) is not (libyang's
    /// NACM plugin copies the extension to every descendant).
    fn below(mut n: *const ffi::lysc_node, parent_all: bool) -> bool {
        // SAFETY: compiled schema nodes of the process-wide context;
        // sibling lists end with a null `next`.
        unsafe {
            while !n.is_null() {
                let all = own_default_deny(n) == DefaultDeny::All;
                if (all && !parent_all) || below(ffi::lysc_node_child(n), all) {
                    return true;
                }
                n = (*n).next;
            }
        }
        false
    }
    *ONLY_TOP.get_or_init(|| {
        context().modules(true).all(|m| {
            // SAFETY: as above; `compiled` is null for modules only imported.
            unsafe {
                let compiled = (*m.as_raw()).compiled;
                if compiled.is_null() {
                    return true;
                }
                let mut top = (*compiled).data as *const ffi::lysc_node;
                while !top.is_null() {
                    let all = own_default_deny(top) == DefaultDeny::All;
                    if below(ffi::lysc_node_child(top), all) {
                        return false;
                    }
                    top = (*top).next;
                }
                true
            }
        })
    })
}

/// The extension of an RPC (`/module:rpc`), `None` when the schema has no
/// such RPC.
pub fn rpc_default_deny(module: &str, rpc: &str) -> DefaultDeny {
    match context().find_path(&format!("/{module}:{rpc}")) {
        Ok(node) => default_deny(&node),
        Err(_) => DefaultDeny::None,
    }
}

/// Free `nodes` (none inside another) from `tree`, keeping the tree's
/// handle on its first remaining top-level node.
pub fn remove_nodes(tree: &mut DataTree<'static>, nodes: &[*mut ffi::lyd_node]) {
    use yang2::utils::Binding;
    if nodes.is_empty() {
        return;
    }
    let raw = std::mem::replace(tree, empty()).into_raw();
    // SAFETY: `raw` is the tree we own; `nodes` are distinct nodes of it,
    // none a descendant of another, so each is freed once. The new head is
    // a top-level sibling that stays.
    unsafe {
        let mut first = if raw.is_null() {
            raw
        } else {
            ffi::lyd_first_sibling(raw)
        };
        while !first.is_null() && nodes.contains(&first) {
            first = (*first).next;
        }
        for n in nodes {
            ffi::lyd_free_tree(*n);
        }
        *tree = DataTree::from_raw(context(), first);
    }
}

/// One libyang error, as stored in the context.
#[derive(Debug, Clone, PartialEq)]
pub struct LyError {
    /// `LY_VECODE` of the error (`LYVE_DATA`, `LYVE_REFERENCE`, ...).
    pub vecode: u32,
    pub message: String,
    /// Data path (JSON form, module-name prefixes) of the offending node.
    pub path: Option<String>,
    pub apptag: Option<String>,
}

fn opt_cstr(p: *const std::os::raw::c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: libyang error strings are NUL-terminated and live until
        // `ly_err_clean`, which runs after we copied them.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// Take (and clear) every error libyang stored for this thread.
pub fn take_errors() -> Vec<LyError> {
    let ctx = context();
    let mut out = Vec::new();
    // SAFETY: walking libyang's error list of this context/thread; items stay
    // valid until ly_err_clean below.
    unsafe {
        let raw = ctx_raw(ctx);
        let mut e = ffi::ly_err_first(raw);
        while !e.is_null() {
            let item = &*e;
            if item.level == ffi::LY_LOG_LEVEL::LY_LLERR {
                out.push(LyError {
                    vecode: item.vecode,
                    message: opt_cstr(item.msg).unwrap_or_default(),
                    path: opt_cstr(item.data_path),
                    apptag: opt_cstr(item.apptag),
                });
            }
            e = item.next;
        }
        ffi::ly_err_clean(raw, std::ptr::null_mut());
    }
    out
}

/// Forget stored errors before an operation whose errors we will read.
pub fn clear_errors() {
    // SAFETY: frees this thread's stored errors of our context.
    unsafe { ffi::ly_err_clean(ctx_raw(context()), std::ptr::null_mut()) };
}

/// `Context` keeps its raw pointer private; `into_raw` consumes it, so read
/// the pointer back through libyang itself: the context of the first module.
fn ctx_raw(ctx: &Context) -> *mut ffi::ly_ctx {
    let m = ctx
        .get_module_implemented("hotlease-vrrp")
        .expect("hotlease-vrrp loaded");
    // SAFETY: a loaded module's `ctx` field points to its owning context.
    unsafe { (*m.as_raw()).ctx }
}

/// Validate a whole configuration tree; all violations are returned.
pub fn validate(tree: &mut DataTree<'static>) -> Result<(), Vec<LyError>> {
    clear_errors();
    let flags = DataValidationFlags::NO_STATE
        | DataValidationFlags::from_bits_retain(ffi::LYD_VALIDATE_MULTI_ERROR);
    let r = tree.validate(flags);
    // Validation may insert default nodes before the first top-level node;
    // yang2 keeps pointing at the old first one, which would make later
    // duplicates and prints skip the new ones.
    rewind(tree);
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(errors_of(e, "validation failed")),
    }
}

/// Point a tree at its first top-level sibling again.
pub fn rewind(tree: &mut DataTree<'static>) {
    use yang2::utils::Binding;
    let raw = std::mem::replace(tree, empty()).into_raw();
    // SAFETY: `raw` is the tree we just took ownership of; the first sibling
    // of a node of a top-level sibling list is that list's head, and handing
    // it back to DataTree restores single ownership of the whole list.
    unsafe {
        let first = if raw.is_null() {
            raw
        } else {
            ffi::lyd_first_sibling(raw)
        };
        *tree = DataTree::from_raw(context(), first);
    }
}

/// Build a notification with libyang: `path` is `/module:name`, `leaves`
/// are paths relative to it with their values (JSON-form values, as
/// libyang takes them: an instance-identifier names modules, not XML
/// prefixes); the result is validated as a notification (mandatory leaves,
/// `when`, types) and printed as one XML element on one line.
pub fn notification_xml(
    path: &str,
    leaves: &[(String, Option<String>)],
) -> Result<String, Vec<LyError>> {
    clear_errors();
    let mut tree = DataTree::new(context());
    tree.new_path(path, None, false)
        .map_err(|e| errors_of(e, "bad notification path"))?;
    for (leaf, value) in leaves {
        tree.new_path(&format!("{path}/{leaf}"), value.as_deref(), false)
            .map_err(|e| errors_of(e, "bad notification leaf"))?;
    }
    rewind(&mut tree);
    // An instance-identifier (RFC 6470's edit targets) must name an
    // instance of the data tree given to the validation; a notification
    // about a deletion names one that no longer exists. Such leaves are
    // checked against the schema when created (new_path above), and the
    // rest of the notification is validated without them.
    let mut check = dup(&tree);
    let instance_ids: Vec<String> = check
        .traverse()
        .filter(|n| {
            n.schema().leaf_type().map(|t| t.base_type())
                == Some(yang2::schema::DataValueType::InstanceId)
        })
        .map(|n| n.path())
        .collect();
    for p in &instance_ids {
        let _ = check.remove(p);
    }
    // SAFETY: `check` owns a live notification tree; validation only reads
    // it and may add default nodes to it (diff output not requested).
    let rc = unsafe {
        ffi::lyd_validate_op(
            check.raw(),
            std::ptr::null(),
            ffi::lyd_type::LYD_TYPE_NOTIF_YANG,
            std::ptr::null_mut(),
        )
    };
    if rc != ffi::LY_ERR::LY_SUCCESS {
        let mut errs = take_errors();
        if errs.is_empty() {
            errs.push(LyError {
                vecode: 0,
                message: format!("notification {path} is invalid"),
                path: None,
                apptag: None,
            });
        }
        return Err(errs);
    }
    Ok(print_mem(
        tree.raw(),
        DataPrinterFlags::WITH_SIBLINGS | DataPrinterFlags::SHRINK,
    ))
}

/// Parse a notification printed by `notification_xml` back into a tree
/// (for XPath filters of subscriptions).
pub fn parse_notification(xml: &str) -> Result<DataTree<'static>, Vec<LyError>> {
    clear_errors();
    let data = format!("{xml}\0");
    DataTree::parse_op_string(
        context(),
        data.as_bytes(),
        DataFormat::XML,
        yang2::data::DataOperation::NotificationYang,
    )
    .map_err(|e| errors_of(e, "notification cannot be parsed"))
}

/// Parse XML configuration data (no validation: the caller validates the
/// whole datastore when it must).
pub fn parse_config_xml(xml: &str) -> Result<DataTree<'static>, Vec<LyError>> {
    clear_errors();
    let data = format!("{xml}\0");
    DataTree::parse_string(
        context(),
        data.as_bytes(),
        DataFormat::XML,
        DataParserFlags::NO_VALIDATION | DataParserFlags::STRICT | DataParserFlags::NO_STATE,
        DataValidationFlags::empty(),
    )
    .map_err(|e| errors_of(e, ""))
}

/// The errors libyang logged for a failed call, or the call's own error
/// when it logged none (`message` when that has no text either).
fn errors_of(e: yang2::Error, message: &str) -> Vec<LyError> {
    let mut errs = take_errors();
    if errs.is_empty() {
        errs.push(LyError {
            vecode: 0,
            message: e.msg.unwrap_or_else(|| message.into()),
            path: e.path,
            apptag: e.apptag,
        });
    }
    errs
}

/// Parse and validate a whole configuration in one pass, reporting every
/// error (values out of range included, which a parse without validation
/// stops at): for `hotleased check`, which lists all problems of a file.
pub fn parse_config_xml_all_errors(xml: &str) -> Result<DataTree<'static>, Vec<LyError>> {
    clear_errors();
    let data = format!("{xml}\0");
    let parsed = DataTree::parse_string(
        context(),
        data.as_bytes(),
        DataFormat::XML,
        DataParserFlags::STRICT | DataParserFlags::NO_STATE,
        DataValidationFlags::NO_STATE
            | DataValidationFlags::from_bits_retain(ffi::LYD_VALIDATE_MULTI_ERROR),
    );
    match parsed {
        Ok(mut tree) => {
            rewind(&mut tree);
            Ok(tree)
        }
        Err(e) => Err(errors_of(e, "")),
    }
}

/// Parse operational data (config false nodes allowed) reported by a
/// subsystem, to be merged with the running configuration for `<get>`.
pub fn parse_state_xml(xml: &str) -> Result<DataTree<'static>, Vec<LyError>> {
    clear_errors();
    let data = format!("{xml}\0");
    DataTree::parse_string(
        context(),
        data.as_bytes(),
        DataFormat::XML,
        DataParserFlags::NO_VALIDATION | DataParserFlags::STRICT,
        DataValidationFlags::empty(),
    )
    .map_err(|_| take_errors())
}

/// Parse a subsystem's state document so that an entry libyang refuses
/// costs only that entry: when the whole document is refused, the children
/// of each top-level element (one lease, one pool, one counters container)
/// are parsed in halves, down to the single entries that are refused.
/// Returns the parsed parts and, per refused entry, its first error. A
/// document that is not even well-formed XML is refused whole.
pub fn parse_state_entries(xml: &str) -> (Vec<DataTree<'static>>, Vec<LyError>) {
    let mut trees = Vec::new();
    let mut refused = Vec::new();
    let whole = match parse_state_xml(xml) {
        Ok(t) => {
            trees.push(t);
            return (trees, refused);
        }
        Err(e) => e,
    };
    let Some(roots) = split_roots(xml) else {
        refused.extend(whole.into_iter().take(1));
        return (trees, refused);
    };
    for (open, children, close) in roots {
        parse_halves(open, &children, close, &mut trees, &mut refused);
    }
    (trees, refused)
}

/// `open` + `parts` + `close` as one tree, or, when libyang refuses it,
/// each half on its own.
fn parse_halves(
    open: &str,
    parts: &[&str],
    close: &str,
    trees: &mut Vec<DataTree<'static>>,
    refused: &mut Vec<LyError>,
) {
    let mut doc = String::with_capacity(
        open.len() + close.len() + parts.iter().map(|p| p.len()).sum::<usize>(),
    );
    doc.push_str(open);
    parts.iter().for_each(|p| doc.push_str(p));
    doc.push_str(close);
    match parse_state_xml(&doc) {
        Ok(t) => trees.push(t),
        Err(e) if parts.len() <= 1 => refused.extend(e.into_iter().take(1)),
        Err(_) => {
            let (a, b) = parts.split_at(parts.len() / 2);
            parse_halves(open, a, close, trees, refused);
            parse_halves(open, b, close, trees, refused);
        }
    }
}

/// The top-level elements of `xml` as (start tag, child elements, end
/// tag) slices of it; None when it is not well-formed.
fn split_roots(xml: &str) -> Option<Vec<(&str, Vec<&str>, &str)>> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut roots = Vec::new();
    let mut depth = 0usize;
    let (mut open, mut child) = (0..0, 0);
    let mut children = Vec::new();
    loop {
        let before = usize::try_from(reader.buffer_position()).ok()?;
        let event = reader.read_event().ok()?;
        let after = usize::try_from(reader.buffer_position()).ok()?;
        match event {
            Event::Start(_) => {
                match depth {
                    0 => open = before..after,
                    1 => child = before,
                    _ => {}
                }
                depth += 1;
            }
            Event::Empty(_) => match depth {
                0 => roots.push((xml.get(before..after)?, Vec::new(), "")),
                1 => children.push(xml.get(before..after)?),
                _ => {}
            },
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                match depth {
                    0 => roots.push((
                        xml.get(open.clone())?,
                        std::mem::take(&mut children),
                        xml.get(before..after)?,
                    )),
                    1 => children.push(xml.get(child..after)?),
                    _ => {}
                }
            }
            Event::Eof => return (depth == 0).then_some(roots),
            _ => {}
        }
    }
}

/// With-defaults retrieval modes (RFC 6243).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WithDefaults {
    #[default]
    Explicit,
    ReportAll,
    ReportAllTagged,
    Trim,
}

impl WithDefaults {
    pub fn parse(s: &str) -> Option<WithDefaults> {
        Some(match s {
            "explicit" => WithDefaults::Explicit,
            "report-all" => WithDefaults::ReportAll,
            "report-all-tagged" => WithDefaults::ReportAllTagged,
            "trim" => WithDefaults::Trim,
            _ => return None,
        })
    }

    fn flags(self) -> DataPrinterFlags {
        match self {
            WithDefaults::Explicit => DataPrinterFlags::WD_EXPLICIT,
            WithDefaults::ReportAll => DataPrinterFlags::WD_ALL,
            WithDefaults::ReportAllTagged => {
                DataPrinterFlags::from_bits_retain(ffi::LYD_PRINT_WD_ALL_TAG)
            }
            WithDefaults::Trim => DataPrinterFlags::WD_TRIM,
        }
    }
}

/// The tree to print for a with-defaults mode: a tree that was edited but
/// not validated yet (the candidate) lacks the implicit default nodes that
/// report-all, report-all-tagged and trim consider, so those modes print a
/// copy with them added.
pub fn printable<'a>(tree: &'a DataTree<'static>, wd: WithDefaults) -> Printable<'a> {
    if wd == WithDefaults::Explicit {
        Printable::Borrowed(tree)
    } else {
        let mut copy = dup(tree);
        let _ = copy.add_implicit(DataImplicitFlags::NO_STATE);
        Printable::Owned(copy)
    }
}

/// A tree as given, or a copy with its implicit defaults (see `printable`).
#[derive(Debug)]
pub enum Printable<'a> {
    Borrowed(&'a DataTree<'static>),
    Owned(DataTree<'static>),
}

impl std::ops::Deref for Printable<'_> {
    type Target = DataTree<'static>;

    fn deref(&self) -> &DataTree<'static> {
        match self {
            Printable::Borrowed(t) => t,
            Printable::Owned(t) => t,
        }
    }
}

/// RFC 6243 §6: libyang tags defaults with the ietf-netconf-with-defaults
/// module's namespace; the attribute belongs to its own XML namespace.
fn fix_default_tags(xml: String, wd: WithDefaults) -> String {
    if wd == WithDefaults::ReportAllTagged {
        xml.replace(
            "xmlns:ncwd=\"urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults\"",
            "xmlns:wd=\"urn:ietf:params:xml:ns:netconf:default:1.0\"",
        )
        .replace(" ncwd:default=", " wd:default=")
    } else {
        xml
    }
}

/// Print one node (and its subtree) of a tree prepared by `printable`.
pub fn print_node(node: &yang2::data::DataNodeRef<'_, 'static>, wd: WithDefaults) -> String {
    let xml = print_mem(node.raw(), DataPrinterFlags::SHRINK | wd.flags());
    fix_default_tags(xml, wd)
}

/// Print `node` as XML; empty when libyang cannot. Not yang2's
/// `print_string`: yang2 0.18 copies libyang's buffer and never frees it
/// (the whole printed size leaked on every `<get>`, `<get-config>` and
/// save of startup), found by the `netconf_rpc` fuzz target.
fn print_mem(node: *mut ffi::lyd_node, flags: DataPrinterFlags) -> String {
    let mut out: *mut std::os::raw::c_char = std::ptr::null_mut();
    // SAFETY: a live node of a tree of our context; on success libyang
    // stores a malloc'd NUL-terminated string (or null) in `out`, ours.
    let ret = unsafe { ffi::lyd_print_mem(&mut out, node, DataFormat::XML as u32, flags.bits()) };
    if out.is_null() {
        return String::new();
    }
    // SAFETY: `out` is the NUL-terminated string libyang allocated with
    // malloc; it is copied, then freed once.
    unsafe {
        let s = if ret == ffi::LY_ERR::LY_SUCCESS {
            CStr::from_ptr(out).to_string_lossy().into_owned()
        } else {
            String::new()
        };
        libc::free(out.cast());
        s
    }
}

/// Print a tree (all top-level siblings) as XML.
pub fn print_xml(tree: &DataTree<'static>, wd: WithDefaults) -> String {
    if tree.reference().is_none() {
        return String::new();
    }
    let tree = printable(tree, wd);
    let xml = print_mem(
        tree.raw(),
        DataPrinterFlags::WITH_SIBLINGS | DataPrinterFlags::SHRINK | wd.flags(),
    );
    fix_default_tags(xml, wd)
}

/// Print a tree made of nodes copied out of a `printable` tree as it is:
/// its defaults were added (and flagged) where they were selected, so none
/// is added here (adding them would bring every other module's defaults).
pub fn print_selected(tree: &DataTree<'static>, wd: WithDefaults) -> String {
    if tree.reference().is_none() {
        return String::new();
    }
    let xml = print_mem(
        tree.raw(),
        DataPrinterFlags::WITH_SIBLINGS | DataPrinterFlags::SHRINK | wd.flags(),
    );
    fix_default_tags(xml, wd)
}

/// The data nodes `xpath` (JSON prefixes) selects in `tree`, in document
/// order. Use this, not yang2's `Data::find_xpath`: yang2 0.18 never frees
/// libyang's result set (16 bytes plus 8 per node on every call; every
/// commit, validation and XPath `<get>` calls it), which the `netconf_rpc`
/// fuzz target found with LeakSanitizer.
pub fn find_xpath<'a>(
    tree: &'a DataTree<'static>,
    xpath: &str,
) -> Result<Vec<yang2::data::DataNodeRef<'a, 'static>>, yang2::Error> {
    use yang2::utils::Binding;
    let Ok(expr) = std::ffi::CString::new(xpath) else {
        return Ok(Vec::new());
    };
    let mut set: *mut ffi::ly_set = std::ptr::null_mut();
    // SAFETY: a live tree (or null for an empty one, which libyang
    // accepts) and a NUL-terminated expression; on success libyang stores
    // a set it allocated in `set`, ours to free.
    let ret = unsafe { ffi::lyd_find_xpath(tree.raw(), expr.as_ptr(), &mut set) };
    if ret != ffi::LY_ERR::LY_SUCCESS {
        return Err(yang2::Error::new(context()));
    }
    if set.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: the set holds `count` data nodes of `tree`, which outlives
    // the references; the set itself (not the nodes) is freed once read.
    unsafe {
        let count = (*set).count as usize;
        let nodes = (*set).__bindgen_anon_1.dnodes;
        let out = (0..count)
            .map(|i| yang2::data::DataNodeRef::from_raw(tree, *nodes.add(i)))
            .collect();
        ffi::ly_set_free(set, None);
        Ok(out)
    }
}

/// Merge every top-level node of `src` into `tree`, then point `tree` at
/// its first node again ([`rewind`]). yang2 merges into an empty tree by
/// duplicating `src` with `lyd_dup_siblings`, which loses the node after a
/// top-level list (see [`dup`]): an empty tree takes [`dup`]'s copy.
pub fn merge(tree: &mut DataTree<'static>, src: &DataTree<'static>) -> Result<(), yang2::Error> {
    let r = if tree.reference().is_none() {
        *tree = dup(src);
        Ok(())
    } else {
        tree.merge(src)
    };
    rewind(tree);
    r
}

/// Duplicate a tree (an empty tree duplicates to an empty tree).
///
/// Each top-level sibling is copied on its own: libyang 2.2.8's
/// `lyd_dup_siblings` skips the node that follows a top-level list (its
/// list fast path leaves the cursor one node too far), which would drop,
/// say, `vrrp` after `remote-backup-service`.
pub fn dup(tree: &DataTree<'static>) -> DataTree<'static> {
    use yang2::utils::Binding;
    let Some(first) = tree.reference() else {
        return empty();
    };
    let mut head: *mut ffi::lyd_node = std::ptr::null_mut();
    for node in first.inclusive_siblings() {
        let mut copy: *mut ffi::lyd_node = std::ptr::null_mut();
        // SAFETY: `node` is a live node of `tree`; the copy is a new
        // standalone subtree that we link into the new sibling list, whose
        // head we hand to a DataTree below.
        unsafe {
            let rc = ffi::lyd_dup_single(
                node.raw(),
                std::ptr::null_mut(),
                ffi::LYD_DUP_RECURSIVE | ffi::LYD_DUP_WITH_FLAGS,
                &mut copy,
            );
            assert_eq!(rc, ffi::LY_ERR::LY_SUCCESS, "libyang duplicate");
            let rc = ffi::lyd_insert_sibling(head, copy, &mut head);
            assert_eq!(rc, ffi::LY_ERR::LY_SUCCESS, "libyang insert");
        }
    }
    // SAFETY: `head` is the first sibling of the list built above, owned by
    // nobody else.
    unsafe { DataTree::from_raw(context(), head) }
}

/// A data tree on its way to or from a worker thread of `parse_parts` /
/// `validate_parts`; private, so that only those two move trees across
/// threads, and only for a libyang parse or validation.
struct Sendable(DataTree<'static>);

// SAFETY: a libyang data tree belongs to no thread: `parse_parts` and
// `validate_parts` move one to a worker, use it only there and move it
// back (the wrapper never escapes this module). Its context is the
// process-wide one, which libyang lets several threads read at once
// (parsing and validation do not modify it; dictionary updates take its
// lock), and libyang keeps stored errors per thread.
unsafe impl Send for Sendable {}

/// CPUs this process may run on (read once: it reads cgroup files).
pub fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Run `f` on each item on its own scoped thread (the first on this one);
/// results in item order.
fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Vec::new();
    };
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items.map(|it| s.spawn(move || f(it))).collect();
        let mut out = vec![f(first)];
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("worker thread")),
        );
        out
    })
}

/// Parse XML configuration documents, each on its own thread (the parts
/// of a large edit); results in order.
pub fn parse_parts(xmls: Vec<String>) -> Vec<Result<DataTree<'static>, Vec<LyError>>> {
    on_threads(xmls, |xml| parse_config_xml(&xml).map(Sendable))
        .into_iter()
        .map(|r| r.map(|t| t.0))
        .collect()
}

/// Validate trees, each on its own thread (the parts of a large commit);
/// every tree comes back with its result, in order.
pub fn validate_parts(
    trees: Vec<DataTree<'static>>,
) -> Vec<(DataTree<'static>, Result<(), Vec<LyError>>)> {
    let trees = trees.into_iter().map(Sendable).collect();
    on_threads(trees, |mut t| {
        let r = validate(&mut t.0);
        (t, r)
    })
    .into_iter()
    .map(|(t, r)| (t.0, r))
    .collect()
}

/// A value as a quoted literal of a libyang data path predicate
/// (`[name='v']`), or None when it holds both quote kinds: libyang's path
/// syntax, like XPath 1.0, has no escape, so such a value cannot be
/// addressed by a path at all.
pub fn path_literal(v: &str) -> Option<String> {
    match (v.contains('\''), v.contains('"')) {
        (false, _) => Some(format!("'{v}'")),
        (true, false) => Some(format!("\"{v}\"")),
        (true, true) => None,
    }
}

/// A value as an XPath 1.0 string literal, for an `<error-path>` (any
/// value: one holding both quote kinds becomes a `concat()` of quoted
/// pieces, the only way XPath 1.0 can spell it).
pub fn xpath_literal(v: &str) -> String {
    if let Some(q) = path_literal(v) {
        return q;
    }
    let parts: Vec<String> = v.split('\'').map(|piece| format!("'{piece}'")).collect();
    format!("concat({})", parts.join(", \"'\", "))
}

/// The YANG library's content id (RFC 8525 `content-id`, RFC 7895
/// `module-set-id`, and the yang-library capabilities): a checksum of
/// libyang's hash of the module set (names, revisions, enabled features)
/// and of the text of the modules we ship, so that it changes whenever a
/// build changes a module, even one whose revision stayed the same, and
/// never within one process.
pub fn content_id() -> String {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        // SAFETY: reads a hash of the process-wide context.
        let set = unsafe { ffi::ly_ctx_get_modules_hash(ctx_raw(context())) };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&set.to_be_bytes());
        for m in MODULES {
            crc.update(m.text.as_bytes());
        }
        crc.finalize().to_string()
    })
    .clone()
}

/// RFC 8525 `yang-library` and RFC 7895 `modules-state` of the context,
/// as libyang builds them (every module loaded, implemented or imported,
/// with revision, namespace, features and deviations), plus the
/// datastores we serve, all with the one complete schema.
pub fn yang_library() -> DataTree<'static> {
    use yang2::utils::Binding;
    let ctx = context();
    let Ok(id) = std::ffi::CString::new(content_id()) else {
        return empty();
    };
    let mut root: *mut ffi::lyd_node = std::ptr::null_mut();
    // SAFETY: the format takes one string argument, given; on success
    // `root` is a new tree that we own and hand to a DataTree.
    let rc = unsafe {
        ffi::ly_ctx_get_yanglib_data(ctx_raw(ctx), &mut root, c"%s".as_ptr(), id.as_ptr())
    };
    if rc != ffi::LY_ERR::LY_SUCCESS || root.is_null() {
        clear_errors();
        return empty();
    }
    // SAFETY: see above.
    let mut tree = unsafe { DataTree::from_raw(ctx, root) };
    for ds in ["running", "candidate", "startup", "operational"] {
        let path = format!(
            "/ietf-yang-library:yang-library/datastore[name='ietf-datastores:{ds}']/schema"
        );
        let _ = tree.new_path(&path, Some("complete"), false);
    }
    rewind(&mut tree);
    tree
}

/// Module capabilities of the hello (RFC 6241 §8, RFC 6020 §5.6.4): each
/// implemented module but libyang's own, with its revision and, as the
/// YANG library lists them, its enabled features and its deviations.
/// Built once: every session's hello carries them.
pub fn module_capabilities() -> &'static [String] {
    static CAPS: OnceLock<Vec<String>> = OnceLock::new();
    CAPS.get_or_init(build_module_capabilities)
}

fn build_module_capabilities() -> Vec<String> {
    let own: std::collections::HashSet<String> = context()
        .modules(true)
        .map(|m| m.name().to_string())
        .collect();
    let tree = yang_library();
    let Ok(set) = find_xpath(&tree, "/ietf-yang-library:yang-library/module-set/module") else {
        return Vec::new();
    };
    let mut caps = Vec::new();
    for module in set {
        let (mut name, mut revision, mut ns) = (String::new(), String::new(), String::new());
        let (mut features, mut deviations) = (Vec::new(), Vec::new());
        for leaf in module.children() {
            let value = leaf.value_canonical().unwrap_or_default();
            match leaf.schema().name() {
                "name" => name = value,
                "revision" => revision = value,
                "namespace" => ns = value,
                "feature" => features.push(value),
                "deviation" => deviations.push(value),
                _ => {}
            }
        }
        if !own.contains(&name) {
            continue;
        }
        let mut cap = format!("{ns}?module={name}");
        if !revision.is_empty() {
            cap.push_str(&format!("&revision={revision}"));
        }
        if !features.is_empty() {
            cap.push_str(&format!("&features={}", features.join(",")));
        }
        if !deviations.is_empty() {
            cap.push_str(&format!("&deviations={}", deviations.join(",")));
        }
        caps.push(cap);
    }
    caps
}

/// A module of the context, for RFC 6022 `schemas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaInfo {
    pub name: String,
    /// Its latest revision ("" when it has none).
    pub revision: String,
    pub namespace: String,
}

/// Every module of the context, libyang's own included: every one that
/// the YANG library lists, each obtainable with `schema_text`.
pub fn schemas() -> Vec<SchemaInfo> {
    context()
        .modules(false)
        .map(|m| SchemaInfo {
            name: m.name().to_string(),
            revision: m.revision().unwrap_or_default().to_string(),
            namespace: m.namespace().to_string(),
        })
        .collect()
}

/// Source formats of `schema_text` (RFC 6022 `schema-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFormat {
    Yang,
    Yin,
}

/// The text of a module of the context (RFC 6022 get-schema), the latest
/// revision when none is given: in YANG the module as shipped when it is
/// one of ours (`MODULES`), otherwise, and in YIN, as libyang prints it
/// from its parsed form.
pub fn schema_text(name: &str, revision: Option<&str>, format: SchemaFormat) -> Option<String> {
    use yang2::schema::{SchemaOutputFormat, SchemaPrinterFlags};
    let ctx = context();
    let module = match revision {
        Some(r) if !r.is_empty() => ctx.get_module(name, Some(r)),
        _ => ctx.get_module_latest(name),
    }?;
    if format == SchemaFormat::Yang {
        let shipped = MODULES
            .iter()
            .find(|m| m.name == name && Some(m.revision) == module.revision());
        if let Some(m) = shipped {
            return Some(m.text.to_string());
        }
    }
    let out = match format {
        SchemaFormat::Yang => SchemaOutputFormat::YANG,
        SchemaFormat::Yin => SchemaOutputFormat::YIN,
    };
    let text = module.print_string(out, SchemaPrinterFlags::empty());
    clear_errors();
    text.ok()
}

/// The name of the module of the context with namespace `ns`.
pub fn module_name_by_ns(ns: &str) -> Option<String> {
    context()
        .get_module_latest_ns(ns)
        .map(|m| m.name().to_string())
}

/// Empty tree.
pub fn empty() -> DataTree<'static> {
    DataTree::new(context())
}

/// Convert a libyang JSON-form data path (`/hotlease-vrrp:vrrp/group[vrid='1']`)
/// into the XML instance-identifier form with prefixes on every node
/// (`/vrrp:vrrp/vrrp:group[vrrp:vrid='1']`).
pub fn xml_path(json_path: &str) -> String {
    let mut out = String::with_capacity(json_path.len() + 16);
    let mut current = "";
    let bytes = json_path.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            out.push(c as char);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == b'\'' || c == b'"' {
            quote = Some(c);
            out.push(c as char);
            i += 1;
            continue;
        }
        if c == b'/' || c == b'[' {
            out.push(c as char);
            i += 1;
            // read a node name (maybe module-prefixed) up to a delimiter
            let start = i;
            while i < bytes.len() && !b"/[]=' \"".contains(&bytes[i]) {
                i += 1;
            }
            let name = &json_path[start..i];
            if name.is_empty() || name == "." {
                out.push_str(name);
                continue;
            }
            let local = match name.split_once(':') {
                Some((module, local)) => {
                    current = module_by_name(module).map(|m| m.prefix).unwrap_or(module);
                    local
                }
                None => name,
            };
            if current.is_empty() {
                out.push_str(local);
            } else {
                out.push_str(current);
                out.push(':');
                out.push_str(local);
            }
            continue;
        }
        out.push(c as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_loads_all_modules() {
        let ctx = context();
        for m in data_modules() {
            let module = ctx.get_module_implemented(m.name).expect(m.name);
            assert_eq!(module.namespace(), m.namespace);
            assert_eq!(module.prefix(), m.prefix);
            assert_eq!(module.revision(), Some(m.revision));
        }
    }

    /// Issue 9 item 2: a lease libyang refuses costs that lease, not the
    /// whole DHCP state.
    #[test]
    fn a_refused_state_entry_costs_only_that_entry() {
        let lease = |ip: &str, host: &str| {
            format!("<lease><ip-address>{ip}</ip-address><pool>p</pool><mac-address>02:00:00:00:00:01</mac-address><hostname>{host}</hostname><state>bound</state><valid-lifetime>60</valid-lifetime><expires>2030-01-01T00:00:00Z</expires><origin>local</origin></lease>")
        };
        let xml = format!(
            "<dhcp-server xmlns=\"urn:hotlease:yang:dhcp-server\"><ip-pool><name>p</name><statistics><total>5</total><used>3</used><free>2</free><offered>0</offered><declined>0</declined></statistics></ip-pool>{}{}{}<statistics><packets-received>7</packets-received></statistics></dhcp-server>",
            lease("10.0.0.1", "a"),
            lease("10.0.0.2", "bad\u{FFFF}"),
            lease("10.0.0.3", "c"),
        );
        assert!(parse_state_xml(&xml).is_err());
        let (trees, refused) = parse_state_entries(&xml);
        assert_eq!(refused.len(), 1);
        let printed: String = trees
            .iter()
            .map(|t| print_xml(t, WithDefaults::Explicit))
            .collect();
        for kept in [
            "10.0.0.1",
            "10.0.0.3",
            "<total>5</total>",
            "<packets-received>7<",
        ] {
            assert!(printed.contains(kept), "{kept} missing from {printed}");
        }
        assert!(!printed.contains("10.0.0.2"), "{printed}");
        // a valid document is one tree; malformed XML is refused whole
        let (trees, refused) = parse_state_entries("<dhcp-server xmlns=\"urn:hotlease:yang:dhcp-server\"><statistics><packets-received>1</packets-received></statistics></dhcp-server>");
        assert_eq!((trees.len(), refused.len()), (1, 0));
        let (trees, refused) =
            parse_state_entries("<dhcp-server xmlns=\"urn:hotlease:yang:dhcp-server\"><lease>");
        assert_eq!((trees.len(), refused.len()), (0, 1));
    }

    #[test]
    fn json_path_to_xml_path() {
        assert_eq!(
            xml_path("/hotlease-vrrp:vrrp/group[interface='eth1'][vrid='1']/priority"),
            "/vrrp:vrrp/vrrp:group[vrrp:interface='eth1'][vrrp:vrid='1']/vrrp:priority"
        );
        assert_eq!(
            xml_path("/hotlease-dhcp-server:dhcp-server/ip-pool[name='a/b']"),
            "/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='a/b']"
        );
    }
}

//! The `<edit-config>` engine (RFC 6241 §7.2): applies a `<config>` element
//! with its `operation` attributes onto a libyang data tree.
//!
//! libyang validates and diffs data but has no edit-config engine, so the
//! walk is ours: each XML element is resolved against the YANG schema (to
//! know leaf, leaf-list, container or list and its keys), turned into a data
//! path, and applied with `new_path` / node removal. Values are checked by
//! libyang as they are set; whole-tree rules (must, leafref, mandatory) are
//! left to validation, which the caller runs when it must.

#![allow(unsafe_code)]

use std::collections::BTreeSet;

use yang2::data::{Data, DataTree};
use yang2::schema::{DataValueType, SchemaNode, SchemaNodeKind};
use yang2::utils::Binding;

use super::allowed;
use super::error::{from_ly, ErrorTag, ErrorType, RpcError};
use super::ops::EditOp;
use super::validate;
use crate::config::ENTRY_LISTS;
use crate::xml::{Element, Node, NC_NS};
use crate::yang::{self, context, xml_path, Entry, EntryList};

/// Stop walking at the first error (stop-on-error / rollback-on-error).
struct Stop;

/// A value an edit sets (a leaf's, a leaf-list's, a list key's), named by
/// its schema node: a refused value's error says what the node allows.
type Subject<'a> = (SchemaNode<'static>, &'a str);

/// Walks one `<config>` onto a tree, collecting errors.
struct Editor<'t> {
    tree: &'t mut DataTree<'static>,
    errors: Vec<RpcError>,
    continue_on_error: bool,
    /// Entries of the `ENTRY_LISTS` (key values as the tree holds them)
    /// the walk touched.
    entries: &'t mut BTreeSet<Entry>,
}

/// Apply `config` (the `<config>` element) to `tree`.
///
/// With `continue_on_error` every failing node is reported and the rest is
/// applied; otherwise the walk stops at the first error (the caller discards
/// the tree copy, so a failed edit changes nothing). The entries of the
/// `ENTRY_LISTS` the edit touched are added to `entries`, keyed as the tree
/// holds them.
/// This is the node-by-node walk; try `fast_path` first.
pub fn apply(
    tree: &mut DataTree<'static>,
    config: &Element,
    default_op: EditOp,
    continue_on_error: bool,
    entries: &mut BTreeSet<Entry>,
) -> Result<(), Vec<RpcError>> {
    let mut ed = Editor {
        tree,
        errors: Vec::new(),
        continue_on_error,
        entries,
    };
    for el in config.elements() {
        let r = match top_schema(el) {
            Ok(schema) => ed.edit(None, el, schema, default_op),
            Err(e) => ed.fail(e),
        };
        if r.is_err() {
            break;
        }
    }
    if ed.errors.is_empty() {
        Ok(())
    } else {
        Err(ed.errors)
    }
}

/// Whether any element below `el` carries an `operation` attribute.
/// A loop, not a recursion: the `<config>` comes from the peer.
fn has_operations(el: &Element) -> bool {
    let mut pending: Vec<&Element> = el.elements().collect();
    while let Some(e) = pending.pop() {
        if e.attr(Some(NC_NS), "operation").is_some() {
            return true;
        }
        pending.extend(e.elements());
    }
    false
}

/// A plain merge (or replace of everything) with no `operation` attribute
/// is exactly libyang's merge: parse the whole `<config>` in one go and
/// merge it, instead of walking it node by node. Returns the entries of the
/// `ENTRY_LISTS` the edit holds, keyed as in the parsed data (what libyang
/// stores, not the XML text). None, with `tree` untouched, when it does not
/// apply or libyang refuses the data; the node-by-node walk then reports
/// the precise NETCONF errors.
///
/// The merge is done on copies and swapped in only when it succeeded, so an
/// edit that fails half-way leaves the datastore as it was. An edit of list
/// entries only (the common one: a pool) copies just the entries it
/// touches, so its cost follows the edit, not the datastore.
pub fn fast_path(
    tree: &mut DataTree<'static>,
    config: &Element,
    default_op: EditOp,
) -> Option<Vec<Entry>> {
    if !matches!(default_op, EditOp::Merge | EditOp::Replace)
        || has_operations(config)
        || has_unaddressable_text(config)
        // libyang parses such data without a word (a parse without
        // validation), and its merge then crashes on it
        || has_repeated_single(config)
    {
        return None;
    }
    let parsed = yang::parse_parts(xml_parts(config));
    let Ok(parsed) = parsed.into_iter().collect::<Result<Vec<_>, _>>() else {
        yang::clear_errors();
        return None;
    };
    if parsed.iter().any(parsed_duplicates) {
        return None;
    }
    let mut parsed = parsed.into_iter();
    // The parts become one tree first (nothing of `tree` is involved yet).
    let edit = merge_all(parsed.next().unwrap_or_else(yang::empty), parsed)?;
    let entries = entries_of(&edit);
    if default_op == EditOp::Replace {
        *tree = edit;
    } else if only_entries(&edit) {
        let touched: BTreeSet<Entry> = entries.iter().cloned().collect();
        let merged = merge_all(
            validate::entries_copy(tree, &touched),
            std::iter::once(edit),
        )?;
        validate::splice_entries(tree, merged, &touched);
    } else {
        *tree = merge_all(yang::dup(tree), std::iter::once(edit))?;
    }
    Some(entries)
}

/// Whether a parsed edit holds nothing but entries of the `ENTRY_LISTS`
/// (no other top-level node, no leaf of their containers).
fn only_entries(edit: &DataTree<'static>) -> bool {
    let Some(first) = edit.reference() else {
        return false;
    };
    first.inclusive_siblings().all(|top| {
        ENTRY_LISTS
            .iter()
            .find(|l| l.is_container(&top))
            .is_some_and(|list| top.children().all(|c| list.is_entry(&c)))
    })
}

/// Move every tree of `rest` into `target` (libyang merge, destructive:
/// nodes are moved, not copied). None when libyang refuses one: `target`
/// may then hold part of the edit and is dropped.
fn merge_all(
    target: DataTree<'static>,
    rest: impl Iterator<Item = DataTree<'static>>,
) -> Option<DataTree<'static>> {
    let mut target = target.into_raw();
    let mut rc = yang2::ffi::LY_ERR::LY_SUCCESS;
    for p in rest {
        // SAFETY: both trees are ours and of one context; DESTRUCT
        // consumes `p` whatever the outcome, and `target` is owned again
        // by a DataTree below.
        let r = unsafe {
            yang2::ffi::lyd_merge_siblings(
                &mut target,
                p.into_raw(),
                yang2::ffi::LYD_MERGE_DESTRUCT as u16,
            )
        };
        if r != yang2::ffi::LY_ERR::LY_SUCCESS {
            rc = r;
        }
    }
    // SAFETY: `target` is the first sibling of a tree nobody else owns.
    let mut tree = unsafe { DataTree::from_raw(context(), target) };
    yang::rewind(&mut tree);
    if rc != yang2::ffi::LY_ERR::LY_SUCCESS {
        yang::clear_errors();
        return None;
    }
    Some(tree)
}

/// The entries of the `ENTRY_LISTS` a parsed edit holds.
fn entries_of(edit: &DataTree<'static>) -> Vec<Entry> {
    let Some(first) = edit.reference() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for top in first.inclusive_siblings() {
        for list in ENTRY_LISTS.iter().filter(|l| l.is_container(&top)) {
            out.extend(
                top.children()
                    .filter(|c| list.is_entry(c))
                    .filter_map(|c| EntryList::key_of(&c))
                    .map(|key| Entry { list: *list, key }),
            );
        }
    }
    out
}

/// Whether some text of the edit holds both quote kinds: if it is a key or
/// a leaf-list value it cannot be addressed by a path, which only the walk
/// reports precisely.
fn has_unaddressable_text(config: &Element) -> bool {
    let mut stack = vec![config];
    while let Some(el) = stack.pop() {
        for c in &el.children {
            match c {
                Node::Text(t) if t.contains('\'') && t.contains('"') => return true,
                Node::Text(_) => {}
                Node::Element(e) => stack.push(e),
            }
        }
    }
    false
}

/// Entries per parsing thread below which one thread parses the whole edit.
const ENTRIES_PER_PARSER: usize = 200;

/// The `<config>` as XML documents for libyang: one, or for an edit of many
/// entries of one of the `ENTRY_LISTS`, one per CPU, the entries split
/// between them (each part in its own copy of the container; everything
/// else goes with the first), to be parsed in parallel and merged.
fn xml_parts(config: &Element) -> Vec<String> {
    let is_entry = |list: &EntryList, c: &Element| c.ns == list.namespace && c.name == list.list;
    let big = config.elements().find_map(|el| {
        let list = ENTRY_LISTS
            .iter()
            .find(|l| el.ns == l.namespace && el.name == l.container)?;
        let plain = el.attrs.is_empty()
            && el.children.iter().all(|c| match c {
                Node::Text(t) => t.trim().is_empty(),
                Node::Element(_) => true,
            });
        let many = el.elements().filter(|c| is_entry(list, c)).count() >= 2 * ENTRIES_PER_PARSER;
        (plain && many).then_some((el, list))
    });
    let Some((big, list)) = big else {
        let mut xml = String::new();
        for el in config.elements() {
            el.write_xml(&mut xml, "");
        }
        return vec![xml];
    };
    let ns = list.namespace;
    let entries: Vec<&Element> = big.elements().filter(|c| is_entry(list, c)).collect();
    let n = (entries.len() / ENTRIES_PER_PARSER)
        .min(yang::cpus())
        .max(1);
    let per = entries.len().div_ceil(n);
    let open = format!(
        "<{} xmlns=\"{}\">",
        list.container,
        crate::xml::escape_attr(ns)
    );
    let mut parts: Vec<String> = entries
        .chunks(per)
        .map(|chunk| {
            let mut xml = open.clone();
            for e in chunk {
                e.write_xml(&mut xml, ns);
            }
            xml
        })
        .collect();
    // the first part: the other top-level nodes and the container's own
    // leaves and lists
    let first = &mut parts[0];
    for c in big.elements().filter(|c| !is_entry(list, c)) {
        c.write_xml(first, ns);
    }
    for p in &mut parts {
        p.push_str(&format!("</{}>", list.container));
    }
    for el in config.elements().filter(|el| !std::ptr::eq(*el, big)) {
        el.write_xml(&mut parts[0], "");
    }
    parts
}

/// Resolve a top-level element to its schema node.
pub fn top_schema(el: &Element) -> Result<SchemaNode<'static>, RpcError> {
    let Some(module) = context().get_module_implemented_ns(&el.ns) else {
        return Err(RpcError::new(
            ErrorType::Application,
            ErrorTag::UnknownNamespace,
            format!("unknown namespace '{}'", el.ns),
        )
        .with_info("bad-element", el.name.clone())
        .with_info("bad-namespace", el.ns.clone()));
    };
    find_child(module.data(), el).ok_or_else(|| unknown_element(el, "/".to_string()))
}

/// The first of `siblings` that repeats an earlier one where the schema
/// allows a single instance (a leaf, a container, a list's key: only list
/// entries and leaf-list values repeat), with the schema of the parent
/// (None: the top level). Elements the schema does not know are left to
/// the walk, which reports them.
fn repeated_single<'e>(
    parent: Option<&SchemaNode<'static>>,
    siblings: impl Iterator<Item = &'e Element>,
) -> Option<&'e Element> {
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for el in siblings {
        let schema = match parent {
            Some(p) => find_child(p.children(), el),
            None => top_schema(el).ok(),
        };
        let single = schema
            .is_some_and(|s| !matches!(s.kind(), SchemaNodeKind::List | SchemaNodeKind::LeafList));
        if single && !seen.insert((el.ns.as_str(), el.name.as_str())) {
            return Some(el);
        }
    }
    None
}

/// Whether a parsed tree holds, below its top level, two instances of a
/// node the schema allows once, or two entries of a list with the same
/// keys (two equal leaf-list values): libyang's parse without validation
/// takes them, and its merge and validation then crash on them. The walk
/// takes such an edit instead (a list entry given twice is merged twice,
/// a leaf given twice is refused).
pub fn parsed_duplicates(tree: &DataTree<'static>) -> bool {
    let Some(first) = tree.reference() else {
        return false;
    };
    let mut pending: Vec<_> = first.inclusive_siblings().collect();
    while let Some(node) = pending.pop() {
        let mut seen = BTreeSet::new();
        for c in node.children() {
            let s = c.schema();
            let which = match s.kind() {
                SchemaNodeKind::List => c
                    .list_keys()
                    .map(|k| k.value_canonical().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\u{0}"),
                SchemaNodeKind::LeafList => c.value_canonical().unwrap_or_default(),
                _ => String::new(),
            };
            if !seen.insert((s.module().name().to_string(), s.name().to_string(), which)) {
                return true;
            }
            if matches!(s.kind(), SchemaNodeKind::Container | SchemaNodeKind::List) {
                pending.push(c);
            }
        }
    }
    false
}

/// Whether an element below the top level of `config` repeats a sibling
/// the schema allows once ([`repeated_single`]). Top-level elements given
/// twice (clients send a module's container once per part of an edit)
/// are merged, by the fast path as by the walk.
fn has_repeated_single(config: &Element) -> bool {
    first_repeated(config).is_some()
}

/// The first element below the top level of `config` that repeats a
/// sibling the schema allows once ([`repeated_single`]), said with the
/// path of its parent (`/dhcp-server/ip-pool`). A loop, not a recursion:
/// the `<config>` may come from a peer.
fn first_repeated(config: &Element) -> Option<String> {
    let said = |el: &Element, parent: &str| {
        format!(
            "<{}> is given more than once in {parent}: its parent holds one",
            el.name
        )
    };
    let mut pending: Vec<(&Element, SchemaNode<'static>, String)> = config
        .elements()
        .filter_map(|el| {
            top_schema(el)
                .ok()
                .map(|s| (el, s, format!("/{}", el.name)))
        })
        .collect();
    while let Some((el, schema, path)) = pending.pop() {
        if !matches!(
            schema.kind(),
            SchemaNodeKind::Container | SchemaNodeKind::List
        ) {
            continue;
        }
        if let Some(twice) = repeated_single(Some(&schema), el.elements()) {
            return Some(said(twice, &path));
        }
        pending.extend(el.elements().filter_map(|c| {
            find_child(schema.children(), c).map(|s| (c, s, format!("{path}/{}", c.name)))
        }));
    }
    None
}

/// The first element of a whole configuration document (top-level
/// elements, as the startup file holds them) that repeats, below the top
/// level, a sibling the schema allows once, said with its parent's path:
/// libyang's parse takes such data and then crashes on it (in its merge
/// and its validation), so it is checked before libyang sees it (a
/// top-level element given twice libyang refuses itself). None when there
/// is none, or when the text is not well-formed XML (libyang's parse says
/// what is wrong then).
pub fn repeated_in_document(xml: &str) -> Option<String> {
    let config = crate::xml::parse(&format!("<config xmlns=\"{NC_NS}\">{xml}</config>")).ok()?;
    first_repeated(&config)
}

/// An element given more than once where its parent may hold it once.
fn repeated_element(el: &Element, parent: String) -> RpcError {
    RpcError::bad_element(
        ErrorType::Application,
        ErrorTag::BadElement,
        &el.name,
        &format!(
            "<{}> is given more than once: its parent holds one",
            el.name
        ),
    )
    .with_path(Some(parent))
}

/// An element the schema does not have under its parent; the error-path is
/// the parent's (`/` for a top-level element: the datastore's root), the
/// element itself is named in error-info (RFC 6241 Appendix A).
fn unknown_element(el: &Element, parent: String) -> RpcError {
    RpcError::bad_element(
        ErrorType::Application,
        ErrorTag::UnknownElement,
        &el.name,
        &format!("unknown element <{}>", el.name),
    )
    .with_path(Some(parent))
}

/// The name of the last node of a data path (`/m:a/b[k='x/y']/c` is `c`).
fn last_name(path: &str) -> &str {
    let mut start = 0;
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut end = path.len();
    for (i, c) in path.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') if depth > 0 => quote = Some(c),
            (None, '[') => {
                if depth == 0 && end == path.len() {
                    end = i;
                }
                depth += 1;
            }
            (None, ']') => depth -= 1,
            (None, '/') if depth == 0 => {
                start = i + 1;
                end = path.len();
            }
            _ => {}
        }
    }
    let step = &path[start..end.max(start)];
    step.rsplit(':').next().unwrap_or(step)
}

/// Find the schema child matching an element, looking through choices and
/// cases (which have no data node of their own).
pub fn find_child<'a>(
    children: impl Iterator<Item = SchemaNode<'a>>,
    el: &Element,
) -> Option<SchemaNode<'a>> {
    for s in children {
        match s.kind() {
            SchemaNodeKind::Choice | SchemaNodeKind::Case => {
                if let Some(found) = find_child(s.children(), el) {
                    return Some(found);
                }
            }
            _ => {
                if s.name() == el.name && s.module().namespace() == el.ns {
                    return Some(s);
                }
            }
        }
    }
    None
}

/// The value to store for a leaf: strings keep their text, other types are
/// trimmed (XML indentation around a number is not part of it).
fn leaf_value(schema: &SchemaNode<'_>, el: &Element) -> String {
    let text = el.text();
    let keep = schema
        .leaf_type()
        .is_some_and(|t| matches!(t.base_type(), DataValueType::String | DataValueType::Binary));
    if keep {
        text
    } else {
        text.trim().to_string()
    }
}

/// Remove a node; when it is the tree's first top-level sibling the tree's
/// root pointer moves to the next sibling (yang2's own `remove` would leave
/// it dangling).
pub fn remove_path(tree: &mut DataTree<'static>, path: &str) {
    let Ok(node) = tree.find_path(path) else {
        return;
    };
    let raw = node.raw();
    let old = std::mem::replace(tree, yang::empty());
    let mut root = old.into_raw();
    // SAFETY: `raw` is a node of the tree whose ownership we just took back
    // from yang2; when it is the first sibling the root moves to its next
    // sibling before libyang unlinks and frees it, and the remaining siblings
    // are handed back to a new DataTree.
    unsafe {
        if root == raw {
            root = (*raw).next;
        }
        yang2::ffi::lyd_free_tree(raw);
        *tree = DataTree::from_raw(context(), root);
    }
}

impl Editor<'_> {
    fn fail(&mut self, e: RpcError) -> Result<(), Stop> {
        self.errors.push(e);
        if self.continue_on_error {
            Ok(())
        } else {
            Err(Stop)
        }
    }

    /// Does a non-default node exist at `path`?
    fn exists(&self, path: &str) -> bool {
        self.tree
            .find_path(path)
            .map(|n| !n.is_default())
            .unwrap_or(false)
    }

    /// The (first) key value of the list entry at `path`, as stored.
    fn key_at(&self, path: &str) -> Option<String> {
        let node = self.tree.find_path(path).ok()?;
        let key = node.list_keys().next()?;
        key.value_canonical()
    }

    /// Does any node (default or not) exist at `path`?
    fn exists_any(&self, path: &str) -> bool {
        self.tree.find_path(path).is_ok()
    }

    /// Create `path` (with `value`); `subjects` are the values the path
    /// carries, for the error when libyang refuses one.
    fn set(
        &mut self,
        path: &str,
        value: Option<&str>,
        name: &str,
        subjects: &[Subject<'_>],
    ) -> Result<(), Stop> {
        yang::clear_errors();
        match self.tree.new_path(path, value, false) {
            Ok(_) => Ok(()),
            Err(e) => {
                // EEXIST on an existing inner node is not an error.
                if e.errcode == yang2::ffi::LY_ERR::LY_EEXIST {
                    return Ok(());
                }
                let ly = yang::take_errors();
                let first = ly.first();
                let mut msg = first
                    .map(|l| l.message.clone())
                    .or(e.msg)
                    .unwrap_or_else(|| "invalid value".into());
                // libyang names no node for a value given in a path: the
                // refused one is the value libyang refuses for its node
                let at = first.and_then(|l| l.path.as_deref()).map(last_name);
                let subject = subjects
                    .iter()
                    .find(|(s, v)| at.is_none_or(|at| at == s.name()) && allowed::refuses(s, v));
                if let Some((schema, value)) = subject {
                    msg = allowed::value_message(schema, value, &msg);
                }
                let mut err = RpcError::application(ErrorTag::InvalidValue, msg)
                    .with_path(Some(xml_path(path)))
                    .with_info("bad-element", name);
                // A pattern or range with its own error-app-tag keeps it.
                err.app_tag = first.and_then(|l| l.apptag.clone()).or(e.apptag);
                self.fail(err)
            }
        }
    }

    fn edit(
        &mut self,
        parent: Option<&str>,
        el: &Element,
        schema: SchemaNode<'static>,
        inherited: EditOp,
    ) -> Result<(), Stop> {
        let op = match el.attr(Some(NC_NS), "operation") {
            None => inherited,
            Some(v) => match EditOp::parse(v) {
                Some(op) => op,
                None => {
                    return self.fail(
                        RpcError::protocol(
                            ErrorTag::BadAttribute,
                            format!("unknown operation '{v}'"),
                        )
                        .with_info("bad-attribute", "operation")
                        .with_info("bad-element", el.name.clone()),
                    )
                }
            },
        };
        if !schema.is_config() {
            return self.fail(RpcError::bad_element(
                ErrorType::Application,
                ErrorTag::InvalidValue,
                &el.name,
                &format!("<{}> is state data and cannot be configured", el.name),
            ));
        }
        // Data path of this node.
        let module = schema.module();
        let step = match parent {
            None => format!("/{}:{}", module.name(), schema.name()),
            Some(p) => format!("{p}/{}:{}", module.name(), schema.name()),
        };
        match schema.kind() {
            SchemaNodeKind::Leaf => {
                let value = leaf_value(&schema, el);
                let empty_type = schema
                    .leaf_type()
                    .is_some_and(|t| t.base_type() == DataValueType::Empty);
                let value = if empty_type { None } else { Some(value) };
                let subjects: Vec<Subject<'_>> = value
                    .as_deref()
                    .map(|v| (schema.clone(), v))
                    .into_iter()
                    .collect();
                self.leaf(&step, value.as_deref(), el, op, &subjects)
            }
            SchemaNodeKind::LeafList => {
                let value = leaf_value(&schema, el);
                let Some(q) = yang::path_literal(&value) else {
                    return self.fail(unaddressable(&step, &el.name));
                };
                let subjects = [(schema.clone(), value.as_str())];
                self.leaf(&format!("{step}[.={q}]"), None, el, op, &subjects)
            }
            SchemaNodeKind::Container => self.inner(&step, el, &schema, op, &[]),
            SchemaNodeKind::List => {
                let mut path = step;
                let mut keys: Vec<(SchemaNode<'static>, String)> = Vec::new();
                for k in schema.list_keys() {
                    let Some(kel) = el
                        .elements()
                        .find(|c| c.name == k.name() && c.ns == k.module().namespace())
                    else {
                        return self.fail(
                            RpcError::bad_element(
                                ErrorType::Protocol,
                                ErrorTag::MissingElement,
                                k.name(),
                                &format!("list <{}> entry lacks its key <{}>", el.name, k.name()),
                            )
                            .with_path(Some(xml_path(&path))),
                        );
                    };
                    let value = leaf_value(&k, kel);
                    let Some(q) = yang::path_literal(&value) else {
                        return self.fail(unaddressable(&path, k.name()));
                    };
                    path.push_str(&format!("[{}={q}]", k.name()));
                    keys.push((k, value));
                }
                // An entry of an `ENTRY_LISTS` list, keyed as the tree holds
                // it (before a delete, after a create), for the commit's
                // scope.
                let list = ENTRY_LISTS.iter().find(|l| {
                    l.list == schema.name()
                        && l.module == module.name()
                        && parent.is_some_and(|p| p == l.container_path())
                });
                let before = if list.is_some() {
                    self.key_at(&path)
                } else {
                    None
                };
                let r = self.inner(&path, el, &schema, op, &keys);
                if let Some(list) = list {
                    if let Some(key) = before.or_else(|| self.key_at(&path)) {
                        self.entries.insert(Entry { list: *list, key });
                    }
                }
                r
            }
            _ => self.fail(RpcError::bad_element(
                ErrorType::Application,
                ErrorTag::OperationNotSupported,
                &el.name,
                "this kind of node cannot be edited",
            )),
        }
    }

    fn leaf(
        &mut self,
        path: &str,
        value: Option<&str>,
        el: &Element,
        op: EditOp,
        subjects: &[Subject<'_>],
    ) -> Result<(), Stop> {
        match op {
            EditOp::None => Ok(()),
            EditOp::Merge | EditOp::Replace => self.set(path, value, &el.name, subjects),
            EditOp::Create => {
                if self.exists(path) {
                    self.fail(data_exists(path, &el.name))
                } else {
                    self.set(path, value, &el.name, subjects)
                }
            }
            EditOp::Delete => {
                if self.exists(path) {
                    remove_path(self.tree, path);
                    Ok(())
                } else {
                    self.fail(data_missing(path, &el.name))
                }
            }
            EditOp::Remove => {
                if self.exists(path) {
                    remove_path(self.tree, path);
                }
                Ok(())
            }
        }
    }

    fn inner(
        &mut self,
        path: &str,
        el: &Element,
        schema: &SchemaNode<'static>,
        op: EditOp,
        keys: &[(SchemaNode<'static>, String)],
    ) -> Result<(), Stop> {
        if let Some(twice) = repeated_single(Some(schema), el.elements()) {
            return self.fail(repeated_element(twice, xml_path(path)));
        }
        let child_op = match op {
            EditOp::Create => {
                if self.exists(path) {
                    return self.fail(data_exists(path, &el.name));
                }
                self.ensure(path, &el.name, keys)?;
                EditOp::Merge
            }
            EditOp::Merge => {
                self.ensure(path, &el.name, keys)?;
                EditOp::Merge
            }
            EditOp::Replace => {
                if self.exists_any(path) {
                    remove_path(self.tree, path);
                }
                self.ensure(path, &el.name, keys)?;
                EditOp::Merge
            }
            EditOp::Delete => {
                if self.exists(path) {
                    remove_path(self.tree, path);
                    return Ok(());
                }
                return self.fail(data_missing(path, &el.name));
            }
            EditOp::Remove => {
                if self.exists_any(path) {
                    remove_path(self.tree, path);
                }
                return Ok(());
            }
            EditOp::None => {
                // RFC 6241 §7.2: with "none", a level missing from the
                // datastore is data-missing, even when a descendant asks for
                // merge (so a delete never creates its parents by accident).
                if !self.exists_any(path) {
                    return self.fail(data_missing(path, &el.name));
                }
                EditOp::None
            }
        };
        for child in el.elements() {
            if keys.iter().any(|(k, _)| k.name() == child.name) {
                continue;
            }
            let Some(cs) = find_child(schema.children(), child) else {
                self.fail(unknown_element(child, xml_path(path)))?;
                continue;
            };
            self.edit(Some(path), child, cs, child_op)?;
        }
        Ok(())
    }

    /// Make sure an inner node exists (creating a list entry creates its
    /// `keys`).
    fn ensure(
        &mut self,
        path: &str,
        name: &str,
        keys: &[(SchemaNode<'static>, String)],
    ) -> Result<(), Stop> {
        if self.exists_any(path) {
            return Ok(());
        }
        let subjects: Vec<Subject<'_>> =
            keys.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
        self.set(path, None, name, &subjects)
    }
}

fn data_exists(path: &str, name: &str) -> RpcError {
    RpcError::application(ErrorTag::DataExists, "the data already exists")
        .with_path(Some(xml_path(path)))
        .with_info("bad-element", name)
}

/// A key or leaf-list value that holds both `'` and `"`: no path (libyang's
/// or XPath 1.0's) can quote it.
fn unaddressable(path: &str, name: &str) -> RpcError {
    RpcError::application(
        ErrorTag::InvalidValue,
        format!("the value of <{name}> holds both ' and \": such a key or leaf-list value cannot be addressed"),
    )
    .with_path(Some(xml_path(path)))
    .with_info("bad-element", name)
}

fn data_missing(path: &str, name: &str) -> RpcError {
    RpcError::application(ErrorTag::DataMissing, "the data does not exist")
        .with_path(Some(xml_path(path)))
        .with_info("bad-element", name)
}

/// The rpc-errors of validating `tree`: a reference to nothing also says
/// what exists (`allowed::reference_message`).
pub fn validation_errors(tree: &DataTree<'static>, errs: &[yang::LyError]) -> Vec<RpcError> {
    errs.iter()
        .map(|e| {
            let mut err = from_ly(e);
            if err.app_tag.as_deref() == Some("instance-required") {
                if let Some(m) = e
                    .path
                    .as_deref()
                    .and_then(|p| allowed::reference_message(tree, p))
                {
                    err.message = Some(m);
                }
            }
            err
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(body: &str) -> Element {
        crate::xml::parse(&format!(r#"<config xmlns="{NC_NS}">{body}</config>"#)).unwrap()
    }

    fn pool(name: &str, i: u32, lease: u32) -> String {
        format!(
            "<ip-pool><name>{name}</name><gateway>10.0.{i}.1</gateway><mask>255.255.255.0</mask>\
             <lease-time>{lease}</lease-time></ip-pool>"
        )
    }

    fn dhcp(body: &str) -> Element {
        config(&format!(
            r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">{body}</dhcp-server>"#
        ))
    }

    /// An edit of pools only is merged into copies of the pools it
    /// touches, and gives the datastore a whole-tree merge would.
    #[test]
    fn entry_edits_merge_into_copies_of_what_they_touch() {
        let mut tree = yang::empty();
        let three: String = (1..=3).map(|i| pool(&format!("p{i}"), i, 3600)).collect();
        fast_path(&mut tree, &dhcp(&three), EditOp::Merge).unwrap();
        let vrrp = config(
            r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip></group></vrrp>"#,
        );
        fast_path(&mut tree, &vrrp, EditOp::Merge).unwrap();
        let edit = dhcp(&(pool("p2", 2, 7200) + &pool("p4", 4, 60)));
        let parsed = yang::parse_config_xml(&xml_parts(&edit).concat()).unwrap();
        assert!(only_entries(&parsed), "a pool edit takes the entry path");
        assert!(!only_entries(
            &yang::parse_config_xml(&xml_parts(&vrrp).concat()).unwrap()
        ));

        let mut whole = yang::dup(&tree);
        let reference = merge_all(yang::dup(&whole), std::iter::once(parsed)).unwrap();
        let entries = fast_path(&mut whole, &edit, EditOp::Merge).unwrap();
        assert_eq!(entries.len(), 2);
        let (mut a, mut b) = (whole, reference);
        yang::validate(&mut a).unwrap();
        yang::validate(&mut b).unwrap();
        assert_eq!(
            crate::config::Config::try_from(&a).unwrap(),
            crate::config::Config::try_from(&b).unwrap()
        );
        let printed = yang::print_xml(&a, yang::WithDefaults::Explicit);
        assert!(printed.contains("<vrrp"), "{printed}");
        assert_eq!(printed.matches("<ip-pool>").count(), 4, "{printed}");
        assert!(
            printed.contains("<lease-time>7200</lease-time>"),
            "{printed}"
        );
    }

    #[test]
    fn the_last_name_of_a_path_skips_predicates_and_prefixes() {
        assert_eq!(
            last_name("/hotlease-vrrp:vrrp/group[interface='eth0']/vrid"),
            "vrid"
        );
        assert_eq!(last_name("/m:a/b[k='x/y'][j=\"]/\"]"), "b");
        assert_eq!(last_name("/m:a/ll[.='1']"), "ll");
        assert_eq!(last_name("/m:a"), "a");
    }

    /// A refused value names the node, the value and what is allowed,
    /// also when it is a list key; the error-path stays the node's.
    #[test]
    fn value_errors_say_what_is_allowed() {
        let edit = |body: &str| {
            let mut tree = yang::empty();
            let cfg = config(&format!(
                r#"<vrrp xmlns="urn:hotlease:yang:vrrp">{body}</vrrp>"#
            ));
            apply(&mut tree, &cfg, EditOp::Merge, false, &mut BTreeSet::new()).unwrap_err()
        };
        let e = edit(
            "<group><interface>eth0</interface><vrid>1</vrid><priority>255</priority></group>",
        );
        assert_eq!(e[0].tag, ErrorTag::InvalidValue);
        assert_eq!(
            e[0].message.as_deref(),
            Some("priority must be 1..254, not \"255\"")
        );
        assert_eq!(
            e[0].path.as_deref(),
            Some("/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']/vrrp:priority")
        );
        let e = edit("<group><interface>eth0</interface><vrid>0</vrid></group>");
        assert_eq!(
            e[0].message.as_deref(),
            Some("vrid must be 1..255, not \"0\"")
        );
        let e = edit("<group><interface>eth0</interface><vrid>1</vrid><virtual-ip>10.0.0.300</virtual-ip></group>");
        assert_eq!(
            e[0].message.as_deref(),
            Some("virtual-ip must be an ipv4-address-no-zone, not \"10.0.0.300\"")
        );
        // the module's own error-message stays
        let e = edit("<group><interface>a/b</interface><vrid>1</vrid></group>");
        assert_eq!(e[0].app_tag.as_deref(), Some("invalid-interface-name"));
        assert!(
            !e[0]
                .message
                .as_deref()
                .unwrap()
                .contains("must be a string"),
            "{e:?}"
        );
    }

    #[test]
    fn an_unknown_element_carries_its_parents_path() {
        let mut tree = yang::empty();
        let cfg = config(
            r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth0</interface><vrid>1</vrid><bogus/></group></vrrp>"#,
        );
        let e = apply(&mut tree, &cfg, EditOp::Merge, false, &mut BTreeSet::new()).unwrap_err();
        assert_eq!(e[0].tag, ErrorTag::UnknownElement);
        assert_eq!(
            e[0].path.as_deref(),
            Some("/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']")
        );
        assert_eq!(
            e[0].info,
            vec![("bad-element".to_string(), "bogus".to_string())]
        );
    }

    #[test]
    fn a_reference_to_nothing_lists_what_exists() {
        let mut tree = yang::parse_config_xml(
            r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth0</interface><vrid>1</vrid><virtual-ip>10.0.0.1</virtual-ip></group><group><interface>eth0</interface><vrid>2</vrid><virtual-ip>10.0.0.2</virtual-ip></group></vrrp>
               <remote-backup-profile xmlns="urn:hotlease:yang:remote-backup"><name>p</name><peer-backup>hot</peer-backup><vrrp><vrid>9</vrid><interface>eth0</interface></vrrp><backup-id>1</backup-id><remote-backup-service>ghost</remote-backup-service><service-type>dhcp-server</service-type></remote-backup-profile>"#,
        )
        .unwrap();
        let errs = yang::validate(&mut tree).unwrap_err();
        let messages: Vec<String> = validation_errors(&tree, &errs)
            .into_iter()
            .filter(|e| e.app_tag.as_deref() == Some("instance-required"))
            .filter_map(|e| e.message)
            .collect();
        assert!(
            messages.contains(
                &"vrid must be the vrid of an existing group (1, 2), not \"9\"".to_string()
            ),
            "{messages:?}"
        );
        assert!(
            messages.contains(
                &"remote-backup-service must be the name of an existing remote-backup-service (there is none), not \"ghost\"".to_string()
            ),
            "{messages:?}"
        );
    }
}

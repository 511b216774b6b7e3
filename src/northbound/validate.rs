//! Commit-time validation whose cost follows the size of the change.
//!
//! libyang validates whole trees. The northbound records which parts of the
//! candidate each edit touched (`Scope`). Some lists hold thousands of
//! entries whose YANG rules read only their own entry, their container's
//! leaves and the small trees of other modules, never another entry: the
//! `config::ENTRY_LISTS` (today the DHCP pools), whose subsystems check the
//! rules across entries in Rust (`Config::check`). When a commit touches
//! only entries of such lists (the common case at scale: thousands of
//! pools, one edited), the entries that did not change were valid in
//! running and no rule of another entry can make them invalid. So libyang
//! is given a reduced tree — everything except the unchanged entries — and
//! the validated copies of the changed entries are spliced into the new
//! running tree. Any other change validates the whole candidate.
//!
//! A large change of entries (hundreds of pools: a controller pushing a
//! site's configuration) is split into one reduced tree per CPU, validated
//! on scoped threads (`yang::validate_parts`): each entry's rules read only
//! that entry and the small trees every part carries, so the parts are
//! independent.

#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::time::Instant;

use tracing::debug;

use yang2::data::{Data, DataNodeRef, DataTree};
use yang2::ffi;
use yang2::utils::Binding;

use super::edit;
use super::error::{self, RpcError};
use crate::config::{Config, ENTRY_LISTS};
use crate::xml::{Element, NC_NS};
use crate::yang::{self, context, Entry, EntryList};

/// What the edits since the last commit (or discard) may have changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Entries of the `ENTRY_LISTS` whose subtree an edit touched.
    pub entries: BTreeSet<Entry>,
    /// Anything else: the whole candidate is validated.
    pub other: bool,
}

impl Scope {
    /// Everything may have changed.
    pub fn all() -> Scope {
        Scope {
            entries: BTreeSet::new(),
            other: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.other && self.entries.is_empty()
    }

    pub fn merge(&mut self, other: Scope) {
        self.other |= other.other;
        self.entries.extend(other.entries);
    }

    /// The parts of the datastore an `<edit-config>` touches: `entries`,
    /// the list entries the edit engine reports (keyed as the tree holds
    /// them, never as the XML text: libyang keeps a name's spaces), and
    /// whatever the `<config>` holds that is not an entry of one of the
    /// `ENTRY_LISTS` in its container.
    pub fn of_edit(config: &Element, entries: impl IntoIterator<Item = Entry>) -> Scope {
        let mut scope = Scope {
            entries: entries.into_iter().collect(),
            other: false,
        };
        for top in config.elements() {
            let list = ENTRY_LISTS
                .iter()
                .find(|l| top.ns == l.namespace && top.name == l.container);
            let Some(list) = list else {
                scope.other = true;
                continue;
            };
            if top.attr(Some(NC_NS), "operation").is_some() {
                scope.other = true;
                continue;
            }
            let only_entries = top.elements().all(|c| {
                c.ns == list.namespace
                    && c.name == list.list
                    && c.child(list.namespace, list.key).is_some()
            });
            scope.other |= !only_entries;
        }
        scope
    }
}

/// How the new running tree is made from the candidate.
#[derive(Debug)]
enum Build {
    /// Nothing changed: running stays.
    Unchanged,
    /// The whole candidate, validated (with its defaults).
    Whole(DataTree<'static>),
    /// The candidate with these entries replaced by their validated
    /// copies, each found in one of `parts`.
    Entries {
        parts: Vec<DataTree<'static>>,
        entries: BTreeSet<Entry>,
    },
}

/// A validated candidate: its typed configuration, and how to build the
/// new running tree from it.
#[derive(Debug)]
pub struct Validated {
    pub config: Config,
    build: Build,
}

impl Validated {
    /// A tree known to be valid (a rollback point), taken as is.
    pub fn whole(tree: DataTree<'static>) -> Result<Validated, Vec<RpcError>> {
        let config = Config::try_from(&tree).map_err(|e| vec![e.into()])?;
        Ok(Validated {
            config,
            build: Build::Whole(tree),
        })
    }

    pub fn changed(&self) -> bool {
        !matches!(self.build, Build::Unchanged)
    }

    /// The list entries this change replaces, when it changes only those
    /// (otherwise None: the whole tree may differ).
    pub fn entries(&self) -> Option<&BTreeSet<Entry>> {
        match &self.build {
            Build::Entries { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// Make `running` the validated configuration and `candidate` equal to
    /// it; returns the typed configuration. For a change of list entries
    /// only, both trees get copies of the validated entries (the rest of
    /// them is already equal), so the cost follows the change, not the
    /// datastore.
    pub fn install(
        self,
        running: &mut DataTree<'static>,
        candidate: &mut DataTree<'static>,
    ) -> Config {
        match self.build {
            Build::Unchanged => {}
            Build::Whole(tree) => {
                *candidate = yang::dup(&tree);
                *running = tree;
            }
            Build::Entries { parts, entries } => {
                for (list, keys) in by_list(&entries) {
                    splice(candidate, &parts, list, &keys, false);
                    splice(running, &parts, list, &keys, true);
                }
            }
        }
        self.config
    }
}

/// Duplicate `node` (recursively unless `shallow`) under `parent`, or as a
/// new top-level sibling of `*head` when `parent` is null.
///
/// # Safety
/// `node` must be a live node; `parent` null or a live inner node of the
/// tree whose first top-level sibling is `*head`.
unsafe fn dup_into(
    node: *mut ffi::lyd_node,
    parent: *mut ffi::lyd_node,
    head: &mut *mut ffi::lyd_node,
    shallow: bool,
) -> *mut ffi::lyd_node {
    let mut opts = ffi::LYD_DUP_WITH_FLAGS;
    if !shallow {
        opts |= ffi::LYD_DUP_RECURSIVE;
    }
    let mut copy = std::ptr::null_mut();
    // SAFETY: per the function contract.
    unsafe {
        let rc = ffi::lyd_dup_single(node, parent as *mut ffi::lyd_node_inner, opts, &mut copy);
        assert_eq!(rc, ffi::LY_ERR::LY_SUCCESS, "libyang duplicate");
        if parent.is_null() {
            let rc = ffi::lyd_insert_sibling(*head, copy, head);
            assert_eq!(rc, ffi::LY_ERR::LY_SUCCESS, "libyang insert");
        }
    }
    copy
}

/// The candidate without the list entries that did not change (every
/// entry of the `ENTRY_LISTS` not in `entries`).
fn reduced(candidate: &DataTree<'static>, entries: &BTreeSet<Entry>) -> DataTree<'static> {
    let mut head: *mut ffi::lyd_node = std::ptr::null_mut();
    if let Some(first) = candidate.reference() {
        for top in first.inclusive_siblings() {
            let list = ENTRY_LISTS.iter().find(|l| l.is_container(&top));
            // SAFETY: nodes come from `candidate`, alive for this call; the
            // copies form a new tree rooted at `head`.
            unsafe {
                let Some(list) = list else {
                    dup_into(top.raw(), std::ptr::null_mut(), &mut head, false);
                    continue;
                };
                let container = dup_into(top.raw(), std::ptr::null_mut(), &mut head, true);
                for child in top.children() {
                    let keep = !list.is_entry(&child)
                        || EntryList::key_of(&child)
                            .is_some_and(|key| entries.contains(&Entry { list: *list, key }));
                    if keep {
                        dup_into(child.raw(), container, &mut head, false);
                    }
                }
            }
        }
    }
    // SAFETY: `head` is the first sibling of the new tree, owned by nobody.
    unsafe { DataTree::from_raw(context(), head) }
}

/// The containers of the `ENTRY_LISTS` with copies of the named entries
/// that `tree` holds (an edit merged into it touches nothing of `tree`).
pub(super) fn entries_copy(
    tree: &DataTree<'static>,
    entries: &BTreeSet<Entry>,
) -> DataTree<'static> {
    let mut head: *mut ffi::lyd_node = std::ptr::null_mut();
    if let Some(first) = tree.reference() {
        for top in first.inclusive_siblings() {
            let Some(list) = ENTRY_LISTS.iter().find(|l| l.is_container(&top)) else {
                continue;
            };
            // SAFETY: nodes come from `tree`, alive for this call; the
            // copies form a new tree rooted at `head`.
            unsafe {
                let container = dup_into(top.raw(), std::ptr::null_mut(), &mut head, true);
                for child in top.children() {
                    let named = list.is_entry(&child)
                        && EntryList::key_of(&child)
                            .is_some_and(|key| entries.contains(&Entry { list: *list, key }));
                    if named {
                        dup_into(child.raw(), container, &mut head, false);
                    }
                }
            }
        }
    }
    // SAFETY: `head` is the first sibling of the new tree, owned by nobody.
    unsafe { DataTree::from_raw(context(), head) }
}

/// Move the named entries of `part` into `tree`, each replacing its
/// namesake (an edit merged into `entries_copy`).
pub(super) fn splice_entries(
    tree: &mut DataTree<'static>,
    part: DataTree<'static>,
    entries: &BTreeSet<Entry>,
) {
    let parts = [part];
    for (list, keys) in by_list(entries) {
        splice(tree, &parts, list, &keys, true);
    }
}

/// The keys of `entries`, per list of the `ENTRY_LISTS` that has some.
fn by_list(entries: &BTreeSet<Entry>) -> Vec<(&'static EntryList, BTreeSet<&str>)> {
    ENTRY_LISTS
        .iter()
        .map(|list| {
            let keys = entries
                .iter()
                .filter(|e| e.list == *list)
                .map(|e| e.key.as_str())
                .collect::<BTreeSet<&str>>();
            (list, keys)
        })
        .filter(|(_, keys)| !keys.is_empty())
        .collect()
}

/// Replace the named entries of `list` in `tree` by the validated ones of
/// `parts`, copied, or moved out of the parts when `take` (a named entry
/// found in no part was deleted). Entries are matched through libyang's key
/// hash, so the cost follows the number of changed entries.
fn splice(
    tree: &mut DataTree<'static>,
    parts: &[DataTree<'static>],
    list: &EntryList,
    keys: &BTreeSet<&str>,
    take: bool,
) {
    let container_path = list.container_path();
    if tree.find_path(&container_path).is_err() {
        let _ = tree.new_path(&container_path, None, false);
    }
    let Ok(container) = tree.find_path(&container_path) else {
        return;
    };
    let container = container.raw();
    // Every entry of a part is a changed one (see `reduced`); a part holds
    // the entries of every list in scope, so keep this list's named ones.
    let named = |n: &DataNodeRef<'_, '_>| {
        list.is_entry(n) && EntryList::key_of(n).is_some_and(|k| keys.contains(k.as_str()))
    };
    let srcs: Vec<*mut ffi::lyd_node> = parts
        .iter()
        .filter_map(|part| part.find_path(&container_path).ok())
        .flat_map(|from| {
            from.children()
                .filter(named)
                .map(|n| n.raw())
                .collect::<Vec<_>>()
        })
        .collect();
    if srcs.len() < keys.len() {
        // A named entry found in no part was deleted (matched by key value,
        // not by a path: a key may hold any character).
        let in_parts: BTreeSet<String> = parts
            .iter()
            .filter_map(|part| part.find_path(&container_path).ok())
            .flat_map(|from| {
                from.children()
                    .filter(named)
                    .filter_map(|n| EntryList::key_of(&n))
                    .collect::<Vec<_>>()
            })
            .collect();
        let gone: Vec<*mut ffi::lyd_node> = tree
            .find_path(&container_path)
            .ok()
            .into_iter()
            .flat_map(|c| c.children().collect::<Vec<_>>())
            .filter(|n| {
                named(n) && EntryList::key_of(n).is_some_and(|key| !in_parts.contains(&key))
            })
            .map(|n| n.raw())
            .collect();
        for node in gone {
            // SAFETY: `node` is a list entry, a child of the container
            // (never the tree's first top-level sibling), freed once.
            unsafe { ffi::lyd_free_tree(node) };
        }
    }
    for src in srcs {
        // SAFETY: `container` is a live inner node of `tree` and `src` a
        // live entry of a part, both of our context. The old instance is
        // freed before its replacement goes in; a moved entry is unlinked
        // from its part first, which keeps the part a valid tree (only
        // children of its container move).
        unsafe {
            let first = (*(container as *mut ffi::lyd_node_inner)).child;
            let mut old = std::ptr::null_mut();
            if !first.is_null()
                && ffi::lyd_find_sibling_first(first, src, &mut old) == ffi::LY_ERR::LY_SUCCESS
            {
                ffi::lyd_free_tree(old);
            }
            if take {
                ffi::lyd_unlink_tree(src);
                let rc = ffi::lyd_insert_child(container, src);
                assert_eq!(rc, ffi::LY_ERR::LY_SUCCESS, "libyang insert");
            } else {
                let mut head = std::ptr::null_mut();
                dup_into(src, container, &mut head, false);
            }
        }
    }
}

/// Changed entries per thread below which one thread validates them all
/// (a thread and a copy of the small trees cost little, but not nothing).
const ENTRIES_PER_THREAD: usize = 100;

/// Validate the changed entries (with the other trees they may refer to),
/// on as many threads as the change is large and CPUs allow. Returns the
/// validated reduced trees, entries in key order across them; the errors
/// of every part, in that order, when any is invalid.
fn validate_entries(
    candidate: &DataTree<'static>,
    entries: &BTreeSet<Entry>,
) -> Result<Vec<DataTree<'static>>, Vec<RpcError>> {
    let threads = match entries.len() / ENTRIES_PER_THREAD {
        0 | 1 => 1,
        n => n.min(yang::cpus()),
    };
    if threads == 1 {
        let mut part = reduced(candidate, entries);
        yang::validate(&mut part).map_err(|e| edit::validation_errors(&part, &e))?;
        return Ok(vec![part]);
    }
    let all: Vec<&Entry> = entries.iter().collect();
    let per = all.len().div_ceil(threads);
    let parts: Vec<DataTree<'static>> = all
        .chunks(per)
        .map(|c| reduced(candidate, &c.iter().map(|e| (*e).clone()).collect()))
        .collect();
    let results = yang::validate_parts(parts);
    let mut errors: Vec<RpcError> = Vec::new();
    let mut trees = Vec::with_capacity(results.len());
    for (part, r) in results {
        match r {
            Ok(()) => trees.push(part),
            // Every part carries the same other trees: report an error
            // about them once.
            Err(e) => {
                for err in edit::validation_errors(&part, &e) {
                    if !errors.contains(&err) {
                        errors.push(err);
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(trees)
    } else {
        Err(errors)
    }
}

/// Validate the candidate for a commit (or `<validate>`, test-only).
pub fn candidate(
    running: &Config,
    candidate: &DataTree<'static>,
    scope: &Scope,
) -> Result<Validated, Vec<RpcError>> {
    let t0 = Instant::now();
    let (config, build) = if scope.is_empty() {
        (running.clone(), Build::Unchanged)
    } else if scope.other {
        let mut tree = yang::dup(candidate);
        yang::validate(&mut tree).map_err(|e| edit::validation_errors(&tree, &e))?;
        let config = Config::try_from(&tree).map_err(|e| vec![e.into()])?;
        (config, Build::Whole(tree))
    } else {
        let parts = validate_entries(candidate, &scope.entries)?;
        let config = running
            .with_entries(&parts, &scope.entries)
            .map_err(|e| vec![e.into()])?;
        let build = Build::Entries {
            parts,
            entries: scope.entries.clone(),
        };
        (config, build)
    };
    let t_valid = t0.elapsed();
    config.check().map_err(error::from_config)?;
    debug!(
        entries = scope.entries.len(),
        whole = scope.other,
        validate_us = t_valid.as_micros() as u64,
        cross_us = (t0.elapsed() - t_valid).as_micros() as u64,
        "candidate validated"
    );
    Ok(Validated { config, build })
}

/// Validate a whole tree (startup, inline configuration).
pub fn full(tree: &mut DataTree<'static>) -> Result<Config, Vec<RpcError>> {
    yang::validate(tree).map_err(|e| edit::validation_errors(tree, &e))?;
    let config = Config::try_from(&*tree).map_err(|e| vec![e.into()])?;
    config.check().map_err(error::from_config)?;
    Ok(config)
}

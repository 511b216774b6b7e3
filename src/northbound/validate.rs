//! Commit-time validation whose cost follows the size of the change.
//!
//! libyang validates whole trees. When a commit touches only DHCP pools
//! (the common case at scale: thousands of pools, one edited), the pools
//! that did not change were valid in running and no rule of another pool
//! can make them invalid: every YANG rule of a pool reads only its own pool,
//! the dhcp-server leaves and the small vrrp / remote-backup trees, and the
//! rules that compare pools with each other are checked in Rust
//! (`DhcpConfig::check_cross_pool`). So libyang is given a reduced tree —
//! everything except the unchanged pools — and the validated copies of the
//! changed pools are spliced into the new running tree. Any other change
//! validates the whole candidate.

#![allow(unsafe_code)]

use std::collections::BTreeSet;

use yang2::data::{Data, DataDiffFlags, DataNodeRef, DataTree};
use yang2::ffi;
use yang2::utils::Binding;

use crate::config::Config;
use crate::netconf::edit;
use crate::netconf::error::RpcError;
use crate::yang::{self, context};

const DHCP_MODULE: &str = "hotlease-dhcp-server";

/// The candidate, validated and ready to become running, with its typed form.
#[derive(Debug)]
pub struct Validated {
    pub tree: DataTree<'static>,
    pub config: Config,
    /// Whether it differs from running at all.
    pub changed: bool,
}

fn is_pool(node: &DataNodeRef<'_, '_>) -> bool {
    let s = node.schema();
    s.name() == "ip-pool" && s.module().name() == DHCP_MODULE
}

fn pool_name(node: &DataNodeRef<'_, '_>) -> Option<String> {
    node.list_keys().next().and_then(|k| k.value_canonical())
}

/// Names of the pools a diff touches, or None when it touches anything else.
fn changed_pools(
    running: &DataTree<'static>,
    candidate: &DataTree<'static>,
) -> Option<Option<BTreeSet<String>>> {
    let diff = running.diff(candidate, DataDiffFlags::DEFAULTS).ok()?;
    let mut pools = BTreeSet::new();
    for (_, node) in diff.iter() {
        let pool = node.inclusive_ancestors().find(is_pool)?;
        pools.insert(pool_name(&pool)?);
    }
    Some(if pools.is_empty() { None } else { Some(pools) })
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

/// The candidate without the pools that did not change.
fn reduced(candidate: &DataTree<'static>, pools: &BTreeSet<String>) -> DataTree<'static> {
    let mut head: *mut ffi::lyd_node = std::ptr::null_mut();
    if let Some(first) = candidate.reference() {
        for top in first.inclusive_siblings() {
            let is_dhcp = top.schema().module().name() == DHCP_MODULE;
            // SAFETY: nodes come from `candidate`, alive for this call; the
            // copies form a new tree rooted at `head`.
            unsafe {
                if !is_dhcp {
                    dup_into(top.raw(), std::ptr::null_mut(), &mut head, false);
                    continue;
                }
                let container = dup_into(top.raw(), std::ptr::null_mut(), &mut head, true);
                for child in top.children() {
                    let keep =
                        !is_pool(&child) || pool_name(&child).is_some_and(|n| pools.contains(&n));
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

/// Replace the named pools of `tree` by those of `validated`.
fn splice_pools(
    tree: &mut DataTree<'static>,
    validated: &DataTree<'static>,
    pools: &BTreeSet<String>,
) {
    let container_path = format!("/{DHCP_MODULE}:dhcp-server");
    for name in pools {
        let path = format!("{container_path}/ip-pool[name={}]", edit::quote(name));
        edit::remove_path(tree, &path);
        let Ok(src) = validated.find_path(&path) else {
            continue; // the pool was deleted
        };
        if tree.find_path(&container_path).is_err() {
            let _ = tree.new_path(&container_path, None, false);
        }
        let Ok(parent) = tree.find_path(&container_path) else {
            continue;
        };
        let mut head = std::ptr::null_mut();
        // SAFETY: both nodes are alive; the copy is inserted under `parent`.
        unsafe {
            dup_into(src.raw(), parent.raw(), &mut head, false);
        }
    }
}

/// Validate the candidate for a commit (or `<validate>`).
pub fn candidate(
    running: &DataTree<'static>,
    candidate: &DataTree<'static>,
) -> Result<Validated, Vec<RpcError>> {
    let (tree, changed) = match changed_pools(running, candidate) {
        Some(None) => (yang::dup(running), false),
        Some(Some(pools)) => {
            let mut part = reduced(candidate, &pools);
            yang::validate(&mut part).map_err(|e| edit::ly_errors(&e))?;
            let mut tree = yang::dup(candidate);
            splice_pools(&mut tree, &part, &pools);
            (tree, true)
        }
        None => {
            let mut tree = yang::dup(candidate);
            yang::validate(&mut tree).map_err(|e| edit::ly_errors(&e))?;
            (tree, true)
        }
    };
    let config = Config::try_from(&tree)?;
    config.dhcp.check_cross_pool()?;
    Ok(Validated {
        tree,
        config,
        changed,
    })
}

/// Validate a whole tree (startup, inline configuration).
pub fn full(tree: &mut DataTree<'static>) -> Result<Config, Vec<RpcError>> {
    yang::validate(tree).map_err(|e| edit::ly_errors(&e))?;
    let config = Config::try_from(&*tree)?;
    config.dhcp.check_cross_pool()?;
    Ok(config)
}

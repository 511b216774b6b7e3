//! Commit-time validation whose cost follows the size of the change.
//!
//! libyang validates whole trees. The northbound records which parts of the
//! candidate each edit touched (`Scope`). When a commit touches only DHCP pools
//! (the common case at scale: thousands of pools, one edited), the pools
//! that did not change were valid in running and no rule of another pool
//! can make them invalid: every YANG rule of a pool reads only its own pool,
//! the dhcp-server leaves and the small vrrp / remote-backup trees, and the
//! rules that compare pools with each other are checked in Rust
//! (`DhcpConfig::check_cross_pool`). So libyang is given a reduced tree —
//! everything except the unchanged pools — and the validated copies of the
//! changed pools are spliced into the new running tree. Any other change
//! validates the whole candidate.
//!
//! A large pool change (hundreds of pools: a controller pushing a site's
//! configuration) is split into one reduced tree per CPU, validated on
//! scoped threads (`yang::validate_parts`): each pool's rules read only that
//! pool and the small trees every part carries, so the parts are
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
use crate::config::Config;
use crate::dhcp::NS as DHCP_NS;
use crate::xml::{Element, NC_NS};
use crate::yang::{self, context};

const DHCP_MODULE: &str = "hotlease-dhcp-server";

/// What the edits since the last commit (or discard) may have changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Pools (by name) whose subtree an edit touched.
    pub pools: BTreeSet<String>,
    /// Anything else: the whole candidate is validated.
    pub other: bool,
}

impl Scope {
    /// Everything may have changed.
    pub fn all() -> Scope {
        Scope {
            pools: BTreeSet::new(),
            other: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.other && self.pools.is_empty()
    }

    pub fn merge(&mut self, other: Scope) {
        self.other |= other.other;
        self.pools.extend(other.pools);
    }

    /// The parts of the datastore an `<edit-config>` touches: `pools`, the
    /// pools the edit engine reports (their names as the tree holds them,
    /// never the XML text: libyang keeps a name's spaces), and whatever
    /// the `<config>` holds that is not a pool of `<dhcp-server>`.
    pub fn of_edit(config: &Element, pools: impl IntoIterator<Item = String>) -> Scope {
        let mut scope = Scope {
            pools: pools.into_iter().collect(),
            other: false,
        };
        for top in config.elements() {
            let is_dhcp = top.ns == DHCP_NS && top.name == "dhcp-server";
            if !is_dhcp || top.attr(Some(NC_NS), "operation").is_some() {
                scope.other = true;
                continue;
            }
            let only_pools = top.elements().all(|c| {
                c.ns == DHCP_NS && c.name == "ip-pool" && c.child(DHCP_NS, "name").is_some()
            });
            scope.other |= !only_pools;
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
    /// The candidate with these pools replaced by their validated copies,
    /// each found in one of `parts`.
    Pools {
        parts: Vec<DataTree<'static>>,
        pools: BTreeSet<String>,
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

    /// Make `running` the validated configuration and `candidate` equal to
    /// it; returns the typed configuration. For a pool-only change both
    /// trees get copies of the validated pools (the rest of them is already
    /// equal), so the cost follows the change, not the datastore.
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
            Build::Pools { parts, pools } => {
                splice_pools(candidate, &parts, &pools, false);
                splice_pools(running, &parts, &pools, true);
            }
        }
        self.config
    }
}

fn is_pool(node: &DataNodeRef<'_, '_>) -> bool {
    let s = node.schema();
    s.name() == "ip-pool" && s.module().name() == DHCP_MODULE
}

fn pool_name(node: &DataNodeRef<'_, '_>) -> Option<String> {
    node.list_keys().next().and_then(|k| k.value_canonical())
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

/// Replace the named pools of `tree` by the validated ones of `parts`,
/// copied, or moved out of the parts when `take` (a named pool found in no
/// part was deleted). Pools are matched through libyang's key hash, so the
/// cost follows the number of changed pools.
fn splice_pools(
    tree: &mut DataTree<'static>,
    parts: &[DataTree<'static>],
    pools: &BTreeSet<String>,
    take: bool,
) {
    let container_path = format!("/{DHCP_MODULE}:dhcp-server");
    if tree.find_path(&container_path).is_err() {
        let _ = tree.new_path(&container_path, None, false);
    }
    let Ok(container) = tree.find_path(&container_path) else {
        return;
    };
    let container = container.raw();
    // every pool of a part is a changed one (see `reduced`)
    let srcs: Vec<*mut ffi::lyd_node> = parts
        .iter()
        .filter_map(|part| part.find_path(&container_path).ok())
        .flat_map(|from| {
            from.children()
                .filter(is_pool)
                .map(|n| n.raw())
                .collect::<Vec<_>>()
        })
        .collect();
    if srcs.len() < pools.len() {
        // A named pool found in no part was deleted (matched by key value,
        // not by a path: a name may hold any character).
        let in_parts: BTreeSet<String> = parts
            .iter()
            .filter_map(|part| part.find_path(&container_path).ok())
            .flat_map(|from| {
                from.children()
                    .filter(is_pool)
                    .filter_map(|n| pool_name(&n))
                    .collect::<Vec<_>>()
            })
            .collect();
        let gone: Vec<*mut ffi::lyd_node> = tree
            .find_path(&container_path)
            .ok()
            .into_iter()
            .flat_map(|c| c.children().collect::<Vec<_>>())
            .filter(|n| {
                is_pool(n)
                    && pool_name(n)
                        .is_some_and(|name| pools.contains(&name) && !in_parts.contains(&name))
            })
            .map(|n| n.raw())
            .collect();
        for node in gone {
            // SAFETY: `node` is a pool, a child of the container (never
            // the tree's first top-level sibling), freed once.
            unsafe { ffi::lyd_free_tree(node) };
        }
    }
    for src in srcs {
        // SAFETY: `container` is a live inner node of `tree` and `src` a
        // live pool of a part, both of our context. The old instance is
        // freed before its replacement goes in; a moved pool is unlinked
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

/// Changed pools per thread below which one thread validates them all
/// (a thread and a copy of the small trees cost little, but not nothing).
const POOLS_PER_THREAD: usize = 100;

/// Validate the changed pools (with the non-pool trees they may refer to),
/// on as many threads as the change is large and CPUs allow. Returns the
/// validated reduced trees, pools in name order across them; the errors of
/// every part, in that order, when any is invalid.
fn validate_pools(
    candidate: &DataTree<'static>,
    pools: &BTreeSet<String>,
) -> Result<Vec<DataTree<'static>>, Vec<RpcError>> {
    let threads = match pools.len() / POOLS_PER_THREAD {
        0 | 1 => 1,
        n => n.min(yang::cpus()),
    };
    if threads == 1 {
        let mut part = reduced(candidate, pools);
        yang::validate(&mut part).map_err(|e| edit::ly_errors(&e))?;
        return Ok(vec![part]);
    }
    let names: Vec<&String> = pools.iter().collect();
    let per = names.len().div_ceil(threads);
    let parts: Vec<DataTree<'static>> = names
        .chunks(per)
        .map(|c| reduced(candidate, &c.iter().map(|n| (*n).clone()).collect()))
        .collect();
    let results = yang::validate_parts(parts);
    let mut errors: Vec<RpcError> = Vec::new();
    let mut trees = Vec::with_capacity(results.len());
    for (part, r) in results {
        match r {
            Ok(()) => trees.push(part),
            // Every part carries the same non-pool trees: report an error
            // about them once.
            Err(e) => {
                for err in edit::ly_errors(&e) {
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
        yang::validate(&mut tree).map_err(|e| edit::ly_errors(&e))?;
        let config = Config::try_from(&tree).map_err(|e| vec![e.into()])?;
        (config, Build::Whole(tree))
    } else {
        let parts = validate_pools(candidate, &scope.pools)?;
        let config = running
            .with_pools(&parts, &scope.pools)
            .map_err(|e| vec![e.into()])?;
        let build = Build::Pools {
            parts,
            pools: scope.pools.clone(),
        };
        (config, build)
    };
    let t_valid = t0.elapsed();
    config.dhcp.check_cross_pool().map_err(error::from_config)?;
    debug!(
        pools = scope.pools.len(),
        whole = scope.other,
        validate_us = t_valid.as_micros() as u64,
        cross_us = (t0.elapsed() - t_valid).as_micros() as u64,
        "candidate validated"
    );
    Ok(Validated { config, build })
}

/// Validate a whole tree (startup, inline configuration).
pub fn full(tree: &mut DataTree<'static>) -> Result<Config, Vec<RpcError>> {
    yang::validate(tree).map_err(|e| edit::ly_errors(&e))?;
    let config = Config::try_from(&*tree).map_err(|e| vec![e.into()])?;
    config.dhcp.check_cross_pool().map_err(error::from_config)?;
    Ok(config)
}

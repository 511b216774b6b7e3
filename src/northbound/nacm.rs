//! RFC 8341 NETCONF access control (NACM): the rules of `ietf-netconf-acm`
//! read from running, and the three checks the northbound makes with them
//! for a session's user: may it run this protocol operation (exec), which
//! data nodes of a reply may it read (the others are pruned from the tree
//! before it is filtered and printed), and may it make the changes an
//! operation would make to a datastore (the changed nodes come from
//! libyang's diff of the datastore before and after, with their
//! operation: create, update or delete).
//!
//! A user's groups are the `nacm/groups` that name it and, while
//! `enable-external-groups` is true, the groups its transport gives it:
//! the bootstrap file's `[[netconf.user]] groups` (`TransportGroups`).
//!
//! The northbound asks for a user's rules only when NACM is enabled and
//! the user is not the bootstrap file's recovery user: otherwise no check
//! runs and no data node is looked at. `nacm:default-deny-*` extensions
//! come from the compiled schema (`yang::default_deny`), not from a list
//! kept here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use yang2::data::{Data, DataDiffFlags, DataNodeRef, DataTree};

use crate::yang::{self, DefaultDeny};

pub const NS: &str = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm";
const ROOT: &str = "/ietf-netconf-acm:nacm";

/// The `access-operations` bits (RFC 8341 `access-operations-type`).
pub const READ: u8 = 1;
pub const CREATE: u8 = 2;
pub const UPDATE: u8 = 4;
pub const DELETE: u8 = 8;
pub const EXEC: u8 = 16;
const ALL: u8 = READ | CREATE | UPDATE | DELETE | EXEC;

/// What a rule is about (its `rule-type` choice; none: everything).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Any,
    Rpc(String),
    Notification(String),
    /// A data node instance identifier (canonical: module-name prefixes).
    Path(String),
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    module: String,
    target: Target,
    ops: u8,
    permit: bool,
}

impl Rule {
    fn module_matches(&self, module: &str) -> bool {
        self.module == "*" || self.module == module
    }
}

#[derive(Debug, Clone)]
struct RuleList {
    groups: Vec<String>,
    rules: Vec<Rule>,
}

/// The groups the transport gives each user (RFC 8341 §2.2 "external
/// groups"): the bootstrap file's `[[netconf.user]] groups`.
pub type TransportGroups = Arc<HashMap<String, Vec<String>>>;

/// The NACM configuration of running (its defaults are the YANG module's,
/// which libyang puts in the validated tree).
#[derive(Debug, Clone)]
pub struct Config {
    pub enabled: bool,
    read_default: bool,
    write_default: bool,
    exec_default: bool,
    /// `enable-external-groups`: the transport's groups count too.
    external_groups: bool,
    /// Group name and its members.
    groups: Vec<(String, Vec<String>)>,
    rule_lists: Vec<RuleList>,
    transport: TransportGroups,
}

impl Default for Config {
    /// RFC 8341 §3.2's defaults, for a tree that has not been validated.
    fn default() -> Self {
        Config {
            enabled: true,
            read_default: true,
            write_default: false,
            exec_default: true,
            external_groups: true,
            groups: Vec::new(),
            rule_lists: Vec::new(),
            transport: TransportGroups::default(),
        }
    }
}

fn child_value(node: &DataNodeRef<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.schema().name() == name)
        .and_then(|c| c.value_canonical())
}

fn children_named<'a, 'b>(
    node: &DataNodeRef<'a, 'b>,
    name: &'static str,
) -> impl Iterator<Item = DataNodeRef<'a, 'b>> {
    node.children().filter(move |c| c.schema().name() == name)
}

/// `access-operations`: "*" or the set bits ("create read ...").
fn parse_ops(v: &str) -> u8 {
    v.split_whitespace()
        .map(|b| match b {
            "*" => ALL,
            "read" => READ,
            "create" => CREATE,
            "update" => UPDATE,
            "delete" => DELETE,
            "exec" => EXEC,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

impl Config {
    /// The configuration under `/nacm` of a (validated) datastore.
    pub fn from_tree(tree: &DataTree<'static>) -> Config {
        let mut c = Config::default();
        let Ok(nacm) = tree.find_path(ROOT) else {
            return c;
        };
        let flag = |name: &str, default: bool| match child_value(&nacm, name).as_deref() {
            Some("true") | Some("permit") => true,
            Some("false") | Some("deny") => false,
            _ => default,
        };
        c.enabled = flag("enable-nacm", c.enabled);
        c.read_default = flag("read-default", c.read_default);
        c.write_default = flag("write-default", c.write_default);
        c.exec_default = flag("exec-default", c.exec_default);
        c.external_groups = flag("enable-external-groups", c.external_groups);
        for groups in children_named(&nacm, "groups") {
            for g in children_named(&groups, "group") {
                let name = child_value(&g, "name").unwrap_or_default();
                let users = children_named(&g, "user-name")
                    .filter_map(|u| u.value_canonical())
                    .collect();
                c.groups.push((name, users));
            }
        }
        for rl in children_named(&nacm, "rule-list") {
            let groups = children_named(&rl, "group")
                .filter_map(|g| g.value_canonical())
                .collect();
            let rules = children_named(&rl, "rule")
                .map(|r| {
                    let target = if let Some(v) = child_value(&r, "rpc-name") {
                        Target::Rpc(v)
                    } else if let Some(v) = child_value(&r, "notification-name") {
                        Target::Notification(v)
                    } else if let Some(v) = child_value(&r, "path") {
                        Target::Path(v)
                    } else {
                        Target::Any
                    };
                    Rule {
                        name: child_value(&r, "name").unwrap_or_default(),
                        module: child_value(&r, "module-name").unwrap_or_else(|| "*".into()),
                        target,
                        ops: child_value(&r, "access-operations").map_or(ALL, |v| parse_ops(&v)),
                        permit: child_value(&r, "action").as_deref() == Some("permit"),
                    }
                })
                .collect();
            c.rule_lists.push(RuleList { groups, rules });
        }
        c
    }

    /// The same rules, with the groups the transport gives its users
    /// (used only while `enable-external-groups` is true).
    pub fn with_transport_groups(mut self, transport: TransportGroups) -> Config {
        self.transport = transport;
        self
    }

    /// The rules that apply to `user`, in order (RFC 8341 §3.4.4 steps
    /// 4-5: the rule-lists naming one of its groups, or "*"). Its groups
    /// are those of `nacm/groups` naming it and, when
    /// `enable-external-groups` is true, those its transport gives it
    /// (§3.4.4 step 4 and the leaf's description: both sets, merged).
    pub fn rules_for(&self, user: &str) -> UserRules<'_> {
        let external = self
            .external_groups
            .then(|| self.transport.get(user))
            .flatten()
            .into_iter()
            .flatten()
            .map(String::as_str);
        let mine: Vec<&str> = self
            .groups
            .iter()
            .filter(|(_, users)| users.iter().any(|u| u == user))
            .map(|(g, _)| g.as_str())
            .chain(external)
            .collect();
        let rules = self
            .rule_lists
            .iter()
            .filter(|rl| {
                rl.groups
                    .iter()
                    .any(|g| g == "*" || mine.contains(&g.as_str()))
            })
            .flat_map(|rl| rl.rules.iter())
            .collect();
        UserRules {
            config: self,
            rules,
        }
    }
}

/// The counters of `/nacm` (config false), shared with whoever sends
/// notifications.
#[derive(Debug, Default)]
pub struct Counters {
    pub denied_operations: AtomicU32,
    pub denied_data_writes: AtomicU32,
    pub denied_notifications: AtomicU32,
}

impl Counters {
    /// The state document merged into `<get>`.
    pub fn state_xml(&self) -> String {
        format!(
            "<nacm xmlns=\"{NS}\"><denied-operations>{}</denied-operations><denied-data-writes>{}</denied-data-writes><denied-notifications>{}</denied-notifications></nacm>",
            self.denied_operations.load(Ordering::Relaxed),
            self.denied_data_writes.load(Ordering::Relaxed),
            self.denied_notifications.load(Ordering::Relaxed),
        )
    }
}

/// A refused change: the node, its operation, and the rule that refused
/// it (None: a default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Data path (module-name prefixes) of the node.
    pub path: String,
    pub op: &'static str,
    pub rule: Option<String>,
}

/// The rules of one user.
#[derive(Debug)]
pub struct UserRules<'c> {
    config: &'c Config,
    rules: Vec<&'c Rule>,
}

/// Per rule (by index), the nodes its path selects in one tree.
type NodeSets = Vec<Option<HashSet<usize>>>;
/// Per rule (by index), the data paths of the nodes its path selects.
type PathSets = Vec<Option<HashSet<String>>>;

fn op_name(op: u8) -> &'static str {
    match op {
        READ => "read",
        CREATE => "create",
        UPDATE => "update",
        DELETE => "delete",
        _ => "exec",
    }
}

impl UserRules<'_> {
    /// RFC 8341 §3.4.4: may the user run `module:rpc`. The rule that
    /// decided, when one did.
    pub fn exec(&self, module: &str, rpc: &str) -> (bool, Option<&str>) {
        if module == "ietf-netconf" && rpc == "close-session" {
            return (true, None);
        }
        for r in &self.rules {
            if r.ops & EXEC == 0 || !r.module_matches(module) {
                continue;
            }
            match &r.target {
                Target::Any => return (r.permit, Some(&r.name)),
                Target::Rpc(n) if n == "*" || n == rpc => return (r.permit, Some(&r.name)),
                _ => {}
            }
        }
        match yang::rpc_default_deny(module, rpc) {
            DefaultDeny::All => (false, None),
            _ => (self.config.exec_default, None),
        }
    }

    /// RFC 8341 §3.4.6: may the user receive notification `module:name`
    /// (`schema_path`: its schema path, for its extensions).
    pub fn notification(&self, module: &str, name: &str) -> bool {
        for r in &self.rules {
            if r.ops & READ == 0 || !r.module_matches(module) {
                continue;
            }
            match &r.target {
                Target::Any => return r.permit,
                Target::Notification(n) if n == "*" || n == name => return r.permit,
                _ => {}
            }
        }
        match yang::rpc_default_deny(module, name) {
            DefaultDeny::All => false,
            _ => self.config.read_default,
        }
    }

    /// RFC 8341 §3.4.6 for one notification, parsed (its top node is the
    /// notification): sent only when the notification may be received and
    /// every data node in it may be read (a notification is never sent in
    /// part).
    pub fn notification_allowed(&self, tree: &DataTree<'static>) -> bool {
        let Some(top) = tree.reference() else {
            return false;
        };
        let schema = top.schema();
        if !self.notification(schema.module().name(), schema.name()) {
            return false;
        }
        let sets = self.node_sets(tree, READ);
        top.traverse().skip(1).all(|n| self.readable(&n, &sets))
    }

    /// The path rules (index, path) about one of the operations `op`.
    fn path_rules(&self, op: u8) -> impl Iterator<Item = (usize, &str)> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(move |(i, r)| match &r.target {
                Target::Path(p) if r.ops & op != 0 => Some((i, p.as_str())),
                _ => None,
            })
    }

    fn node_sets(&self, tree: &DataTree<'static>, op: u8) -> NodeSets {
        let mut sets: NodeSets = vec![None; self.rules.len()];
        for (i, path) in self.path_rules(op) {
            // a path that selects nothing in this tree (or that libyang
            // cannot evaluate) matches nothing
            let set = match yang::find_xpath(tree, path) {
                Ok(s) => s.iter().map(|n| n.as_raw() as usize).collect(),
                Err(_) => HashSet::new(),
            };
            sets[i] = Some(set);
        }
        yang::clear_errors();
        sets
    }

    fn path_sets(&self, tree: &DataTree<'static>, op: u8) -> PathSets {
        let mut sets: PathSets = vec![None; self.rules.len()];
        for (i, path) in self.path_rules(op) {
            let set = match yang::find_xpath(tree, path) {
                Ok(s) => s.iter().map(|n| n.path()).collect(),
                Err(_) => HashSet::new(),
            };
            sets[i] = Some(set);
        }
        yang::clear_errors();
        sets
    }

    /// RFC 8341 §3.4.5 for one node: the first matching rule, else the
    /// schema's extension, else the default. `selected(i)`: whether path
    /// rule `i` selects the node or one of its ancestors.
    fn data_access(
        &self,
        node: &DataNodeRef<'_, '_>,
        op: u8,
        selected: impl Fn(usize) -> bool,
    ) -> (bool, Option<&str>) {
        let schema = node.schema();
        let module = schema.module();
        let module = module.name();
        for (i, r) in self.rules.iter().enumerate() {
            if r.ops & op == 0 || !r.module_matches(module) {
                continue;
            }
            match &r.target {
                Target::Any => return (r.permit, Some(&r.name)),
                Target::Path(_) if selected(i) => return (r.permit, Some(&r.name)),
                _ => {}
            }
        }
        let allowed = match yang::default_deny(&schema) {
            DefaultDeny::All => false,
            DefaultDeny::Write if op != READ => false,
            _ if op == READ => self.config.read_default,
            _ => self.config.write_default,
        };
        (allowed, None)
    }

    fn readable(&self, node: &DataNodeRef<'_, '_>, sets: &NodeSets) -> bool {
        self.data_access(node, READ, |i| {
            sets[i].as_ref().is_some_and(|s| {
                node.inclusive_ancestors()
                    .any(|a| s.contains(&(a.as_raw() as usize)))
            })
        })
        .0
    }

    /// Remove from `tree` every node the user may not read, with its
    /// subtree; a list entry goes whole when one of its keys may not be
    /// read (RFC 8341 §3.4.5). Returns how many subtrees went.
    pub fn prune_reads(&self, tree: &mut DataTree<'static>) -> usize {
        let sets = self.node_sets(tree, READ);
        let mut remove = Vec::new();
        let may_deny = self.may_deny_reads();
        if let Some(first) = tree.reference() {
            for top in first.inclusive_siblings() {
                if may_deny {
                    self.walk_read(&top, &sets, &mut remove);
                } else if !self.readable(&top, &sets) {
                    remove.push(top.as_raw());
                }
            }
        }
        let n = remove.len();
        yang::remove_nodes(tree, &remove);
        n
    }

    /// Whether a read may lose nodes below the top level: false with no
    /// rule that denies a read and a permitting default (only the
    /// `default-deny-all` nodes can go then, and they are top-level ones).
    pub fn may_deny_reads(&self) -> bool {
        !self.config.read_default
            || self.rules.iter().any(|r| {
                r.ops & READ != 0 && !r.permit && matches!(r.target, Target::Any | Target::Path(_))
            })
            || !yang::deny_all_only_at_top()
    }

    fn walk_read(
        &self,
        node: &DataNodeRef<'_, '_>,
        sets: &NodeSets,
        remove: &mut Vec<*mut yang2::ffi::lyd_node>,
    ) {
        if !self.readable(node, sets) || node.list_keys().any(|k| !self.readable(&k, sets)) {
            remove.push(node.as_raw());
            return;
        }
        for child in node.children() {
            if !child.schema().is_list_key() {
                self.walk_read(&child, sets, remove);
            }
        }
    }

    /// Whether the node at `path` of `tree` may be read (false when absent).
    pub fn may_read(&self, tree: &DataTree<'static>, path: &str) -> bool {
        let Ok(node) = tree.find_path(path) else {
            return false;
        };
        let sets = self.node_sets(tree, READ);
        node.inclusive_ancestors()
            .all(|a| self.readable(&a, &sets) && a.list_keys().all(|k| self.readable(&k, &sets)))
    }

    /// RFC 8341 §3.4.5 for a change of a datastore from `old` to `new`:
    /// every node libyang's diff creates, updates (replace) or deletes must
    /// be writable. The first refused one, in document order.
    pub fn check_writes(
        &self,
        old: &DataTree<'static>,
        new: &DataTree<'static>,
    ) -> Result<(), Denied> {
        let diff = old.diff(new, DataDiffFlags::empty()).map_err(|_| Denied {
            path: "/".into(),
            op: "update",
            rule: None,
        })?;
        yang::clear_errors();
        let new_sets = self.path_sets(new, CREATE | UPDATE);
        let old_sets = self.path_sets(old, DELETE);
        if let Some(first) = Data::tree(&diff).reference() {
            for top in first.inclusive_siblings() {
                self.walk_diff(&top, 0, &new_sets, &old_sets)?;
            }
        }
        Ok(())
    }

    fn walk_diff(
        &self,
        node: &DataNodeRef<'_, '_>,
        inherited: u8,
        new_sets: &PathSets,
        old_sets: &PathSets,
    ) -> Result<(), Denied> {
        let op = match node.meta().find(|m| m.name() == "operation") {
            Some(m) => match m.value() {
                "create" => CREATE,
                "delete" => DELETE,
                "replace" => UPDATE,
                _ => 0,
            },
            None => inherited,
        };
        if op != 0 {
            let sets = if op == DELETE { old_sets } else { new_sets };
            let paths: Vec<String> = node.inclusive_ancestors().map(|a| a.path()).collect();
            let (allowed, rule) = self.data_access(node, op, |i| {
                sets[i]
                    .as_ref()
                    .is_some_and(|s| paths.iter().any(|p| s.contains(p)))
            });
            if !allowed {
                return Err(Denied {
                    path: node.path(),
                    op: op_name(op),
                    rule: rule.map(str::to_owned),
                });
            }
        }
        for child in node.children() {
            self.walk_diff(&child, op, new_sets, old_sets)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(nacm: &str, rest: &str) -> DataTree<'static> {
        let mut t = yang::parse_config_xml(&format!("<nacm xmlns=\"{NS}\">{nacm}</nacm>{rest}"))
            .expect("parses");
        yang::validate(&mut t).expect("valid");
        t
    }

    const GROUPS: &str =
        "<groups><group><name>ops</name><user-name>alice</user-name></group></groups>";

    fn ip_pool(i: u32) -> String {
        format!(
            "<ip-pool><name>p{i}</name><gateway>10.0.{i}.1</gateway><mask>255.255.255.0</mask>\
             <section><start>10.0.{i}.10</start><end>10.0.{i}.20</end></section></ip-pool>"
        )
    }

    fn pools(pools: &[u32]) -> String {
        let p: String = pools.iter().map(|i| ip_pool(*i)).collect();
        format!("<dhcp-server xmlns=\"urn:hotlease:yang:dhcp-server\">{p}</dhcp-server>")
    }

    #[test]
    fn defaults_follow_rfc_8341() {
        let t = tree("", "");
        let c = Config::from_tree(&t);
        assert!(c.enabled);
        let u = c.rules_for("alice");
        // exec permitted, but not kill-session / delete-config
        assert!(u.exec("ietf-netconf", "get-config").0);
        assert!(!u.exec("ietf-netconf", "kill-session").0);
        assert!(!u.exec("ietf-netconf", "delete-config").0);
        assert!(u.exec("ietf-netconf", "close-session").0);
        // /nacm is default-deny-all: pruned from a read (with no rule that
        // denies reads, only top-level nodes are looked at: libyang copies
        // the extension to the descendants, and no module has it deeper)
        assert!(yang::deny_all_only_at_top());
        let mut t2 = yang::dup(&t);
        assert_eq!(u.prune_reads(&mut t2), 1);
        assert!(t2.find_path(ROOT).is_err());
        // a rule that permits reading everything keeps it
        let all = "<groups><group><name>g</name><user-name>alice</user-name></group></groups><rule-list><name>l</name><group>g</group><rule><name>r</name><access-operations>read</access-operations><action>permit</action></rule></rule-list>";
        let t = tree(all, "");
        let mut t2 = yang::dup(&t);
        assert_eq!(
            Config::from_tree(&t)
                .rules_for("alice")
                .prune_reads(&mut t2),
            0
        );
        assert!(t2.find_path(ROOT).is_ok());
    }

    #[test]
    fn notifications_follow_notification_and_read_rules() {
        let rules = "<groups><group><name>g</name><user-name>carol</user-name><user-name>dave</user-name></group>\
             <group><name>d</name><user-name>dave</user-name><user-name>erin</user-name></group></groups>\
             <rule-list><name>d</name><group>d</group>\
             <rule><name>no-hostnames</name><module-name>*</module-name><path xmlns:d=\"urn:hotlease:yang:dhcp-server\">/d:lease-event/d:hostname</path><access-operations>read</access-operations><action>deny</action></rule></rule-list>\
             <rule-list><name>g</name><group>g</group>\
             <rule><name>no-lease-events</name><module-name>hotlease-dhcp-server</module-name><notification-name>lease-event</notification-name><access-operations>read</access-operations><action>deny</action></rule>\
             </rule-list>";
        let c = Config::from_tree(&tree(rules, ""));
        let parse = |xml: &str| {
            let data = format!("{xml}\0");
            DataTree::parse_op_string(
                yang::context(),
                data.as_bytes(),
                yang2::data::DataFormat::XML,
                yang2::data::DataOperation::NotificationYang,
            )
            .expect("notification parses")
        };
        let lease = parse("<lease-event xmlns=\"urn:hotlease:yang:dhcp-server\"><event>bound</event><ip-address>10.0.0.5</ip-address><hostname>h</hostname></lease-event>");
        let vrrp = parse("<state-change xmlns=\"urn:hotlease:yang:vrrp\"><interface>eth0</interface><vrid>1</vrid><new-state>master</new-state></state-change>");
        assert!(!c.rules_for("carol").notification_allowed(&lease));
        assert!(c.rules_for("carol").notification_allowed(&vrrp));
        // dave: in both groups; carol's rule-list denies the notification
        assert!(!c.rules_for("dave").notification_allowed(&lease));
        assert!(c.rules_for("bob").notification_allowed(&lease));
        // erin may receive lease-events, not one that carries a hostname
        assert!(!c.rules_for("erin").notification_allowed(&lease));
        let anonymous = parse("<lease-event xmlns=\"urn:hotlease:yang:dhcp-server\"><event>bound</event><ip-address>10.0.0.5</ip-address></lease-event>");
        assert!(c.rules_for("erin").notification_allowed(&anonymous));
    }

    #[test]
    fn external_groups_count_only_when_enabled() {
        // "noc" has no members in running: only the transport puts users in it
        let rules = |enabled: &str| {
            format!(
                "<enable-external-groups>{enabled}</enable-external-groups>{GROUPS}\
                 <rule-list><name>noc</name><group>noc</group>\
                 <rule><name>no-kill</name><module-name>ietf-netconf</module-name><rpc-name>kill-session</rpc-name><access-operations>exec</access-operations><action>permit</action></rule>\
                 </rule-list>"
            )
        };
        let transport: TransportGroups = Arc::new(HashMap::from([
            ("bob".to_string(), vec!["noc".to_string()]),
            ("alice".to_string(), vec!["noc".to_string()]),
        ]));
        let on =
            Config::from_tree(&tree(&rules("true"), "")).with_transport_groups(transport.clone());
        let off = Config::from_tree(&tree(&rules("false"), "")).with_transport_groups(transport);
        // kill-session is default-deny-all: only the noc rule permits it
        assert!(on.rules_for("bob").exec("ietf-netconf", "kill-session").0);
        assert!(!off.rules_for("bob").exec("ietf-netconf", "kill-session").0);
        // alice: in ops by running and in noc by the transport
        assert!(on.rules_for("alice").exec("ietf-netconf", "kill-session").0);
        assert!(
            !off.rules_for("alice")
                .exec("ietf-netconf", "kill-session")
                .0
        );
        // a user the transport gives no group
        assert!(!on.rules_for("carol").exec("ietf-netconf", "kill-session").0);
        // the YANG default is true
        let default = Config::from_tree(&tree(
            &rules("true").replace("<enable-external-groups>true</enable-external-groups>", ""),
            "",
        ))
        .with_transport_groups(Arc::new(HashMap::from([(
            "bob".to_string(),
            vec!["noc".to_string()],
        )])));
        assert!(
            default
                .rules_for("bob")
                .exec("ietf-netconf", "kill-session")
                .0
        );
    }

    #[test]
    fn rules_decide_in_order() {
        let rules = format!(
            "{GROUPS}<rule-list><name>l</name><group>ops</group>\
             <rule><name>no-kill</name><module-name>ietf-netconf</module-name><rpc-name>kill-session</rpc-name><access-operations>exec</access-operations><action>deny</action></rule>\
             <rule><name>pools</name><path xmlns:d=\"urn:hotlease:yang:dhcp-server\">/d:dhcp-server/d:ip-pool</path><access-operations>create update delete</access-operations><action>permit</action></rule>\
             </rule-list>"
        );
        let old = tree(&rules, "");
        let c = Config::from_tree(&old);
        let alice = c.rules_for("alice");
        assert!(!alice.exec("ietf-netconf", "kill-session").0);
        let new = tree(&rules, &pools(&[1]));
        // the pool entry may be created, but the dhcp-server container
        // that holds it is created too, and nothing permits that
        let d = alice.check_writes(&old, &new).unwrap_err();
        assert_eq!(d.path, "/hotlease-dhcp-server:dhcp-server");
        assert_eq!(d.op, "create");
        // a user in no group gets the defaults: write denied
        assert!(c.rules_for("bob").check_writes(&old, &new).is_err());
        // with the container already there, only the pool is created
        let with_a = tree(&rules, &pools(&[1]));
        let with_b = tree(&rules, &pools(&[1, 2]));
        alice
            .check_writes(&with_a, &with_b)
            .expect("pools writable");
        assert!(c.rules_for("bob").check_writes(&with_a, &with_b).is_err());
        // no change, nothing to check
        c.rules_for("bob")
            .check_writes(&with_a, &with_a)
            .expect("no change");
    }
}

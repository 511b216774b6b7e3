//! What a read selects, worked out from its filter before any data is
//! produced, so that a read costs what it selects (STYLE rule 17):
//! - the part of a datastore it needs: one list entry by its keys is found
//!   by libyang's key lookup and copied alone, instead of the whole module
//!   being printed and parsed for the filter;
//! - per module, the children of its top node that the subsystems are
//!   asked state for ([`Selected`]), with the leaf values the filter
//!   requires, so that a subsystem answers with key lookups.
//!
//! The plan only narrows what the filter then runs on: the subtree matcher
//! or libyang's XPath evaluation still decides the reply, so a plan may
//! keep more than the filter selects, never less. A filter it does not
//! understand keeps everything.

use std::collections::BTreeSet;

use yang2::data::{Data, DataTree};
use yang2::schema::SchemaNodeKind;

use super::edit::{find_child, top_schema};
use super::ops::Filter;
use crate::config::Selected;
use crate::xml::{self, Element};
use crate::yang;

/// One top-level node of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    pub ns: String,
    pub name: String,
    /// The children it selects; `None`: the whole node.
    pub children: Option<Vec<Selected>>,
}

/// What a read selects: `None` in `tops` is everything (no filter, or one
/// this plan does not analyse).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub tops: Option<Vec<Top>>,
}

impl Plan {
    /// The plan of a retrieval's filter.
    pub fn of(filter: Option<&Filter>) -> Plan {
        let tops = match filter {
            None => None,
            Some(Filter::Subtree(f)) => f.elements().map(subtree_top).collect(),
            Some(Filter::XPath { select, namespaces }) => {
                super::translate_xpath(select, namespaces)
                    .ok()
                    .and_then(|x| xpath_top(&x))
                    .map(|t| vec![t])
            }
        };
        Plan { tops }
    }

    /// The namespaces of the top nodes (`None`: every namespace).
    pub fn namespaces(&self) -> Option<BTreeSet<String>> {
        Some(self.tops.as_ref()?.iter().map(|t| t.ns.clone()).collect())
    }

    /// What a subsystem producing the top nodes of `namespaces` is asked
    /// for: `None` everything, else the union of the children selected.
    pub fn state_of(&self, namespaces: &[&str]) -> Option<Vec<Selected>> {
        let mut out = Vec::new();
        for t in self.tops.as_ref()? {
            if !namespaces.contains(&t.ns.as_str()) {
                continue;
            }
            out.extend(t.children.clone()?);
        }
        Some(out)
    }

    /// The part of `tree` the plan needs, when it is smaller than the
    /// whole: every top node must be narrowed to keyed list entries (or to
    /// nothing, for state-only children); `None` otherwise (use `tree`).
    pub fn narrow(&self, tree: &DataTree<'static>) -> Option<DataTree<'static>> {
        let tops = self.tops.as_ref()?;
        let mut paths = Vec::new();
        for t in tops {
            paths.extend(entry_paths(t)?);
        }
        let mut out = yang::empty();
        for p in paths {
            let Ok(node) = tree.find_path(&p) else {
                continue;
            };
            if let Ok(copy) = node.duplicate(true) {
                if out.merge(&copy).is_err() {
                    return None;
                }
                yang::rewind(&mut out);
            }
        }
        Some(out)
    }
}

/// What a read asks of a list that is streamed (written into the reply
/// straight from its subsystem, see [`crate::config::Entries`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Streamed {
    /// The values its entries' leaves must have (empty: every entry).
    pub matches: Vec<(String, String)>,
    /// The read of everything else.
    pub rest: Rest,
}

/// The rest of a read whose list is streamed.
#[derive(Debug, Clone, PartialEq)]
pub enum Rest {
    /// This filter (`None`: no filter) on the data without the list: the
    /// list's subsystem is not asked for it.
    Filter(Option<Filter>),
    /// Nothing: the read selects the list's entries alone.
    Nothing,
}

/// Whether a read selects whole entries of the list `list` under the top
/// node `top` of `ns` (every entry, or those with given leaf values: a
/// subtree filter's content matches on the entry, an XPath filter's
/// predicates), so that they can be streamed: `None` for anything finer
/// or that this does not analyse (the usual path).
pub fn streamed(filter: Option<&Filter>, ns: &str, top: &str, list: &str) -> Option<Streamed> {
    match filter {
        None => Some(Streamed {
            matches: Vec::new(),
            rest: Rest::Filter(None),
        }),
        Some(Filter::Subtree(f)) => streamed_subtree(f, ns, top, list),
        Some(Filter::XPath { select, namespaces }) => {
            let x = super::translate_xpath(select, namespaces).ok()?;
            let t = xpath_top(&x)?;
            if t.ns != ns || t.name != top {
                return None;
            }
            let steps = split_steps(x.strip_prefix('/')?)?.len();
            match (t.children.as_deref(), steps) {
                (None, 1) => Some(Streamed {
                    matches: Vec::new(),
                    rest: Rest::Filter(filter.cloned()),
                }),
                (Some([c]), 2) if c.name == list => Some(Streamed {
                    matches: c.matches.clone(),
                    rest: Rest::Nothing,
                }),
                _ => None,
            }
        }
    }
}

fn streamed_subtree(f: &Element, ns: &str, top: &str, list: &str) -> Option<Streamed> {
    let mine: Vec<&Element> = f
        .elements()
        .filter(|e| e.name == top && (e.ns.is_empty() || e.ns == ns))
        .collect();
    let [t] = mine[..] else {
        // not selected (the list is not read: nothing to stream), or
        // twice (left to the matcher)
        return None;
    };
    if t.ns != ns || !t.attrs.is_empty() {
        return None;
    }
    if !t.has_elements() {
        if !t.text_trimmed().is_empty() {
            return None;
        }
        return Some(Streamed {
            matches: Vec::new(),
            rest: Rest::Filter(Some(Filter::Subtree(f.clone()))),
        });
    }
    let lists: Vec<&Element> = t.elements().filter(|c| c.name == list).collect();
    let [l] = lists[..] else {
        return None;
    };
    if l.ns != ns || !l.attrs.is_empty() || (!l.has_elements() && !l.text_trimmed().is_empty()) {
        return None;
    }
    // content matches only: the matching entries whole (RFC 6241 §6.2.5)
    let mut matches = Vec::new();
    for m in l.elements() {
        if m.ns != ns || !m.attrs.is_empty() || m.has_elements() || m.text_trimmed().is_empty() {
            return None;
        }
        matches.push((m.name.clone(), m.text_trimmed()));
    }
    // a content match on the top node's own leaves scopes the list too
    if t.elements()
        .any(|c| !c.has_elements() && !c.text_trimmed().is_empty() || !c.attrs.is_empty())
    {
        return None;
    }
    // the filter without the list (without the top node when the list
    // was all it selected: an empty one would select everything)
    let mut rest = f.clone();
    rest.children.retain_mut(|n| match n {
        xml::Node::Element(e) if e.name == top && e.ns == ns => {
            e.children
                .retain(|c| !matches!(c, xml::Node::Element(c) if c.name == list));
            e.has_elements()
        }
        _ => true,
    });
    Some(Streamed {
        matches,
        rest: Rest::Filter(Some(Filter::Subtree(rest))),
    })
}

/// Where the entries of a streamed list go in `rest`, the rest of the
/// reply as libyang printed it: in the top-level element `top` of `ns`,
/// before its first child named in `after` (the children the schema puts
/// after the list), else before its end tag. `None` when `rest` has no
/// such element (the entries then need one of their own).
pub fn splice(rest: &str, ns: &str, top: &str, after: &[String]) -> Option<usize> {
    let b = rest.as_bytes();
    let xmlns = format!("xmlns=\"{ns}\"");
    let mut depth = 0usize;
    let mut in_top = false;
    let mut i = 0;
    while let Some(off) = rest[i..].find('<') {
        let lt = i + off;
        // the tag's end, past quoted attribute values
        let mut j = lt + 1;
        let mut quote = None;
        while j < b.len() {
            match (quote, b[j]) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(b[j]),
                (None, b'>') => break,
                _ => {}
            }
            j += 1;
        }
        let tag = rest.get(lt + 1..j)?;
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()?;
        let local = name.rsplit(':').next()?;
        if tag.starts_with('/') {
            depth = depth.checked_sub(1)?;
            if in_top && depth == 0 {
                return Some(lt);
            }
        } else {
            let empty = tag.ends_with('/');
            if depth == 0 {
                in_top = local == top && tag.contains(&xmlns);
                if in_top && empty {
                    return None;
                }
            } else if depth == 1 && in_top && after.iter().any(|a| a == local) {
                return Some(lt);
            }
            if !empty {
                depth += 1;
            }
        }
        i = j + 1;
    }
    None
}

/// A subtree filter's top node: its children when each is a containment,
/// selection or list node whose content matches are on its own leaves.
fn subtree_top(f: &Element) -> Option<Top> {
    if f.ns.is_empty() || !f.attrs.is_empty() {
        // a node without a namespace selects in every module
        return None;
    }
    let mut top = Top {
        ns: f.ns.to_string(),
        name: f.name.clone(),
        children: None,
    };
    if !f.has_elements() {
        // a selection node (or a content match on a container: everything)
        return Some(top);
    }
    let mut children = Vec::new();
    for c in f.elements() {
        if !c.attrs.is_empty() || (!c.has_elements() && !c.text_trimmed().is_empty()) {
            // an attribute match, a content match on the top node's own
            // leaf (it scopes every sibling): the whole node
            return Some(top);
        }
        let matches = c
            .elements()
            .filter(|m| !m.has_elements() && m.attrs.is_empty())
            .filter_map(|m| {
                let v = m.text_trimmed();
                (!v.is_empty()).then(|| (m.name.clone(), v))
            })
            .collect();
        children.push(Selected {
            name: c.name.clone(),
            matches,
        });
    }
    top.children = Some(children);
    Some(top)
}

/// An XPath filter that is a plain path from a module's top node, with at
/// most predicates `[leaf='value']` on its second step
/// (`/m:dhcp-server/m:lease[m:mac-address='…']`, `/m:dhcp-server/m:ip-pool[m:name='p']/m:statistics`),
/// in libyang's form (module names as prefixes).
fn xpath_top(x: &str) -> Option<Top> {
    let steps = split_steps(x.strip_prefix('/')?)?;
    let (first, rest) = steps.split_first()?;
    let (module, name) = first.split_once(':')?;
    if !plain(name) || !plain(module) {
        return None;
    }
    let ns = yang::module_by_name(module)?.namespace.to_string();
    let mut top = Top {
        ns,
        name: name.to_string(),
        children: None,
    };
    let Some((second, deeper)) = rest.split_first() else {
        return Some(top);
    };
    if deeper.iter().any(|s| !plain(unprefixed(s))) {
        return None;
    }
    let (child, preds) = match second.find('[') {
        Some(i) => (&second[..i], &second[i..]),
        None => (second.as_str(), ""),
    };
    let child = unprefixed(child);
    if !plain(child) {
        return None;
    }
    let mut matches = Vec::new();
    let mut rest = preds;
    while !rest.is_empty() {
        let body = rest.strip_prefix('[')?;
        let eq = body.find('=')?;
        let leaf = unprefixed(body[..eq].trim());
        let value = body[eq + 1..].trim_start();
        let q = value.chars().next().filter(|q| *q == '\'' || *q == '"')?;
        let end = value[1..].find(q)? + 1;
        let after = value[end + 1..].trim_start().strip_prefix(']')?;
        if !plain(leaf) {
            return None;
        }
        matches.push((leaf.to_string(), value[1..end].to_string()));
        rest = after;
    }
    top.children = Some(vec![Selected {
        name: child.to_string(),
        matches,
    }]);
    Some(top)
}

/// A name (no wildcard, axis, function or operator).
fn plain(s: &str) -> bool {
    s.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn unprefixed(s: &str) -> &str {
    s.rsplit_once(':').map_or(s, |(_, n)| n)
}

/// The steps of a path, split on `/` outside predicates and literals;
/// `None` for `//` (a descendant step).
fn split_steps(x: &str) -> Option<Vec<String>> {
    let mut steps = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0u32;
    for c in x.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.checked_sub(1)?,
            (None, '/') if depth == 0 => {
                if cur.is_empty() {
                    return None;
                }
                steps.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if cur.is_empty() || quote.is_some() || depth != 0 {
        return None;
    }
    steps.push(cur);
    Some(steps)
}

/// The libyang paths of the datastore entries a top node needs: none for a
/// child that is state only (a datastore holds none), one keyed entry per
/// list child whose keys are all matched; `None` when it needs the whole
/// top node.
fn entry_paths(t: &Top) -> Option<Vec<String>> {
    let children = t.children.as_ref()?;
    let probe = Element::new(t.ns.as_str(), &t.name);
    let top = top_schema(&probe).ok()?;
    let module = top.module().name().to_string();
    let mut paths = Vec::new();
    for c in children {
        let schema = find_child(top.children(), &Element::new(t.ns.as_str(), &c.name))?;
        if !schema.is_config() {
            continue;
        }
        if schema.kind() != SchemaNodeKind::List {
            return None;
        }
        let mut p = format!("/{module}:{}/{}", t.name, c.name);
        for k in schema.list_keys() {
            let (_, v) = c.matches.iter().find(|(n, _)| n == k.name())?;
            let q = if !v.contains('\'') {
                '\''
            } else if !v.contains('"') {
                '"'
            } else {
                return None;
            };
            p.push_str(&format!("[{}={q}{v}{q}]", k.name()));
        }
        paths.push(p);
    }
    Some(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    const DHCP: &str = "urn:hotlease:yang:dhcp-server";

    fn subtree(body: &str) -> Plan {
        let f = xml::parse(&format!(
            r#"<filter xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{body}</filter>"#
        ))
        .unwrap();
        Plan::of(Some(&Filter::Subtree(f)))
    }

    fn xpath(select: &str) -> Plan {
        Plan::of(Some(&Filter::XPath {
            select: select.into(),
            namespaces: vec![("d".into(), DHCP.into())],
        }))
    }

    fn sel(name: &str, matches: &[(&str, &str)]) -> Selected {
        Selected {
            name: name.into(),
            matches: matches
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn subtree_filters_name_the_children_and_their_matches() {
        let p = subtree(&format!(
            r#"<dhcp-server xmlns="{DHCP}"><lease><mac-address> 02:00:00:00:00:01 </mac-address><state/></lease><ip-pool><name>p1</name><statistics/></ip-pool></dhcp-server>"#
        ));
        assert_eq!(
            p.state_of(&[DHCP]),
            Some(vec![
                sel("lease", &[("mac-address", "02:00:00:00:00:01")]),
                sel("ip-pool", &[("name", "p1")])
            ])
        );
        assert_eq!(p.state_of(&["urn:hotlease:yang:vrrp"]), Some(vec![]));
        // a selection node, a filter without namespace, a content match on
        // the top node's leaf, an attribute: everything
        let whole = subtree(&format!(r#"<dhcp-server xmlns="{DHCP}"/>"#));
        assert_eq!(whole.state_of(&[DHCP]), None);
        assert_eq!(
            subtree(r#"<dhcp-server xmlns=""><lease/></dhcp-server>"#).state_of(&[DHCP]),
            None
        );
        let scoped = subtree(&format!(
            r#"<dhcp-server xmlns="{DHCP}"><request-packet-all-interface>true</request-packet-all-interface><lease/></dhcp-server>"#
        ));
        assert_eq!(scoped.state_of(&[DHCP]), None);
        assert_eq!(Plan::of(None).state_of(&[DHCP]), None);
    }

    #[test]
    fn simple_xpath_paths_are_understood_and_others_keep_everything() {
        assert_eq!(
            xpath("/d:dhcp-server/d:lease[d:ip-address='10.0.0.5']").state_of(&[DHCP]),
            Some(vec![sel("lease", &[("ip-address", "10.0.0.5")])])
        );
        assert_eq!(
            xpath(r#"/d:dhcp-server/d:ip-pool[d:name="a b"][d:gateway='10.0.0.1']/d:statistics"#)
                .state_of(&[DHCP]),
            Some(vec![sel(
                "ip-pool",
                &[("name", "a b"), ("gateway", "10.0.0.1")]
            )])
        );
        assert_eq!(xpath("/d:dhcp-server").state_of(&[DHCP]), None);
        for other in [
            "//d:lease",
            "/d:dhcp-server/d:lease[d:state!='bound']",
            "/d:dhcp-server/d:lease[../d:ip-pool]",
            "/d:dhcp-server/*",
            "/d:dhcp-server/d:lease/..",
            "/d:dhcp-server/d:lease[1]",
            "count(/d:dhcp-server/d:lease)",
            "/d:dhcp-server/d:lease | /d:dhcp-server/d:ip-pool",
        ] {
            assert_eq!(xpath(other).tops, None, "{other}");
        }
    }

    fn streamed_of(filter: Option<Filter>) -> Option<Streamed> {
        streamed(filter.as_ref(), DHCP, "dhcp-server", "lease")
    }

    fn subtree_filter(body: &str) -> Option<Filter> {
        Some(Filter::Subtree(
            xml::parse(&format!(
                r#"<filter xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{body}</filter>"#
            ))
            .unwrap(),
        ))
    }

    fn xpath_filter(select: &str) -> Option<Filter> {
        Some(Filter::XPath {
            select: select.into(),
            namespaces: vec![("d".into(), DHCP.into())],
        })
    }

    /// Whole entries are streamed, the rest of the read keeps its filter
    /// without the list; anything finer is not streamed.
    #[test]
    fn whole_entries_are_streamed_and_the_rest_keeps_its_filter() {
        let rest = |body: &str| Rest::Filter(subtree_filter(body));
        let pool = |p: &str| vec![("pool".to_string(), p.to_string())];
        let cases = [
            (None, Some((vec![], Rest::Filter(None)))),
            (
                subtree_filter(&format!(r#"<dhcp-server xmlns="{DHCP}"/>"#)),
                Some((vec![], rest(&format!(r#"<dhcp-server xmlns="{DHCP}"/>"#)))),
            ),
            (
                subtree_filter(&format!(
                    r#"<dhcp-server xmlns="{DHCP}"><lease/></dhcp-server><vrrp xmlns="urn:hotlease:yang:vrrp"/>"#
                )),
                Some((vec![], rest(r#"<vrrp xmlns="urn:hotlease:yang:vrrp"/>"#))),
            ),
            (
                subtree_filter(&format!(
                    r#"<dhcp-server xmlns="{DHCP}"><statistics/><lease><pool>lan</pool></lease></dhcp-server>"#
                )),
                Some((
                    pool("lan"),
                    rest(&format!(
                        r#"<dhcp-server xmlns="{DHCP}"><statistics/></dhcp-server>"#
                    )),
                )),
            ),
            (
                xpath_filter("/d:dhcp-server"),
                Some((vec![], Rest::Filter(xpath_filter("/d:dhcp-server")))),
            ),
            (
                xpath_filter("/d:dhcp-server/d:lease"),
                Some((vec![], Rest::Nothing)),
            ),
            (
                xpath_filter("/d:dhcp-server/d:lease[d:pool='lan']"),
                Some((pool("lan"), Rest::Nothing)),
            ),
            // not the list, finer than whole entries, unknown
            (
                subtree_filter(&format!(
                    r#"<dhcp-server xmlns="{DHCP}"><statistics/></dhcp-server>"#
                )),
                None,
            ),
            (
                subtree_filter(&format!(
                    r#"<dhcp-server xmlns="{DHCP}"><lease><state/></lease></dhcp-server>"#
                )),
                None,
            ),
            (
                subtree_filter(&format!(
                    r#"<dhcp-server xmlns="{DHCP}"><lease><pool>lan</pool><state/></lease></dhcp-server>"#
                )),
                None,
            ),
            (
                subtree_filter(&format!(
                    r#"<dhcp-server xmlns="{DHCP}"><lease-store-failed>true</lease-store-failed><lease/></dhcp-server>"#
                )),
                None,
            ),
            (
                subtree_filter(r#"<dhcp-server xmlns=""><lease/></dhcp-server>"#),
                None,
            ),
            (
                subtree_filter(&format!(
                    r#"<dhcp-server xmlns="{DHCP}"/><dhcp-server xmlns="{DHCP}"><lease/></dhcp-server>"#
                )),
                None,
            ),
            (
                subtree_filter(r#"<vrrp xmlns="urn:hotlease:yang:vrrp"/>"#),
                None,
            ),
            (xpath_filter("/d:dhcp-server/d:lease/d:hostname"), None),
            (
                xpath_filter("/d:dhcp-server/d:lease[d:state!='bound']"),
                None,
            ),
            (xpath_filter("/d:dhcp-server/d:statistics"), None),
        ];
        for (filter, want) in cases {
            let got = streamed_of(filter.clone()).map(|s| (s.matches, s.rest));
            assert_eq!(got, want, "{filter:?}");
        }
    }

    /// The entries go in the top node of their namespace, before the
    /// first child the schema puts after the list, past quoted `>`.
    #[test]
    fn the_entries_go_where_libyang_puts_the_list() {
        let after = ["statistics".to_string(), "lease-store-failed".to_string()];
        let rest = format!(
            r#"<other xmlns="urn:x"><statistics/></other><dhcp-server xmlns="{DHCP}" xmlns:wd="urn:w"><ip-pool a=">"><name>p</name><statistics><total>1</total></statistics></ip-pool><statistics><x/></statistics><lease-store-failed>false</lease-store-failed></dhcp-server><vrrp xmlns="urn:v"/>"#
        );
        let at = splice(&rest, DHCP, "dhcp-server", &after).unwrap();
        assert!(
            rest[at..].starts_with("<statistics><x/>"),
            "{}",
            &rest[at..]
        );
        let only_pools = format!(
            r#"<dhcp-server xmlns="{DHCP}"><ip-pool><name>p</name></ip-pool></dhcp-server>"#
        );
        let at = splice(&only_pools, DHCP, "dhcp-server", &after).unwrap();
        assert_eq!(&only_pools[at..], "</dhcp-server>");
        assert_eq!(
            splice(
                r#"<dhcp-server xmlns="urn:other"></dhcp-server>"#,
                DHCP,
                "dhcp-server",
                &after
            ),
            None
        );
        assert_eq!(
            splice(
                &format!(r#"<dhcp-server xmlns="{DHCP}"/>"#),
                DHCP,
                "dhcp-server",
                &after
            ),
            None
        );
        assert_eq!(splice("", DHCP, "dhcp-server", &after), None);
    }

    #[test]
    fn keyed_entries_narrow_a_datastore() {
        let mut tree = yang::empty();
        let pools: String = (0..50)
            .map(|i| {
                format!(
                    "<ip-pool><name>p{i}</name><gateway>10.0.{i}.1</gateway><mask>255.255.255.0</mask>\
                     <section><start>10.0.{i}.10</start><end>10.0.{i}.20</end></section></ip-pool>"
                )
            })
            .collect();
        let cfg = xml::parse(&format!(
            r#"<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><dhcp-server xmlns="{DHCP}">{pools}</dhcp-server></config>"#
        ))
        .unwrap();
        super::super::edit::apply(
            &mut tree,
            &cfg,
            super::super::ops::EditOp::Merge,
            false,
            &mut BTreeSet::new(),
        )
        .unwrap();
        let printed =
            |t: &DataTree<'static>| yang::print_xml(t, crate::yang::WithDefaults::Explicit);
        let one = subtree(&format!(
            r#"<dhcp-server xmlns="{DHCP}"><ip-pool><name>p7</name></ip-pool></dhcp-server>"#
        ))
        .narrow(&tree)
        .unwrap();
        let x = printed(&one);
        assert_eq!(x.matches("<ip-pool>").count(), 1, "{x}");
        assert!(x.contains("<name>p7</name>"), "{x}");
        // state only: nothing of the datastore
        let none = subtree(&format!(
            r#"<dhcp-server xmlns="{DHCP}"><lease/></dhcp-server>"#
        ))
        .narrow(&tree)
        .unwrap();
        assert_eq!(printed(&none), "");
        let missing = subtree(&format!(
            r#"<dhcp-server xmlns="{DHCP}"><ip-pool><name>zz</name></ip-pool></dhcp-server>"#
        ))
        .narrow(&tree)
        .unwrap();
        assert_eq!(printed(&missing), "");
        // without every key, or a config container: the whole datastore
        assert!(subtree(&format!(r#"<dhcp-server xmlns="{DHCP}"><ip-pool><gateway>10.0.7.1</gateway></ip-pool></dhcp-server>"#))
            .narrow(&tree)
            .is_none());
        assert!(subtree(&format!(r#"<dhcp-server xmlns="{DHCP}"/>"#))
            .narrow(&tree)
            .is_none());
        assert!(xpath("/d:dhcp-server/d:ip-pool[d:name='p7']/d:statistics")
            .narrow(&tree)
            .is_some());
    }
}

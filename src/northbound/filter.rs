//! RFC 6241 §6 subtree filtering.
//!
//! This module owns the meaning of a `<filter type="subtree">`: given the
//! filter's top-level nodes and the top-level data elements of a datastore
//! (or of operational state), it returns pruned copies of the data that the
//! filter selects. It knows nothing about YANG beyond what the caller tells
//! it through [`KeysOf`] (which elements are list entries and what their keys
//! are); it never fails, because a filter that names unknown nodes simply
//! selects nothing (RFC 6241 §6.4.2).
//!
//! Evaluation happens in two phases. Matching walks the filter and the data
//! side by side and records *what* is selected as a `Sel` mask over data
//! positions; materialising then copies the selected parts out of the data.
//! Keeping the mask separate from the copies is what makes several filter
//! subtrees that hit the same data (RFC 6241 §6.4.7, or two instances of the
//! same list entry) combine as a union: masks merge position by position, so
//! every data instance appears once and in data order, whatever the order of
//! the filter.

use std::collections::{BTreeMap, HashMap};

use crate::xml::{Element, Node};

/// Which data elements are list entries, and their key leaf names.
/// `path` is the chain of data elements from the top-level element down to
/// and including the element in question. Returns None when the element is
/// not a list entry.
pub type KeysOf<'a> = dyn Fn(&[&Element]) -> Option<Vec<(String /*ns*/, String /*name*/)>> + 'a;

/// Apply a subtree filter. `filter_children` are the child elements of the
/// `<filter type="subtree">` element (the top-level filter nodes); `data` are the
/// top-level data elements. Returns the selected top-level data elements
/// (pruned copies), in data order.
///
/// An absent filter (RFC 6241 §6.4.1, "return everything") is the caller's
/// business: this function is only for a filter that is present, and an
/// empty one selects nothing (§6.4.2).
pub fn apply(filter_children: &[&Element], data: &[Element], keys_of: &KeysOf<'_>) -> Vec<Element> {
    let top: Vec<(usize, &Element)> = data.iter().enumerate().collect();
    let mut picked = BTreeMap::new();
    // §6.3: the root filter elements form one sibling set "assuming they are
    // in the same namespace", so each namespace's roots are evaluated as
    // their own sibling set. This only matters for content match nodes at
    // the top level: their AND and their "select the whole level" fallback
    // stay within one module instead of suppressing or selecting another's.
    for (ns, roots) in group_by_namespace(filter_children) {
        match select_siblings(&roots, &top) {
            None => {}
            Some(Sel::All) => {
                for &(i, d) in &top {
                    if ns.is_empty() || d.ns == ns {
                        merge_at(&mut picked, i, Sel::All);
                    }
                }
            }
            Some(Sel::Part(sel)) => {
                for (i, s) in sel {
                    merge_at(&mut picked, i, s);
                }
            }
        }
    }
    let mut path = Vec::new();
    picked
        .iter()
        .filter_map(|(&i, sel)| data.get(i).map(|d| materialize(d, sel, &mut path, keys_of)))
        .collect()
}

/// What a filter selects of one data element.
#[derive(Debug, PartialEq)]
enum Sel {
    /// The element and its whole subtree.
    All,
    /// The element itself plus the listed children, keyed by their position
    /// in the parent's `children` so that iteration follows data order.
    /// Never empty: an element with nothing selected below it is not selected.
    Part(BTreeMap<usize, Sel>),
}

impl Sel {
    /// Union of two selections of the same element (filter subtrees are OR-ed).
    fn merge(&mut self, other: Sel) {
        match (self, other) {
            (Sel::All, _) => {}
            (this, Sel::All) => *this = Sel::All,
            (Sel::Part(mine), Sel::Part(theirs)) => {
                for (i, s) in theirs {
                    merge_at(mine, i, s);
                }
            }
        }
    }
}

/// Add `sel` for the child at position `i`, merging with what is already there.
fn merge_at(map: &mut BTreeMap<usize, Sel>, i: usize, sel: Sel) {
    match map.get_mut(&i) {
        Some(existing) => existing.merge(sel),
        None => {
            map.insert(i, sel);
        }
    }
}

/// The role a filter node plays in its sibling set (RFC 6241 §6.2.3–§6.2.5).
enum Kind {
    /// Has child elements: descend into the matching data.
    Containment,
    /// Empty (or whitespace-only) leaf: select the matching data subtrees.
    Selection,
    /// Leaf with text: an exact-match test on the data leaf's content.
    ContentMatch(String),
}

fn classify(f: &Element) -> Kind {
    if f.has_elements() {
        // Mixed content is not supported for filtering (§6.2.5): any text
        // beside child elements is ignored.
        return Kind::Containment;
    }
    // `<foo> </foo>` is a selection node, like `<foo/>` (§6.2.4, §6.2.5).
    let text = f.text_trimmed();
    if text.is_empty() {
        Kind::Selection
    } else {
        Kind::ContentMatch(text)
    }
}

/// Whether data element `d` is an instance of filter node `f`: same local
/// name, same namespace unless the filter node has none (§6.2.1), and every
/// attribute of the filter node present on `d` with the same value (§6.2.2).
/// Namespace declarations are not attributes in [`Element`], so they never
/// take part.
fn node_matches(f: &Element, d: &Element) -> bool {
    f.name == d.name
        && (f.ns.is_empty() || f.ns == d.ns)
        && f.attrs
            .iter()
            .all(|a| d.attr(a.ns.as_deref(), &a.name) == Some(a.value.as_str()))
}

/// Child elements of `e` with their positions in `e.children`.
fn element_children(e: &Element) -> Vec<(usize, &Element)> {
    e.children
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            Node::Element(c) => Some((i, c)),
            Node::Text(_) => None,
        })
        .collect()
}

/// Evaluate one filter sibling set against the child elements of one data
/// parent (RFC 6241 §6.3). Returns `None` when the parent is not selected,
/// `Sel::All` when the whole parent is, and otherwise the selected children.
fn select_siblings(filters: &[&Element], data: &[(usize, &Element)]) -> Option<Sel> {
    let mut picked = BTreeMap::new();
    let mut has_content_match = false;
    let mut selections = Vec::new();
    let mut containments = Vec::new();
    // Content match nodes first: they gate the whole sibling set, and are
    // ANDed — one false test drops the set, content match nodes included.
    for &f in filters {
        match classify(f) {
            Kind::ContentMatch(want) => {
                has_content_match = true;
                let mut hit = false;
                for &(i, d) in data {
                    // Only leaves have content to compare; leading and
                    // trailing whitespace is insignificant on both sides.
                    if node_matches(f, d) && !d.has_elements() && d.text_trimmed() == want {
                        hit = true;
                        // For a leaf-list only the matching instances are
                        // "the content match node" in the output.
                        merge_at(&mut picked, i, Sel::All);
                    }
                }
                if !hit {
                    return None;
                }
            }
            Kind::Selection => selections.push(f),
            Kind::Containment => containments.push(f),
        }
    }
    if selections.is_empty() && containments.is_empty() {
        // No selection or containment siblings: every node at this level is
        // returned (§6.2.5), i.e. the data parent as a whole. A set with no
        // content match nodes either selects nothing.
        return has_content_match.then_some(Sel::All);
    }
    for f in selections {
        for &(i, d) in data {
            if node_matches(f, d) {
                merge_at(&mut picked, i, Sel::All);
            }
        }
    }
    for f in containments {
        let nested: Vec<&Element> = f.elements().collect();
        for &(i, d) in data {
            if !node_matches(f, d) {
                continue;
            }
            // Each data instance is tested on its own: the nested content
            // match nodes pick which instances (e.g. list entries) qualify.
            if let Some(sel) = select_siblings(&nested, &element_children(d)) {
                merge_at(&mut picked, i, sel);
            }
        }
    }
    // A containment node under which nothing was selected is pruned with
    // its subtree rather than returned as an empty shell, so a filter for a
    // missing entry yields no data at all (as netopeer2 and ConfD reply).
    (!picked.is_empty()).then_some(Sel::Part(picked))
}

/// Split the top-level filter nodes by namespace, keeping first-seen order.
/// A map finds the group: a filter may have many roots in many namespaces.
fn group_by_namespace<'f>(roots: &[&'f Element]) -> Vec<(&'f str, Vec<&'f Element>)> {
    let mut groups: Vec<(&str, Vec<&Element>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for &r in roots {
        let i = *index.entry(r.ns.as_str()).or_insert_with(|| {
            groups.push((r.ns.as_str(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(r);
    }
    groups
}

/// Copy the selected part of `elem`. `path` holds its ancestors on entry.
///
/// A partially selected list entry gets its key leaves even when the filter
/// did not ask for them, first and in key order: an entry without its keys
/// cannot be identified by the client (RFC 7950 §7.8.5 encoding, as done by
/// netopeer2 and ConfD). Keys only decorate an entry that something else
/// selected; they never cause a selection. Fully selected subtrees are
/// copied verbatim, keys included where the data has them.
fn materialize<'d>(
    elem: &'d Element,
    sel: &Sel,
    path: &mut Vec<&'d Element>,
    keys_of: &KeysOf<'_>,
) -> Element {
    let picked = match sel {
        Sel::All => return elem.clone(),
        Sel::Part(picked) => picked,
    };
    let mut out = Element {
        ns: elem.ns.clone(),
        name: elem.name.clone(),
        attrs: elem.attrs.clone(),
        ns_decls: elem.ns_decls.clone(),
        children: Vec::new(),
    };
    path.push(elem);
    let mut emitted: Vec<usize> = Vec::new();
    for (kns, kname) in keys_of(path).unwrap_or_default() {
        let key = elem.children.iter().enumerate().find_map(|(i, n)| match n {
            Node::Element(e) if e.ns == kns && e.name == kname => Some((i, e)),
            _ => None,
        });
        if let Some((i, key)) = key {
            if !emitted.contains(&i) {
                emitted.push(i);
                let copy = match picked.get(&i) {
                    Some(s) => materialize(key, s, path, keys_of),
                    None => key.clone(),
                };
                out.children.push(Node::Element(copy));
            }
        }
    }
    for (i, s) in picked {
        if emitted.contains(i) {
            continue;
        }
        if let Some(Node::Element(child)) = elem.children.get(*i) {
            out.children
                .push(Node::Element(materialize(child, s, path, keys_of)));
        }
    }
    path.pop();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    const CFG: &str = "http://example.com/schema/1.2/config";
    const STATS: &str = "http://example.com/schema/1.2/stats";

    /// RFC 6241 §6.4.3's fully populated `<users>`, plus a sibling container
    /// so that pruning is visible, and a second top-level element in another
    /// namespace (the §6.4.8 statistics).
    fn data() -> Vec<Element> {
        let config = r#"
<top xmlns="http://example.com/schema/1.2/config">
  <users>
    <user>
      <name>root</name>
      <type>superuser</type>
      <full-name>Charlie Root</full-name>
      <company-info>
        <dept>1</dept>
        <id>1</id>
      </company-info>
    </user>
    <user>
      <name>fred</name>
      <type>admin</type>
      <full-name>Fred Flintstone</full-name>
      <company-info>
        <dept>2</dept>
        <id>2</id>
      </company-info>
    </user>
    <user>
      <name>barney</name>
      <type>admin</type>
      <full-name>Barney Rubble</full-name>
      <company-info>
        <dept>2</dept>
        <id>3</id>
      </company-info>
    </user>
  </users>
  <system>
    <hostname>bedrock</hostname>
  </system>
</top>"#;
        let stats = r#"
<t:top xmlns:t="http://example.com/schema/1.2/stats">
  <t:interfaces>
    <t:interface t:ifName="eth0">
      <t:name>eth0</t:name>
      <t:ifInOctets>45621</t:ifInOctets>
      <t:ifOutOctets>774344</t:ifOutOctets>
    </t:interface>
    <t:interface t:ifName="eth1">
      <t:name>eth1</t:name>
      <t:ifInOctets>100</t:ifInOctets>
      <t:ifOutOctets>200</t:ifOutOctets>
    </t:interface>
  </t:interfaces>
</t:top>"#;
        vec![parse(config).unwrap(), parse(stats).unwrap()]
    }

    /// `<user>` and `<interface>` are lists keyed by `<name>`.
    fn keys(path: &[&Element]) -> Option<Vec<(String, String)>> {
        let e = path.last()?;
        match e.name.as_str() {
            "user" | "interface" => Some(vec![(e.ns.to_string(), "name".to_string())]),
            _ => None,
        }
    }

    /// Run the body of a `<filter type="subtree">` (given as XML) over `data`.
    /// The filter element is prefixed so that unqualified filter nodes have
    /// no namespace, as when a client leaves out `xmlns`.
    fn run(filter_body: &str, data: &[Element]) -> Vec<Element> {
        let filter = parse(&format!(
            r#"<nc:filter xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" type="subtree">{filter_body}</nc:filter>"#
        ))
        .unwrap();
        let roots: Vec<&Element> = filter.elements().collect();
        apply(&roots, data, &keys)
    }

    /// Drop whitespace-only text and namespace declarations so that results
    /// compare by content, not by layout.
    fn norm(e: &Element) -> Element {
        Element {
            ns: e.ns.clone(),
            name: e.name.clone(),
            attrs: e.attrs.clone(),
            ns_decls: Vec::new(),
            children: e
                .children
                .iter()
                .filter_map(|n| match n {
                    Node::Element(c) => Some(Node::Element(norm(c))),
                    Node::Text(t) if t.trim().is_empty() => None,
                    Node::Text(t) => Some(Node::Text(t.clone())),
                })
                .collect(),
        }
    }

    /// Assert that `got` equals the children of the `<data>` element `want`.
    fn assert_data(got: &[Element], want: &str) {
        let want = parse(want).unwrap();
        let want: Vec<Element> = want.elements().map(norm).collect();
        let got: Vec<Element> = got.iter().map(norm).collect();
        let show = |v: &[Element]| v.iter().map(Element::to_xml).collect::<Vec<_>>().join("\n");
        assert_eq!(got, want, "\n got: {}\nwant: {}", show(&got), show(&want));
    }

    #[test]
    fn rfc_6_4_1_no_filter_equivalent_selects_everything() {
        // Without a <filter> the caller returns the data unfiltered; the
        // filter equivalent to that selects every top-level node.
        let d = data();
        let got = run(
            &format!(r#"<top xmlns="{CFG}"/><top xmlns="{STATS}"/>"#),
            &d,
        );
        assert_eq!(got, d);
    }

    #[test]
    fn rfc_6_4_2_empty_filter_selects_nothing() {
        let d = data();
        assert!(apply(&[], &d, &keys).is_empty());
        assert!(run("\n   \n", &d).is_empty());
    }

    const ALL_USERS: &str = r#"
<data>
  <top xmlns="http://example.com/schema/1.2/config">
    <users>
      <user>
        <name>root</name>
        <type>superuser</type>
        <full-name>Charlie Root</full-name>
        <company-info>
          <dept>1</dept>
          <id>1</id>
        </company-info>
      </user>
      <user>
        <name>fred</name>
        <type>admin</type>
        <full-name>Fred Flintstone</full-name>
        <company-info>
          <dept>2</dept>
          <id>2</id>
        </company-info>
      </user>
      <user>
        <name>barney</name>
        <type>admin</type>
        <full-name>Barney Rubble</full-name>
        <company-info>
          <dept>2</dept>
          <id>3</id>
        </company-info>
      </user>
    </users>
  </top>
</data>"#;

    #[test]
    fn rfc_6_4_3_entire_users_subtree() {
        let d = data();
        let got = run(
            r#"<top xmlns="http://example.com/schema/1.2/config"><users/></top>"#,
            &d,
        );
        assert_data(&got, ALL_USERS);
    }

    #[test]
    fn rfc_6_4_3_users_user_selection_gives_same_result() {
        let d = data();
        let got = run(
            r#"<top xmlns="http://example.com/schema/1.2/config">
                 <users><user/></users>
               </top>"#,
            &d,
        );
        assert_data(&got, ALL_USERS);
    }

    #[test]
    fn rfc_6_4_4_all_names_within_users() {
        let d = data();
        let got = run(
            r#"<top xmlns="http://example.com/schema/1.2/config">
                 <users><user><name/></user></users>
               </top>"#,
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user><name>root</name></user>
                 <user><name>fred</name></user>
                 <user><name>barney</name></user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn rfc_6_4_5_one_specific_user_entry() {
        let d = data();
        let got = run(
            r#"<top xmlns="http://example.com/schema/1.2/config">
                 <users><user><name>fred</name></user></users>
               </top>"#,
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user>
                   <name>fred</name>
                   <type>admin</type>
                   <full-name>Fred Flintstone</full-name>
                   <company-info><dept>2</dept><id>2</id></company-info>
                 </user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn rfc_6_4_6_specific_elements_from_specific_user() {
        let d = data();
        let got = run(
            r#"<top xmlns="http://example.com/schema/1.2/config">
                 <users><user>
                   <name>fred</name>
                   <type/>
                   <full-name/>
                 </user></users>
               </top>"#,
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user>
                   <name>fred</name>
                   <type>admin</type>
                   <full-name>Fred Flintstone</full-name>
                 </user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn rfc_6_4_7_multiple_subtrees() {
        let d = data();
        let got = run(
            r#"<top xmlns="http://example.com/schema/1.2/config">
                 <users>
                   <user>
                     <name>root</name>
                     <company-info/>
                   </user>
                   <user>
                     <name>fred</name>
                     <company-info><id/></company-info>
                   </user>
                   <user>
                     <name>barney</name>
                     <type>superuser</type>
                     <company-info><dept/></company-info>
                   </user>
                 </users>
               </top>"#,
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user>
                   <name>root</name>
                   <company-info><dept>1</dept><id>1</id></company-info>
                 </user>
                 <user>
                   <name>fred</name>
                   <company-info><id>2</id></company-info>
                 </user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn rfc_6_4_8_elements_with_attribute_naming() {
        let d = data();
        let got = run(
            r#"<t:top xmlns:t="http://example.com/schema/1.2/stats">
                 <t:interfaces>
                   <t:interface t:ifName="eth0"/>
                 </t:interfaces>
               </t:top>"#,
            &d,
        );
        assert_data(
            &got,
            r#"<data><t:top xmlns:t="http://example.com/schema/1.2/stats">
                 <t:interfaces>
                   <t:interface t:ifName="eth0">
                     <t:name>eth0</t:name>
                     <t:ifInOctets>45621</t:ifInOctets>
                     <t:ifOutOctets>774344</t:ifOutOctets>
                   </t:interface>
                 </t:interfaces>
               </t:top></data>"#,
        );
    }

    #[test]
    fn rfc_6_4_8_child_element_instead_of_attribute() {
        // The variant where ifName is a child rather than an attribute.
        let d = vec![parse(
            r#"<top xmlns="http://example.com/schema/1.2/stats"><interfaces>
                 <interface><ifName>eth0</ifName><ifInOctets>45621</ifInOctets></interface>
                 <interface><ifName>eth1</ifName><ifInOctets>100</ifInOctets></interface>
               </interfaces></top>"#,
        )
        .unwrap()];
        let got = run(
            r#"<top xmlns="http://example.com/schema/1.2/stats">
                 <interfaces><interface><ifName>eth0</ifName></interface></interfaces>
               </top>"#,
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/stats"><interfaces>
                 <interface><ifName>eth0</ifName><ifInOctets>45621</ifInOctets></interface>
               </interfaces></top></data>"#,
        );
    }

    #[test]
    fn unqualified_attribute_does_not_match_qualified_one() {
        // §6.4.8: an unqualified ifName is not the schema's ifName.
        let d = data();
        let got = run(
            &format!(
                r#"<top xmlns="{STATS}"><interfaces><interface ifName="eth0"/></interfaces></top>"#
            ),
            &d,
        );
        assert!(got.is_empty());
    }

    #[test]
    fn attribute_mismatch_or_absence_excludes() {
        let d = data();
        let got = run(
            &format!(
                r#"<t:top xmlns:t="{STATS}"><t:interfaces>
                     <t:interface t:ifName="eth9"/>
                     <t:interface t:speed="10"/>
                   </t:interfaces></t:top>"#
            ),
            &d,
        );
        assert!(got.is_empty());
    }

    #[test]
    fn unknown_element_or_namespace_selects_nothing() {
        let d = data();
        assert!(run(r#"<nosuch xmlns="urn:nowhere"/>"#, &d).is_empty());
        assert!(run(r#"<top xmlns="urn:nowhere"/>"#, &d).is_empty());
        assert!(run(&format!(r#"<top xmlns="{CFG}"><nosuch/></top>"#), &d).is_empty());
        // An unknown root does not disturb a known one beside it.
        let got = run(
            &format!(r#"<nosuch xmlns="urn:nowhere"/><top xmlns="{CFG}"><system/></top>"#),
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config">
                 <system><hostname>bedrock</hostname></system>
               </top></data>"#,
        );
    }

    #[test]
    fn filter_without_namespace_matches_any_namespace() {
        let d = data();
        let got = run("<top/>", &d);
        assert_eq!(got, d);
        let got = run(
            "<top><interfaces><interface><name>eth1</name></interface></interfaces></top>",
            &d,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ns, STATS);
        let names: Vec<String> = got[0]
            .elements()
            .flat_map(|i| i.elements())
            .map(|e| e.child(STATS, "name").unwrap().text())
            .collect();
        assert_eq!(names, ["eth1"]);
    }

    #[test]
    fn nested_namespace_must_match() {
        let d = data();
        let got = run(
            &format!(r#"<top xmlns="{CFG}"><users xmlns="{STATS}"/></top>"#),
            &d,
        );
        assert!(got.is_empty());
    }

    #[test]
    fn content_match_trims_whitespace_on_both_sides() {
        let d = vec![parse(&format!(
            r#"<top xmlns="{CFG}"><users><user><name>  fred
               </name><type>admin</type></user></users></top>"#
        ))
        .unwrap()];
        let got = run(
            &format!(
                r#"<top xmlns="{CFG}"><users><user><name>
                fred  </name></user></users></top>"#
            ),
            &d,
        );
        assert_eq!(got, d);
        // Inner whitespace is significant.
        let got = run(
            &format!(r#"<top xmlns="{CFG}"><users><user><name>fr ed</name></user></users></top>"#),
            &d,
        );
        assert!(got.is_empty());
    }

    #[test]
    fn whitespace_only_leaf_is_a_selection_node() {
        let d = data();
        let a = run(
            &format!(r#"<top xmlns="{CFG}"><system>  </system></top>"#),
            &d,
        );
        let b = run(&format!(r#"<top xmlns="{CFG}"><system/></top>"#), &d);
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn content_matches_are_anded() {
        let d = data();
        let both = |ty: &str| {
            run(
                &format!(
                    r#"<top xmlns="{CFG}"><users><user><name>fred</name><type>{ty}</type></user></users></top>"#
                ),
                &d,
            )
        };
        assert!(both("superuser").is_empty());
        assert_data(
            &both("admin"),
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user>
                   <name>fred</name>
                   <type>admin</type>
                   <full-name>Fred Flintstone</full-name>
                   <company-info><dept>2</dept><id>2</id></company-info>
                 </user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn content_match_on_non_key_selects_all_matching_entries() {
        let d = data();
        let got = run(
            &format!(
                r#"<top xmlns="{CFG}"><users><user><type>admin</type><full-name/></user></users></top>"#
            ),
            &d,
        );
        // Keys come first even though the filter did not ask for them.
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user><name>fred</name><type>admin</type><full-name>Fred Flintstone</full-name></user>
                 <user><name>barney</name><type>admin</type><full-name>Barney Rubble</full-name></user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn keys_are_added_first_to_partially_selected_entries() {
        let d = data();
        let got = run(
            &format!(
                r#"<t:top xmlns:t="{STATS}"><t:interfaces><t:interface><t:ifOutOctets/></t:interface></t:interfaces></t:top>"#
            ),
            &d,
        );
        assert_data(
            &got,
            r#"<data><t:top xmlns:t="http://example.com/schema/1.2/stats"><t:interfaces>
                 <t:interface t:ifName="eth0"><t:name>eth0</t:name><t:ifOutOctets>774344</t:ifOutOctets></t:interface>
                 <t:interface t:ifName="eth1"><t:name>eth1</t:name><t:ifOutOctets>200</t:ifOutOctets></t:interface>
               </t:interfaces></t:top></data>"#,
        );
    }

    #[test]
    fn keys_are_placed_first_even_when_data_has_them_later() {
        let d = vec![parse(&format!(
            r#"<top xmlns="{CFG}"><users><user><type>admin</type><name>wilma</name></user></users></top>"#
        ))
        .unwrap()];
        let got = run(
            &format!(r#"<top xmlns="{CFG}"><users><user><type/></user></users></top>"#),
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user><name>wilma</name><type>admin</type></user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn keys_do_not_select_an_entry_on_their_own() {
        // A user without <type>: the filter selects nothing inside it.
        let d = vec![parse(&format!(
            r#"<top xmlns="{CFG}"><users>
                 <user><name>wilma</name></user>
                 <user><name>betty</name><type>admin</type></user>
               </users></top>"#
        ))
        .unwrap()];
        let got = run(
            &format!(r#"<top xmlns="{CFG}"><users><user><type/></user></users></top>"#),
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user><name>betty</name><type>admin</type></user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn keys_of_receives_the_data_path() {
        let d = data();
        let seen = std::cell::RefCell::new(Vec::new());
        let spy = |path: &[&Element]| {
            seen.borrow_mut().push(
                path.iter()
                    .map(|e| e.name.clone())
                    .collect::<Vec<_>>()
                    .join("/"),
            );
            keys(path)
        };
        let filter = parse(&format!(
            r#"<f><top xmlns="{CFG}"><users><user><type/></user></users></top></f>"#
        ))
        .unwrap();
        let roots: Vec<&Element> = filter.elements().collect();
        let got = apply(&roots, &d, &spy);
        assert_eq!(got.len(), 1);
        let seen = seen.into_inner();
        assert!(seen.contains(&"top/users/user".to_string()), "{seen:?}");
        assert!(seen.contains(&"top".to_string()));
        assert!(seen.contains(&"top/users".to_string()));
    }

    #[test]
    fn instances_of_the_same_entry_are_ored_and_merged() {
        let d = data();
        // Filter order differs from data order, and fred is named twice.
        let got = run(
            &format!(
                r#"<top xmlns="{CFG}"><users>
                     <user><name>fred</name><full-name/></user>
                     <user><name>root</name><type/></user>
                     <user><name>fred</name><type/></user>
                   </users></top>"#
            ),
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user><name>root</name><type>superuser</type></user>
                 <user><name>fred</name><type>admin</type><full-name>Fred Flintstone</full-name></user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn overlapping_subtrees_are_not_duplicated() {
        let d = data();
        let got = run(
            &format!(
                r#"<top xmlns="{CFG}"><system/></top>
                   <top xmlns="{CFG}"><users><user><name>fred</name></user></users></top>
                   <top xmlns="{CFG}"><users/></top>
                   <top xmlns="{CFG}"><system><hostname/></system></top>"#
            ),
            &d,
        );
        // The whole <users> absorbs the fred-only selection, and <system>
        // is selected twice: the result is the config <top> once, in full.
        assert_eq!(got.len(), 1);
        assert_eq!(norm(&got[0]), norm(&d[0]));
    }

    #[test]
    fn containment_that_matches_nothing_is_pruned() {
        let d = data();
        let got = run(
            &format!(r#"<top xmlns="{CFG}"><users><user><name>wilma</name></user></users></top>"#),
            &d,
        );
        assert!(got.is_empty(), "{got:?}");
        let got = run(
            &format!(
                r#"<top xmlns="{CFG}"><users><user><name>wilma</name></user></users><system/></top>"#
            ),
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config">
                 <system><hostname>bedrock</hostname></system>
               </top></data>"#,
        );
    }

    #[test]
    fn content_match_with_containment_sibling() {
        let d = data();
        let got = run(
            &format!(
                r#"<top xmlns="{CFG}"><users><user><name>barney</name><company-info><id/></company-info></user></users></top>"#
            ),
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config"><users>
                 <user><name>barney</name><company-info><id>3</id></company-info></user>
               </users></top></data>"#,
        );
    }

    #[test]
    fn leaf_list_content_match_keeps_only_matching_instances() {
        let d = vec![parse(&format!(
            r#"<top xmlns="{CFG}"><dns><server>1.1.1.1</server><server>8.8.8.8</server><domain>x</domain></dns></top>"#
        ))
        .unwrap()];
        // With a selection sibling, only the matching instance is returned.
        let got = run(
            &format!(r#"<top xmlns="{CFG}"><dns><server>8.8.8.8</server><domain/></dns></top>"#),
            &d,
        );
        assert_data(
            &got,
            r#"<data><top xmlns="http://example.com/schema/1.2/config">
                 <dns><server>8.8.8.8</server><domain>x</domain></dns>
               </top></data>"#,
        );
        // Alone, it selects the whole parent.
        let got = run(
            &format!(r#"<top xmlns="{CFG}"><dns><server>8.8.8.8</server></dns></top>"#),
            &d,
        );
        assert_eq!(got, d);
    }

    #[test]
    fn top_level_content_match_is_scoped_to_its_namespace() {
        let d = vec![
            parse(r#"<mode xmlns="urn:a">on</mode>"#).unwrap(),
            parse(r#"<other xmlns="urn:a"><x>1</x></other>"#).unwrap(),
            parse(r#"<mode xmlns="urn:b">off</mode>"#).unwrap(),
        ];
        let got = run(r#"<mode xmlns="urn:a">on</mode>"#, &d);
        assert_eq!(got, d[..2].to_vec());
        // A false test in urn:a does not suppress a selection in urn:b.
        let got = run(r#"<mode xmlns="urn:a">off</mode><mode xmlns="urn:b"/>"#, &d);
        assert_eq!(got, d[2..].to_vec());
    }

    #[test]
    fn selected_leaf_text_is_kept_and_serialises() {
        let d = data();
        let got = run(
            &format!(
                r#"<top xmlns="{CFG}"><users><user><name>root</name><full-name/></user></users></top>"#
            ),
            &d,
        );
        assert_eq!(
            got[0].to_xml(),
            format!(
                r#"<top xmlns="{CFG}"><users><user><name>root</name><full-name>Charlie Root</full-name></user></users></top>"#
            )
        );
    }
}

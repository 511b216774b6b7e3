//! A small namespace-aware XML element tree.
//!
//! NETCONF messages are parsed into this tree once: the RPC layer reads the
//! operation and its parameters from it, the edit-config engine walks the
//! `<config>` subtree alongside the YANG schema, and subtree filters are
//! matched against it. libyang never sees the `<rpc>` envelope (it parses
//! data, not NETCONF operations).
//!
//! A peer controls the shape of the tree, so the cost of parsing it must be
//! linear in the message and nothing may recurse once per level of an
//! unbounded depth: [`parse`] refuses documents nested deeper than
//! [`MAX_DEPTH`], resolves a namespace prefix in constant time, and shares a
//! namespace URI between the elements that use it. Dropping and serialising
//! a tree are loops, so even a tree built by hand cannot overflow the stack;
//! the other walks (the derived `Clone`, `PartialEq`, `Debug`, and the
//! filter and edit walks elsewhere) recurse, bounded by `MAX_DEPTH` for
//! anything that came from a peer.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::ops::Deref;
use std::sync::Arc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// The NETCONF base namespace.
pub const NC_NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// How deeply elements may nest in one document (the root is level 1).
///
/// Our YANG data is less than ten levels deep; the `<rpc>` envelope, the
/// operation, `<config>` or `<filter>` add three. 128 leaves room for any
/// module we may add while keeping the recursive walks over a parsed tree
/// (clone, compare, filter matching) a few hundred kilobytes of stack at most,
/// well inside a tokio worker's 2 MiB: a 100,000-deep `<edit-config>` used
/// to overflow it and take DHCP and VRRP down with the process.
pub const MAX_DEPTH: usize = 128;

/// The most elements one document may hold. A parsed element costs about
/// 160 bytes, 40 times the 4 bytes of an empty `<a/>`: without a cap a
/// message within the 64 MiB framing limit could take gigabytes. A million
/// elements (about 160 MB while parsed) is some 200,000 pool or
/// reservation entries in one `<edit-config>`.
pub const MAX_ELEMENTS: usize = 1_000_000;

/// A namespace URI. Shared, not copied: every element of a document that is
/// in one namespace points at one allocation, so a long URI declared once
/// and used by many elements costs its length once (a copy per element let
/// a message of a few megabytes ask for gigabytes).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ns(Arc<str>);

impl Ns {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Ns {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Ns {
    fn from(s: &str) -> Ns {
        Ns(Arc::from(s))
    }
}

impl From<String> for Ns {
    fn from(s: String) -> Ns {
        Ns(Arc::from(s))
    }
}

impl From<Ns> for String {
    fn from(ns: Ns) -> String {
        ns.0.to_string()
    }
}

impl PartialEq<str> for Ns {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Ns {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Ns {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Ns> for str {
    fn eq(&self, other: &Ns) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Ns> for &str {
    fn eq(&self, other: &Ns) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Ns> for String {
    fn eq(&self, other: &Ns) -> bool {
        **self == *other.0
    }
}

/// One element: its resolved namespace, local name, attributes and children.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    /// Namespace URI the element's prefix (or the default namespace) resolves to.
    pub ns: Ns,
    /// Local name, without prefix.
    pub name: String,
    /// Attributes other than namespace declarations.
    pub attrs: Vec<Attr>,
    /// Namespace declarations made on this element: (prefix, uri); prefix
    /// `None` is the default namespace.
    pub ns_decls: Vec<(Option<String>, String)>,
    /// Child elements and text, in document order.
    pub children: Vec<Node>,
}

/// An attribute with its resolved namespace (unprefixed attributes have none).
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub ns: Option<Ns>,
    /// Qualified name as written (kept so that replies can copy it).
    pub qname: String,
    pub name: String,
    pub value: String,
}

/// A child of an element.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// Why a document could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Syntax(String),
    #[error("undeclared namespace prefix '{0}'")]
    UnknownPrefix(String),
    #[error("document has no root element")]
    Empty,
    #[error("content after the root element")]
    TrailingContent,
    #[error("document nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("document has more than {MAX_ELEMENTS} elements")]
    TooManyElements,
}

/// Dropping is a loop: the derived drop recursed once per level, and a deep
/// enough tree overflowed the stack of whatever task let go of it.
impl Drop for Element {
    fn drop(&mut self) {
        if !self.has_elements() {
            return;
        }
        let mut pending = vec![std::mem::take(&mut self.children)];
        while let Some(mut children) = pending.pop() {
            for child in children.drain(..) {
                if let Node::Element(mut e) = child {
                    if e.has_elements() {
                        pending.push(std::mem::take(&mut e.children));
                    }
                    // `e` now has no child element: its drop returns at once
                }
            }
        }
    }
}

impl Element {
    pub fn new(ns: &str, name: &str) -> Element {
        Element {
            ns: Ns::from(ns),
            name: name.to_string(),
            attrs: Vec::new(),
            ns_decls: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Child elements only.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// First child element with this local name in this namespace.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.ns == ns && e.name == name)
    }

    /// Remove and return the first child element with this local name in
    /// this namespace (a large subtree is moved, not copied).
    pub fn take_child(&mut self, ns: &str, name: &str) -> Option<Element> {
        let i = self
            .children
            .iter()
            .position(|c| matches!(c, Node::Element(e) if e.ns == ns && e.name == name))?;
        match self.children.remove(i) {
            Node::Element(e) => Some(e),
            Node::Text(_) => unreachable!("position matched an element"),
        }
    }

    /// First child element with this local name in the NETCONF namespace.
    pub fn nc_child(&self, name: &str) -> Option<&Element> {
        self.child(NC_NS, name)
    }

    /// Concatenated text content of direct text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.children {
            if let Node::Text(t) = c {
                s.push_str(t);
            }
        }
        s
    }

    /// Text content with surrounding whitespace removed.
    pub fn text_trimmed(&self) -> String {
        self.text().trim().to_string()
    }

    /// Whether the element has any child element.
    pub fn has_elements(&self) -> bool {
        self.elements().next().is_some()
    }

    /// Value of an attribute by namespace (None = unqualified) and local name.
    pub fn attr(&self, ns: Option<&str>, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name && a.ns.as_deref() == ns)
            .map(|a| a.value.as_str())
    }

    /// Serialise this element, declaring namespaces where they change.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_xml(&mut out, "");
        out
    }

    /// Serialise with `parent_ns` as the default namespace in scope.
    ///
    /// A loop over an explicit stack of open elements (large trees are
    /// serialised, and a recursion per level overflowed on deep ones).
    pub fn write_xml(&self, out: &mut String, parent_ns: &str) {
        if !self.write_start_tag(out, parent_ns) {
            return;
        }
        let mut open = vec![(self, self.children.iter())];
        while let Some((el, children)) = open.last_mut() {
            let el: &Element = el;
            match children.next() {
                Some(Node::Text(t)) => out.push_str(&escape_text(t)),
                Some(Node::Element(c)) => {
                    if c.write_start_tag(out, &el.ns) {
                        open.push((c, c.children.iter()));
                    }
                }
                None => {
                    out.push_str("</");
                    out.push_str(&el.name);
                    out.push('>');
                    open.pop();
                }
            }
        }
    }

    /// Write the start tag, or the whole element when it is empty; returns
    /// whether children and an end tag are to follow.
    fn write_start_tag(&self, out: &mut String, parent_ns: &str) -> bool {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            let _ = write!(out, " xmlns=\"{}\"", escape_attr(&self.ns));
        }
        // one generated prefix per attribute namespace, found by a map so
        // that many namespaced attributes stay linear
        let mut prefixes: Vec<&str> = Vec::new();
        let mut prefix_of: HashMap<&str, usize> = HashMap::new();
        for a in &self.attrs {
            match &a.ns {
                None => {
                    let _ = write!(out, " {}=\"{}\"", a.name, escape_attr(&a.value));
                }
                Some(ns) => {
                    let idx = *prefix_of.entry(ns.as_str()).or_insert_with(|| {
                        prefixes.push(ns.as_str());
                        prefixes.len() - 1
                    });
                    let _ = write!(out, " a{idx}:{}=\"{}\"", a.name, escape_attr(&a.value));
                }
            }
        }
        for (i, u) in prefixes.iter().enumerate() {
            let _ = write!(out, " xmlns:a{i}=\"{}\"", escape_attr(u));
        }
        // The element's own prefix declarations: its text may use them (an
        // RFC 8341 rule's path, an identityref). Those that would clash
        // with a generated attribute prefix are left out.
        for (p, u) in &self.ns_decls {
            if let Some(p) = p {
                let generated = p
                    .strip_prefix('a')
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n < prefixes.len());
                if !generated && p != "xmlns" {
                    let _ = write!(out, " xmlns:{p}=\"{}\"", escape_attr(u));
                }
            }
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return false;
        }
        out.push('>');
        true
    }
}

/// Escape text content.
pub fn escape_text(s: &str) -> String {
    if !s.contains(['&', '<', '>']) {
        return s.to_string();
    }
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escape an attribute value (double-quoted).
pub fn escape_attr(s: &str) -> String {
    if !s.contains(['&', '<', '>', '"']) {
        return s.to_string();
    }
    escape_text(s).replace('"', "&quot;")
}

/// Namespace bindings in scope while parsing.
///
/// Each prefix maps to the stack of its bindings, innermost last: an element
/// pushes the declarations it makes and pops them at its end tag, so
/// resolving a prefix is one lookup however deep or wide the document is
/// (walking every open element's declarations per element was quadratic).
struct Scope {
    /// `xmlns="..."` bindings.
    default: Vec<Ns>,
    /// `xmlns:p="..."` bindings.
    prefixed: HashMap<String, Vec<Ns>>,
    /// No namespace: one shared empty URI.
    none: Ns,
    xml: Ns,
}

impl Scope {
    fn new() -> Scope {
        Scope {
            default: Vec::new(),
            prefixed: HashMap::new(),
            none: Ns::default(),
            xml: Ns::from(XML_NS),
        }
    }

    fn declare(&mut self, decls: &[(Option<String>, String)]) {
        for (p, u) in decls {
            let u = Ns::from(u.as_str());
            match p {
                None => self.default.push(u),
                Some(p) => self.prefixed.entry(p.clone()).or_default().push(u),
            }
        }
    }

    /// Undo `declare` at the element's end.
    fn undeclare(&mut self, decls: &[(Option<String>, String)]) {
        for (p, _) in decls {
            match p {
                None => {
                    self.default.pop();
                }
                Some(p) => {
                    if let Some(stack) = self.prefixed.get_mut(p.as_str()) {
                        stack.pop();
                        if stack.is_empty() {
                            self.prefixed.remove(p.as_str());
                        }
                    }
                }
            }
        }
    }

    fn resolve(&self, prefix: Option<&str>) -> Option<Ns> {
        let bound = match prefix {
            None => self.default.last(),
            Some(p) => self.prefixed.get(p).and_then(|s| s.last()),
        };
        if let Some(u) = bound {
            // `xmlns=""` undeclares the default namespace: back to none
            return Some(if u.is_empty() {
                self.none.clone()
            } else {
                u.clone()
            });
        }
        match prefix {
            None => Some(self.none.clone()),
            Some("xml") => Some(self.xml.clone()),
            Some(_) => None,
        }
    }
}

fn split_qname(q: &str) -> (Option<&str>, &str) {
    match q.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, q),
    }
}

/// Build the element of a start (or empty) tag and declare its namespaces;
/// the caller undeclares them at the element's end.
fn open_element(start: &BytesStart<'_>, scope: &mut Scope) -> Result<Element, XmlError> {
    let mut decls = Vec::new();
    let mut raw_attrs = Vec::new();
    // quick-xml's duplicate check is hashed past a few attributes: linear
    for a in start.attributes() {
        let a = a.map_err(|e| XmlError::Syntax(e.to_string()))?;
        let key = a.key.0.to_string();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError::Syntax(e.to_string()))?
            .into_owned();
        if value.contains('\0') {
            return Err(nul());
        }
        if key == "xmlns" {
            decls.push((None, value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            decls.push((Some(p.to_string()), value));
        } else {
            raw_attrs.push((key, value));
        }
    }
    scope.declare(&decls);
    let qname = start.name().0.to_string();
    let (prefix, local) = split_qname(&qname);
    let ns = scope
        .resolve(prefix)
        .ok_or_else(|| XmlError::UnknownPrefix(prefix.unwrap_or_default().to_string()))?;
    let mut attrs = Vec::with_capacity(raw_attrs.len());
    for (key, value) in raw_attrs {
        let (p, l) = split_qname(&key);
        let ans = match p {
            None => None,
            Some(p) => Some(
                scope
                    .resolve(Some(p))
                    .ok_or_else(|| XmlError::UnknownPrefix(p.to_string()))?,
            ),
        };
        attrs.push(Attr {
            ns: ans,
            name: l.to_string(),
            qname: key.clone(),
            value,
        });
    }
    Ok(Element {
        ns,
        name: local.to_string(),
        attrs,
        ns_decls: decls,
        children: Vec::new(),
    })
}

fn push_text(stack: &mut [Element], text: &str) {
    if let Some(top) = stack.last_mut() {
        if let Some(Node::Text(t)) = top.children.last_mut() {
            t.push_str(text);
        } else {
            top.children.push(Node::Text(text.to_string()));
        }
    }
}

fn nul() -> XmlError {
    XmlError::Syntax("NUL character (not allowed in XML)".into())
}

/// Parse one XML document into its root element.
///
/// Linear in the document; refuses one nested deeper than [`MAX_DEPTH`]
/// or with more than [`MAX_ELEMENTS`] elements.
pub fn parse(doc: &str) -> Result<Element, XmlError> {
    parse_limited(doc, MAX_ELEMENTS)
}

/// Parse XML the daemon printed from its own data (libyang's print of a
/// datastore or state tree), as [`parse`] but with no element cap: the cap
/// bounds what a peer can make us hold, while our own data is as large as
/// the lease table (a subtree filter over 130,000 leases is a million
/// elements).
pub fn parse_own(doc: &str) -> Result<Element, XmlError> {
    parse_limited(doc, usize::MAX)
}

fn parse_limited(doc: &str, max_elements: usize) -> Result<Element, XmlError> {
    // U+0000 is no XML character (XML 1.0 §2.2), and libyang's C strings
    // cannot hold it: a namespace with one crashed the daemon in yang2
    // (found by the netconf_rpc fuzz target).
    if doc.contains('\0') {
        return Err(nul());
    }
    let mut elements = 0usize;
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;
    let mut scope = Scope::new();
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        match ev {
            Event::Start(s) => {
                if root.is_some() {
                    return Err(XmlError::TrailingContent);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                elements += 1;
                if elements > max_elements {
                    return Err(XmlError::TooManyElements);
                }
                let el = open_element(&s, &mut scope)?;
                stack.push(el);
            }
            Event::Empty(s) => {
                if root.is_some() {
                    return Err(XmlError::TrailingContent);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                elements += 1;
                if elements > max_elements {
                    return Err(XmlError::TooManyElements);
                }
                let el = open_element(&s, &mut scope)?;
                scope.undeclare(&el.ns_decls);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Syntax("unexpected end tag".into()))?;
                scope.undeclare(&el.ns_decls);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let raw = t.into_inner();
                if stack.is_empty() {
                    if !raw.trim().is_empty() {
                        return Err(XmlError::Syntax("text outside the root element".into()));
                    }
                } else {
                    push_text(&mut stack, &raw);
                }
            }
            Event::CData(c) => {
                let raw = c.into_inner();
                push_text(&mut stack, &raw);
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| XmlError::Syntax(e.to_string()))?
                        .ok_or_else(|| XmlError::Syntax("bad character reference".into()))
                        .and_then(|c| if c == '\0' { Err(nul()) } else { Ok(c) })?
                        .to_string()
                } else {
                    match r.into_inner().as_ref() {
                        "amp" => "&".into(),
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "apos" => "'".into(),
                        "quot" => "\"".into(),
                        other => return Err(XmlError::Syntax(format!("unknown entity &{other};"))),
                    }
                };
                if stack.is_empty() {
                    return Err(XmlError::Syntax(
                        "reference outside the root element".into(),
                    ));
                }
                push_text(&mut stack, &resolved);
            }
            Event::DocType(_) => {
                return Err(XmlError::Syntax("DOCTYPE is not allowed".into()));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax("unexpected end of document".into()));
    }
    root.ok_or(XmlError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_nul_characters() {
        for doc in [
            "<a xmlns=\"urn:x\0y\"/>",
            "<a>\0</a>",
            "<a xmlns=\"urn:x&#0;y\"/>",
            "<a b=\"&#0;\"/>",
            "<a>&#0;</a>",
            "<a>&#x0;</a>",
        ] {
            assert!(matches!(parse(doc), Err(XmlError::Syntax(_))), "{doc:?}");
        }
        assert!(parse("<a xmlns=\"urn:x\">&#1;</a>").is_ok());
    }

    #[test]
    fn parses_namespaces_and_entities() {
        let doc = r#"<?xml version="1.0"?>
<nc:rpc xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="7" xmlns:x="urn:x" x:foo="a&amp;b">
  <nc:get-config><nc:source><running/></nc:source></nc:get-config>
  <t xmlns="urn:t">a &lt; b &#65;</t>
</nc:rpc>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.ns, NC_NS);
        assert_eq!(root.name, "rpc");
        assert_eq!(root.attr(None, "message-id"), Some("7"));
        assert_eq!(root.attr(Some("urn:x"), "foo"), Some("a&b"));
        let gc = root.nc_child("get-config").unwrap();
        let src = gc.nc_child("source").unwrap();
        // unprefixed <running/> has no default namespace in scope
        assert_eq!(src.elements().next().unwrap().ns, "");
        let t = root.child("urn:t", "t").unwrap();
        assert_eq!(t.text(), "a < b A");
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse("<p:a/>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a/><b/>").is_err());
    }

    #[test]
    fn round_trips() {
        let root = parse(r#"<a xmlns="urn:a"><b xmlns="urn:b">x&amp;y</b><c/></a>"#).unwrap();
        let s = root.to_xml();
        assert_eq!(
            s,
            r#"<a xmlns="urn:a"><b xmlns="urn:b">x&amp;y</b><c/></a>"#
        );
        assert_eq!(parse(&s).unwrap(), root);
    }

    /// `depth` nested `<a>` elements, closed or not.
    fn nested(depth: usize, prefix: &str, closed: bool) -> String {
        let mut doc = String::new();
        if !prefix.is_empty() {
            doc.push_str(&format!("<{prefix}:r xmlns:{prefix}=\"urn:r\">"));
        }
        let tag = if prefix.is_empty() {
            "a".to_string()
        } else {
            format!("{prefix}:a")
        };
        for _ in 0..depth {
            doc.push_str(&format!("<{tag}>"));
        }
        if closed {
            for _ in 0..depth {
                doc.push_str(&format!("</{tag}>"));
            }
            if !prefix.is_empty() {
                doc.push_str(&format!("</{prefix}:r>"));
            }
        }
        doc
    }

    /// Run `f` on a thread with a small stack: recursion per level of a deep
    /// tree overflows it (and aborts the test binary) where a loop does not.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn documents_over_max_elements_are_refused() {
        // the root and MAX_ELEMENTS - 1 children: at the limit
        let at = format!("<r>{}</r>", "<a/>".repeat(MAX_ELEMENTS - 1));
        assert_eq!(parse(&at).unwrap().elements().count(), MAX_ELEMENTS - 1);
        let over = format!("<r>{}<b></b></r>", "<a/>".repeat(MAX_ELEMENTS - 1));
        assert!(matches!(parse(&over), Err(XmlError::TooManyElements)));
    }

    #[test]
    fn deep_document_is_refused() {
        on_small_stack(|| {
            let err = parse(&nested(100_000, "", true)).unwrap_err();
            assert!(
                err.to_string().contains("nesting deeper than"),
                "unexpected error: {err}"
            );
            let err = parse(&nested(100_000, "p", true)).unwrap_err();
            assert!(err.to_string().contains("nesting deeper than"), "{err}");
        });
    }

    #[test]
    fn unclosed_elements_stop_at_the_depth_limit() {
        // 300,000 unclosed <a> (0.9 MB): refused as too deep as soon as the
        // limit is crossed, not after resolving every open element's scope.
        let err = parse(&nested(300_000, "", false)).unwrap_err();
        assert!(err.to_string().contains("nesting deeper than"), "{err}");
    }

    #[test]
    fn drop_of_a_deep_tree_does_not_overflow_the_stack() {
        on_small_stack(|| {
            let mut root = Element::new("urn:a", "a");
            for _ in 0..1_000_000 {
                let mut parent = Element::new("urn:a", "a");
                parent.children.push(Node::Text("x".into()));
                parent.children.push(Node::Element(root));
                root = parent;
            }
            drop(root);
        });
    }

    #[test]
    fn document_at_the_depth_limit_parses() {
        for prefix in ["", "p"] {
            // the prefixed form adds its root element
            let depth = if prefix.is_empty() {
                MAX_DEPTH
            } else {
                MAX_DEPTH - 1
            };
            let doc = nested(depth, prefix, true);
            let root = parse(&doc).unwrap();
            // the recursive walks that remain handle the deepest tree
            assert!(root.clone() == root);
            let again = parse(&root.to_xml()).unwrap();
            assert!(again.to_xml() == root.to_xml());
            assert!(format!("{root:?}").len() > depth);
            assert!(matches!(
                parse(&nested(depth + 1, prefix, true)),
                Err(XmlError::TooDeep)
            ));
        }
        // an empty element one level too deep counts too
        let doc = format!(
            "{}<b/>{}",
            "<a>".repeat(MAX_DEPTH),
            "</a>".repeat(MAX_DEPTH)
        );
        assert!(matches!(parse(&doc), Err(XmlError::TooDeep)));
    }

    #[test]
    fn prefixes_are_scoped_to_their_element() {
        let doc = r#"<p:r xmlns:p="urn:1" xmlns="urn:d">
            <p:a xmlns:p="urn:2" p:x="1"><p:b/><c xmlns=""/></p:a>
            <p:e p:y="2"/><f/>
        </p:r>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.ns, "urn:1");
        let a = root.child("urn:2", "a").unwrap();
        assert_eq!(a.attr(Some("urn:2"), "x"), Some("1"));
        assert!(a.child("urn:2", "b").is_some());
        assert!(a.child("", "c").is_some());
        // urn:2 and the empty default ended with <p:a>
        let e = root.child("urn:1", "e").unwrap();
        assert_eq!(e.attr(Some("urn:1"), "y"), Some("2"));
        assert!(root.child("urn:d", "f").is_some());
        // a prefix declared on an empty element ends with it
        assert!(matches!(
            parse(r#"<r><a xmlns:q="urn:q"/><q:b/></r>"#),
            Err(XmlError::UnknownPrefix(p)) if p == "q"
        ));
    }

    #[test]
    fn a_namespace_is_shared_by_the_elements_in_it() {
        let uri = format!("urn:{}", "x".repeat(100_000));
        let doc = format!(r#"<r xmlns="{uri}">{}</r>"#, "<a/>".repeat(10_000));
        let root = parse(&doc).unwrap();
        assert!(root
            .elements()
            .all(|e| e.ns == uri.as_str() && Arc::ptr_eq(&e.ns.0, &root.ns.0)));
    }

    #[test]
    fn many_attribute_namespaces_serialise() {
        let n = 2_000;
        let decls: String = (0..n)
            .map(|i| format!(r#" xmlns:p{i}="urn:{i}""#))
            .collect();
        let attrs: String = (0..n).map(|i| format!(r#" p{i}:v="{i}""#)).collect();
        let root = parse(&format!("<r{decls}{attrs}/>")).unwrap();
        assert_eq!(root.attrs.len(), n);
        assert_eq!(root.attr(Some("urn:1999"), "v"), Some("1999"));
        let again = parse(&root.to_xml()).unwrap();
        assert_eq!(again.attrs.len(), n);
        assert_eq!(again.attr(Some("urn:1999"), "v"), Some("1999"));
    }

    #[test]
    fn serialising_a_deep_tree_does_not_overflow_the_stack() {
        on_small_stack(|| {
            let depth = 1_000_000;
            let mut root = Element::new("urn:a", "a");
            for _ in 1..depth {
                let mut parent = Element::new("urn:a", "a");
                parent.children.push(Node::Element(root));
                root = parent;
            }
            let xml = root.to_xml();
            assert!(xml.starts_with(r#"<a xmlns="urn:a"><a><a>"#));
            assert_eq!(xml.matches("<a").count(), depth);
            assert_eq!(xml.matches("<a/>").count(), 1);
            assert!(xml.ends_with(&"</a>".repeat(depth - 1)));
        });
    }
}

//! A small namespace-aware XML element tree.
//!
//! NETCONF messages are parsed into this tree once: the RPC layer reads the
//! operation and its parameters from it, the edit-config engine walks the
//! `<config>` subtree alongside the YANG schema, and subtree filters are
//! matched against it. libyang never sees the `<rpc>` envelope (it parses
//! data, not NETCONF operations).

use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// The NETCONF base namespace.
pub const NC_NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";

/// One element: its resolved namespace, local name, attributes and children.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    /// Namespace URI the element's prefix (or the default namespace) resolves to.
    pub ns: String,
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
    pub ns: Option<String>,
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
}

impl Element {
    pub fn new(ns: &str, name: &str) -> Element {
        Element {
            ns: ns.to_string(),
            name: name.to_string(),
            ..Default::default()
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
    pub fn write_xml(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            let _ = write!(out, " xmlns=\"{}\"", escape_attr(&self.ns));
        }
        let mut prefixes: Vec<(String, &str)> = Vec::new();
        for a in &self.attrs {
            match &a.ns {
                None => {
                    let _ = write!(out, " {}=\"{}\"", a.name, escape_attr(&a.value));
                }
                Some(ns) => {
                    let idx = match prefixes.iter().position(|(_, u)| *u == ns.as_str()) {
                        Some(i) => i,
                        None => {
                            prefixes.push((format!("a{}", prefixes.len()), ns.as_str()));
                            prefixes.len() - 1
                        }
                    };
                    let p = &prefixes[idx].0;
                    let _ = write!(out, " {p}:{}=\"{}\"", a.name, escape_attr(&a.value));
                }
            }
        }
        for (p, u) in &prefixes {
            let _ = write!(out, " xmlns:{p}=\"{}\"", escape_attr(u));
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Text(t) => out.push_str(&escape_text(t)),
                Node::Element(e) => e.write_xml(out, &self.ns),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
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

/// Namespace scope while parsing: one frame of declarations per open element.
struct Scope {
    frames: Vec<Vec<(Option<String>, String)>>,
}

impl Scope {
    fn resolve(&self, prefix: Option<&str>) -> Option<String> {
        for frame in self.frames.iter().rev() {
            for (p, u) in frame.iter().rev() {
                if p.as_deref() == prefix {
                    return Some(u.clone());
                }
            }
        }
        match prefix {
            None => Some(String::new()),
            Some("xml") => Some("http://www.w3.org/XML/1998/namespace".into()),
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

fn open_element(start: &BytesStart<'_>, scope: &mut Scope) -> Result<Element, XmlError> {
    let mut decls = Vec::new();
    let mut raw_attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|e| XmlError::Syntax(e.to_string()))?;
        let key = a.key.0.to_string();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError::Syntax(e.to_string()))?
            .into_owned();
        if key == "xmlns" {
            decls.push((None, value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            decls.push((Some(p.to_string()), value));
        } else {
            raw_attrs.push((key, value));
        }
    }
    scope.frames.push(decls.clone());
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

/// Parse one XML document into its root element.
pub fn parse(doc: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;
    let mut scope = Scope { frames: Vec::new() };
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
                let el = open_element(&s, &mut scope)?;
                stack.push(el);
            }
            Event::Empty(s) => {
                if root.is_some() {
                    return Err(XmlError::TrailingContent);
                }
                let el = open_element(&s, &mut scope)?;
                scope.frames.pop();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                scope.frames.pop();
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Syntax("unexpected end tag".into()))?;
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
                        .ok_or_else(|| XmlError::Syntax("bad character reference".into()))?
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
}

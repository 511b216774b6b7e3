//! `<rpc-error>` as a typed value (RFC 6241 Appendix A), and the mapping of
//! libyang validation errors onto it (RFC 7950 §15).

use std::fmt::Write as _;

use crate::xml::{escape_attr, escape_text, NC_NS};
use crate::yang::{self, LyError};

/// error-type (RFC 6241 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Transport,
    Rpc,
    Protocol,
    Application,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::Transport => "transport",
            ErrorType::Rpc => "rpc",
            ErrorType::Protocol => "protocol",
            ErrorType::Application => "application",
        }
    }
}

/// error-tag (RFC 6241 Appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorTag {
    InUse,
    InvalidValue,
    TooBig,
    MissingAttribute,
    BadAttribute,
    UnknownAttribute,
    MissingElement,
    BadElement,
    UnknownElement,
    UnknownNamespace,
    AccessDenied,
    LockDenied,
    ResourceDenied,
    RollbackFailed,
    DataExists,
    DataMissing,
    OperationNotSupported,
    OperationFailed,
    MalformedMessage,
}

impl ErrorTag {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorTag::InUse => "in-use",
            ErrorTag::InvalidValue => "invalid-value",
            ErrorTag::TooBig => "too-big",
            ErrorTag::MissingAttribute => "missing-attribute",
            ErrorTag::BadAttribute => "bad-attribute",
            ErrorTag::UnknownAttribute => "unknown-attribute",
            ErrorTag::MissingElement => "missing-element",
            ErrorTag::BadElement => "bad-element",
            ErrorTag::UnknownElement => "unknown-element",
            ErrorTag::UnknownNamespace => "unknown-namespace",
            ErrorTag::AccessDenied => "access-denied",
            ErrorTag::LockDenied => "lock-denied",
            ErrorTag::ResourceDenied => "resource-denied",
            ErrorTag::RollbackFailed => "rollback-failed",
            ErrorTag::DataExists => "data-exists",
            ErrorTag::DataMissing => "data-missing",
            ErrorTag::OperationNotSupported => "operation-not-supported",
            ErrorTag::OperationFailed => "operation-failed",
            ErrorTag::MalformedMessage => "malformed-message",
        }
    }
}

/// One `<rpc-error>`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub error_type: ErrorType,
    pub tag: ErrorTag,
    pub app_tag: Option<String>,
    /// Absolute instance-identifier in XML prefix form (`/vrrp:vrrp/...`);
    /// the prefixes used are declared on the element when printed.
    pub path: Option<String>,
    pub message: Option<String>,
    /// error-info children: (element name, text) in the NETCONF namespace.
    pub info: Vec<(String, String)>,
}

impl RpcError {
    pub fn new(error_type: ErrorType, tag: ErrorTag, message: impl Into<String>) -> RpcError {
        RpcError {
            error_type,
            tag,
            app_tag: None,
            path: None,
            message: Some(message.into()),
            info: Vec::new(),
        }
    }

    pub fn protocol(tag: ErrorTag, message: impl Into<String>) -> RpcError {
        RpcError::new(ErrorType::Protocol, tag, message)
    }

    pub fn application(tag: ErrorTag, message: impl Into<String>) -> RpcError {
        RpcError::new(ErrorType::Application, tag, message)
    }

    pub fn with_info(mut self, name: &str, value: impl Into<String>) -> RpcError {
        self.info.push((name.to_string(), value.into()));
        self
    }

    pub fn with_path(mut self, path: Option<String>) -> RpcError {
        self.path = path;
        self
    }

    pub fn with_app_tag(mut self, tag: &str) -> RpcError {
        self.app_tag = Some(tag.to_string());
        self
    }

    /// Operation-failed at the application layer (the common case).
    pub fn operation_failed(message: impl Into<String>) -> RpcError {
        RpcError::application(ErrorTag::OperationFailed, message)
    }

    /// `bad-element` style errors name the element in error-info.
    pub fn bad_element(error_type: ErrorType, tag: ErrorTag, element: &str, msg: &str) -> Self {
        RpcError::new(error_type, tag, msg).with_info("bad-element", element)
    }

    /// Print as XML (`<rpc-error>` in the NETCONF namespace).
    pub fn write_xml(&self, out: &mut String) {
        let _ = write!(out, "<rpc-error xmlns=\"{NC_NS}\">");
        let _ = write!(out, "<error-type>{}</error-type>", self.error_type.as_str());
        let _ = write!(out, "<error-tag>{}</error-tag>", self.tag.as_str());
        out.push_str("<error-severity>error</error-severity>");
        if let Some(t) = &self.app_tag {
            let _ = write!(out, "<error-app-tag>{}</error-app-tag>", escape_text(t));
        }
        if let Some(p) = &self.path {
            out.push_str("<error-path");
            for (prefix, ns) in path_prefixes(p) {
                let _ = write!(out, " xmlns:{prefix}=\"{}\"", escape_attr(ns));
            }
            let _ = write!(out, ">{}</error-path>", escape_text(p));
        }
        if let Some(m) = &self.message {
            let _ = write!(
                out,
                "<error-message xml:lang=\"en\">{}</error-message>",
                escape_text(m)
            );
        }
        if !self.info.is_empty() {
            out.push_str("<error-info>");
            for (k, v) in &self.info {
                let _ = write!(out, "<{k}>{}</{k}>", escape_text(v));
            }
            out.push_str("</error-info>");
        }
        out.push_str("</rpc-error>");
    }
}

/// The prefixes an XML-form path uses, with their namespaces.
fn path_prefixes(path: &str) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for m in yang::MODULES {
        let needle = format!("{}:", m.prefix);
        let used = path.match_indices(&needle).any(|(i, _)| {
            i == 0 || {
                let c = path.as_bytes()[i - 1];
                c == b'/' || c == b'[' || c == b' ' || c == b'('
            }
        });
        if used {
            out.push((m.prefix, m.namespace));
        }
    }
    out
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
                    current = yang::module_by_name(module)
                        .map(|m| m.prefix)
                        .unwrap_or(module);
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

/// Map one libyang validation error to an rpc-error (RFC 7950 §15).
pub fn from_ly(e: &LyError) -> RpcError {
    let path = e.path.as_deref().map(xml_path);
    let (tag, app_tag) = match e.apptag.as_deref() {
        Some("instance-required") => (ErrorTag::DataMissing, Some("instance-required")),
        Some("missing-choice") => (ErrorTag::DataMissing, Some("missing-choice")),
        Some(t @ ("too-few-elements" | "too-many-elements" | "data-not-unique")) => {
            (ErrorTag::OperationFailed, Some(t))
        }
        Some(t @ "must-violation") => (ErrorTag::OperationFailed, Some(t)),
        Some(t) => (ErrorTag::OperationFailed, Some(t)),
        None => {
            let m = e.message.as_str();
            if m.starts_with("Mandatory node") {
                (ErrorTag::DataMissing, None)
            } else if m.contains("Must condition") {
                (ErrorTag::OperationFailed, Some("must-violation"))
            } else if m.contains("Unique data") || m.contains("Duplicate instance") {
                (ErrorTag::OperationFailed, Some("data-not-unique"))
            } else if m.starts_with("Too few") {
                (ErrorTag::OperationFailed, Some("too-few-elements"))
            } else if m.starts_with("Too many") {
                (ErrorTag::OperationFailed, Some("too-many-elements"))
            } else if e.vecode == yang2::ffi::LY_VECODE::LYVE_REFERENCE {
                (ErrorTag::DataMissing, Some("instance-required"))
            } else if e.vecode == yang2::ffi::LY_VECODE::LYVE_DATA {
                (ErrorTag::InvalidValue, None)
            } else {
                (ErrorTag::OperationFailed, None)
            }
        }
    };
    RpcError {
        error_type: ErrorType::Application,
        tag,
        app_tag: app_tag.map(str::to_string),
        path,
        message: Some(e.message.clone()),
        info: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn error_xml_declares_prefixes() {
        let e = RpcError::application(ErrorTag::InvalidValue, "bad <value>")
            .with_path(Some("/vrrp:vrrp/vrrp:group".into()))
            .with_info("bad-element", "group");
        let mut s = String::new();
        e.write_xml(&mut s);
        assert!(s.contains("xmlns:vrrp=\"urn:hotlease:yang:vrrp\""));
        assert!(s.contains("bad &lt;value&gt;"));
        assert!(crate::xml::parse(&s).is_ok());
    }
}

//! The rpc codec: decoding of `<rpc>` requests into the northbound's typed
//! operations (`northbound::ops`; RFC 6241 §7, RFC 6243, RFC 6022
//! get-schema) and encoding of `<rpc-reply>` and `<rpc-error>`.
//!
//! Only the envelope and the operation parameters are read here; the
//! configuration and filter payloads stay `xml::Element`s for the
//! northbound to interpret against the YANG schema.

use std::fmt::Write as _;

use crate::northbound::error::{ErrorTag, ErrorType, RpcError};
use crate::northbound::notify::{self, SubscribeRequest, NOTIF_NS};
use crate::northbound::ops::{
    Commit, Datastore, EditOp, ErrorOption, Filter, Operation, Reply, Source, TestOption,
    MONITORING_NS,
};
use crate::xml::{escape_attr, escape_text, Element, Node, NC_NS};
use crate::yang::WithDefaults;

pub const WD_NS: &str = "urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults";
pub const RBK_NS: &str = "urn:hotlease:yang:remote-backup";

/// A decoded `<rpc>`: what to copy into the reply, and the operation (or the
/// errors that stop it).
#[derive(Debug)]
pub struct Request {
    pub reply_attrs: String,
    pub operation: Result<Operation, Vec<RpcError>>,
}

fn missing_element(name: &str, msg: &str) -> RpcError {
    RpcError::bad_element(ErrorType::Protocol, ErrorTag::MissingElement, name, msg)
}

fn bad_element(name: &str, msg: &str) -> RpcError {
    RpcError::bad_element(ErrorType::Protocol, ErrorTag::BadElement, name, msg)
}

fn datastore_of(parent: &Element, what: &str, allow_url: bool) -> Result<Datastore, RpcError> {
    let el = parent
        .nc_child(what)
        .ok_or_else(|| missing_element(what, &format!("<{what}> is missing")))?;
    let choice = el
        .elements()
        .next()
        .ok_or_else(|| missing_element(what, &format!("<{what}> names no datastore")))?;
    if choice.ns != NC_NS {
        return Err(bad_element(what, "unknown datastore"));
    }
    match choice.name.as_str() {
        "running" => Ok(Datastore::Running),
        "candidate" => Ok(Datastore::Candidate),
        "startup" => Ok(Datastore::Startup),
        "url" if allow_url => Err(RpcError::protocol(
            ErrorTag::OperationNotSupported,
            "the :url capability is not supported",
        )),
        other => Err(bad_element(what, &format!("unknown datastore <{other}>"))),
    }
}

/// The `<source>` parameter; an inline `<config>` is moved out of the
/// request, not copied.
fn source_of(parent: &mut Element) -> Result<Source, RpcError> {
    let el = parent
        .children
        .iter_mut()
        .find_map(|c| match c {
            Node::Element(e) if e.ns == NC_NS && e.name == "source" => Some(e),
            _ => None,
        })
        .ok_or_else(|| missing_element("source", "<source> is missing"))?;
    if let Some(cfg) = el.take_child(NC_NS, "config") {
        return Ok(Source::Config(cfg));
    }
    datastore_of(parent, "source", true).map(Source::Datastore)
}

/// The `<filter>` parameter; a subtree filter is moved out of the request.
fn filter_of(
    op: &mut Element,
    scope: &[(Option<String>, String)],
) -> Result<Option<Filter>, RpcError> {
    filter_in(op, scope, NC_NS)
}

/// The `<filter>` parameter in namespace `ns` (create-subscription's is
/// in the notification namespace; clients also send the base one).
fn filter_in(
    op: &mut Element,
    scope: &[(Option<String>, String)],
    ns: &str,
) -> Result<Option<Filter>, RpcError> {
    let Some(f) = op.child(ns, "filter") else {
        return Ok(None);
    };
    let ftype = f
        .attrs
        .iter()
        .find(|a| a.name == "type" && (a.ns.is_none() || a.ns.as_deref() == Some(NC_NS)))
        .map(|a| a.value.as_str())
        .unwrap_or("subtree");
    match ftype {
        "subtree" => Ok(op.take_child(ns, "filter").map(Filter::Subtree)),
        "xpath" => {
            let select = f
                .attrs
                .iter()
                .find(|a| a.name == "select")
                .map(|a| a.value.clone())
                .ok_or_else(|| {
                    RpcError::protocol(ErrorTag::MissingAttribute, "xpath filter needs select")
                        .with_info("bad-attribute", "select")
                        .with_info("bad-element", "filter")
                })?;
            // The innermost declaration of each prefix wins; walking from
            // the inside out and keeping the first seen is linear in the
            // declarations (a retain per declaration was quadratic).
            let mut seen = std::collections::HashSet::new();
            let mut namespaces: Vec<(String, String)> = scope
                .iter()
                .chain(op.ns_decls.iter())
                .chain(f.ns_decls.iter())
                .rev()
                .filter_map(|(p, u)| Some((p.as_ref()?, u)))
                .filter(|(p, _)| seen.insert(p.as_str()))
                .map(|(p, u)| (p.clone(), u.clone()))
                .collect();
            namespaces.reverse();
            Ok(Some(Filter::XPath { select, namespaces }))
        }
        other => Err(RpcError::protocol(
            ErrorTag::BadAttribute,
            format!("unknown filter type '{other}'"),
        )
        .with_info("bad-attribute", "type")
        .with_info("bad-element", "filter")),
    }
}

fn with_defaults_of(op: &Element) -> Result<WithDefaults, RpcError> {
    match op.child(WD_NS, "with-defaults") {
        None => Ok(WithDefaults::Explicit),
        Some(el) => WithDefaults::parse(el.text_trimmed().as_str()).ok_or_else(|| {
            RpcError::bad_element(
                ErrorType::Application,
                ErrorTag::InvalidValue,
                "with-defaults",
                "unknown with-defaults mode",
            )
        }),
    }
}

/// An enumerated parameter; absent means the first (default) choice.
fn choice<T: Copy>(op: &Element, name: &str, choices: &[(&str, T)]) -> Result<T, RpcError> {
    let Some(value) = text_param(op, name) else {
        return Ok(choices[0].1);
    };
    choices
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(v, _)| *v).collect();
            RpcError::bad_element(
                ErrorType::Protocol,
                ErrorTag::InvalidValue,
                name,
                &format!("{name} must be one of {}", names.join(", ")),
            )
        })
}

fn text_param(op: &Element, name: &str) -> Option<String> {
    op.nc_child(name).map(Element::text_trimmed)
}

/// Parameters each base operation accepts (RFC 6241 §7, RFC 6243 adds
/// with-defaults); anything else is an unknown-element.
fn allowed_parameters(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "get" => &["filter", "with-defaults"],
        "get-config" => &["source", "filter", "with-defaults"],
        "edit-config" => &[
            "target",
            "default-operation",
            "test-option",
            "error-option",
            "config",
            "url",
        ],
        "copy-config" => &["target", "source", "with-defaults"],
        "delete-config" | "lock" | "unlock" => &["target"],
        "close-session" | "discard-changes" => &[],
        "kill-session" => &["session-id"],
        "commit" => &["confirmed", "confirm-timeout", "persist", "persist-id"],
        "cancel-commit" => &["persist-id"],
        "validate" => &["source"],
        _ => return None,
    })
}

fn check_parameters(op: &Element) -> Result<(), RpcError> {
    let Some(allowed) = allowed_parameters(&op.name) else {
        return Ok(());
    };
    for p in op.elements() {
        let known = allowed.contains(&p.name.as_str())
            && (p.ns == NC_NS || (p.name == "with-defaults" && p.ns == WD_NS));
        if !known {
            // error-path: the operation, the unknown element's parent
            return Err(RpcError::bad_element(
                ErrorType::Protocol,
                ErrorTag::UnknownElement,
                &p.name,
                &format!("<{}> is not a parameter of <{}>", p.name, op.name),
            )
            .with_path(Some(format!("/nc:rpc/nc:{}", op.name))));
        }
    }
    Ok(())
}

fn decode_operation(
    op: &mut Element,
    scope: &[(Option<String>, String)],
) -> Result<Operation, RpcError> {
    if op.ns == RBK_NS && op.name == "batch-backup" {
        let service = op
            .child(RBK_NS, "service")
            .map(Element::text_trimmed)
            .ok_or_else(|| missing_element("service", "<service> is missing"))?;
        let service_type = op
            .child(RBK_NS, "service-type")
            .map(Element::text_trimmed)
            .ok_or_else(|| missing_element("service-type", "<service-type> is missing"))?;
        return Ok(Operation::BatchBackup {
            service,
            service_type,
        });
    }
    if op.ns == MONITORING_NS && op.name == "get-schema" {
        let identifier = op
            .child(MONITORING_NS, "identifier")
            .map(Element::text_trimmed)
            .ok_or_else(|| missing_element("identifier", "<identifier> is missing"))?;
        return Ok(Operation::GetSchema {
            identifier,
            version: op
                .child(MONITORING_NS, "version")
                .map(Element::text_trimmed),
            format: op.child(MONITORING_NS, "format").map(Element::text_trimmed),
        });
    }
    if op.ns == NOTIF_NS && op.name == "create-subscription" {
        return create_subscription(op, scope);
    }
    if op.ns != NC_NS {
        return Err(RpcError::protocol(
            ErrorTag::OperationNotSupported,
            format!(
                "operation <{}> in namespace '{}' is not supported",
                op.name, op.ns
            ),
        ));
    }
    check_parameters(op)?;
    Ok(match op.name.as_str() {
        "get" => Operation::Get {
            filter: filter_of(op, scope)?,
            with_defaults: with_defaults_of(op)?,
        },
        "get-config" => Operation::GetConfig {
            source: datastore_of(op, "source", true)?,
            filter: filter_of(op, scope)?,
            with_defaults: with_defaults_of(op)?,
        },
        "edit-config" => {
            let target = datastore_of(op, "target", true)?;
            let default_operation = choice(
                op,
                "default-operation",
                &[
                    ("merge", EditOp::Merge),
                    ("replace", EditOp::Replace),
                    ("none", EditOp::None),
                ],
            )?;
            let test_option = choice(
                op,
                "test-option",
                &[
                    ("test-then-set", TestOption::TestThenSet),
                    ("set", TestOption::Set),
                    ("test-only", TestOption::TestOnly),
                ],
            )?;
            let error_option = choice(
                op,
                "error-option",
                &[
                    ("stop-on-error", ErrorOption::StopOnError),
                    ("continue-on-error", ErrorOption::ContinueOnError),
                    ("rollback-on-error", ErrorOption::RollbackOnError),
                ],
            )?;
            if op.nc_child("url").is_some() {
                return Err(RpcError::protocol(
                    ErrorTag::OperationNotSupported,
                    "the :url capability is not supported",
                ));
            }
            let config = op
                .take_child(NC_NS, "config")
                .ok_or_else(|| missing_element("config", "<config> is missing"))?;
            Operation::EditConfig {
                target,
                default_operation,
                test_option,
                error_option,
                config,
            }
        }
        "copy-config" => Operation::CopyConfig {
            target: datastore_of(op, "target", true)?,
            source: source_of(op)?,
        },
        "delete-config" => Operation::DeleteConfig {
            target: datastore_of(op, "target", true)?,
        },
        "lock" => Operation::Lock {
            target: datastore_of(op, "target", false)?,
        },
        "unlock" => Operation::Unlock {
            target: datastore_of(op, "target", false)?,
        },
        "close-session" => Operation::CloseSession,
        "kill-session" => {
            let id = text_param(op, "session-id")
                .ok_or_else(|| missing_element("session-id", "<session-id> is missing"))?;
            let session_id = id.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
                RpcError::bad_element(
                    ErrorType::Protocol,
                    ErrorTag::InvalidValue,
                    "session-id",
                    "session-id must be a positive integer",
                )
            })?;
            Operation::KillSession { session_id }
        }
        "commit" => {
            let confirmed = op.nc_child("confirmed").is_some();
            let confirm_timeout = match text_param(op, "confirm-timeout") {
                None => 600,
                Some(t) => t.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| {
                    RpcError::bad_element(
                        ErrorType::Protocol,
                        ErrorTag::InvalidValue,
                        "confirm-timeout",
                        "confirm-timeout must be a positive number of seconds",
                    )
                })?,
            };
            Operation::Commit(Commit {
                confirmed,
                confirm_timeout,
                persist: text_param(op, "persist"),
                persist_id: text_param(op, "persist-id"),
            })
        }
        "cancel-commit" => Operation::CancelCommit {
            persist_id: text_param(op, "persist-id"),
        },
        "discard-changes" => Operation::DiscardChanges,
        "validate" => Operation::Validate {
            source: source_of(op)?,
        },
        other => {
            return Err(RpcError::protocol(
                ErrorTag::OperationNotSupported,
                format!("operation <{other}> is not supported"),
            ))
        }
    })
}

/// RFC 5277 §2.1.1: stream, filter, startTime, stopTime (the times are
/// checked by the bus, which knows the log).
fn create_subscription(
    op: &mut Element,
    scope: &[(Option<String>, String)],
) -> Result<Operation, RpcError> {
    for p in op.elements() {
        let known = matches!(
            p.name.as_str(),
            "stream" | "filter" | "startTime" | "stopTime"
        ) && (p.ns == NOTIF_NS || (p.name == "filter" && p.ns == NC_NS));
        if !known {
            return Err(RpcError::bad_element(
                ErrorType::Protocol,
                ErrorTag::UnknownElement,
                &p.name,
                &format!("<{}> is not a parameter of <create-subscription>", p.name),
            ));
        }
    }
    let text = |name: &str| op.child(NOTIF_NS, name).map(Element::text_trimmed);
    let (stream, start, stop) = (text("stream"), text("startTime"), text("stopTime"));
    let filter = match filter_in(op, scope, NOTIF_NS)? {
        Some(f) => Some(f),
        None => filter_in(op, scope, NC_NS)?,
    };
    Ok(Operation::CreateSubscription(SubscribeRequest {
        stream: stream.unwrap_or_else(|| notify::STREAM.to_string()),
        filter,
        start,
        stop,
    }))
}

/// Decode a parsed message whose root is `<rpc>`.
pub fn decode(mut rpc: Element) -> Request {
    let mut reply_attrs = String::new();
    for (p, u) in &rpc.ns_decls {
        match p {
            // our reply declares the NETCONF default namespace itself
            None => {}
            Some(p) => {
                let _ = write!(reply_attrs, " xmlns:{p}=\"{}\"", escape_attr(u));
            }
        }
    }
    for a in &rpc.attrs {
        let _ = write!(reply_attrs, " {}=\"{}\"", a.qname, escape_attr(&a.value));
    }
    if rpc.attr(None, "message-id").is_none() {
        let e = RpcError::rpc_missing_message_id();
        return Request {
            reply_attrs,
            operation: Err(vec![e]),
        };
    }
    let mut ops = rpc.children.iter_mut().filter_map(|c| match c {
        Node::Element(e) => Some(e),
        Node::Text(_) => None,
    });
    let operation = match (ops.next(), ops.next()) {
        (Some(op), None) => decode_operation(op, &rpc.ns_decls).map_err(|e| vec![e]),
        (None, _) => Err(vec![missing_element("rpc", "<rpc> has no operation")]),
        (Some(_), Some(_)) => Err(vec![RpcError::protocol(
            ErrorTag::MalformedMessage,
            "<rpc> must hold exactly one operation",
        )]),
    };
    Request {
        reply_attrs,
        operation,
    }
}

impl RpcError {
    /// RFC 6241 §4.1: a missing message-id is a missing-attribute error.
    pub fn rpc_missing_message_id() -> RpcError {
        RpcError::new(
            ErrorType::Rpc,
            ErrorTag::MissingAttribute,
            "<rpc> has no message-id attribute",
        )
        .with_info("bad-attribute", "message-id")
        .with_info("bad-element", "rpc")
    }
}

/// Print an `<rpc-error>` (in the NETCONF namespace).
pub fn write_error(e: &RpcError, out: &mut String) {
    let _ = write!(out, "<rpc-error xmlns=\"{NC_NS}\">");
    let _ = write!(out, "<error-type>{}</error-type>", e.error_type.as_str());
    let _ = write!(out, "<error-tag>{}</error-tag>", e.tag.as_str());
    out.push_str("<error-severity>error</error-severity>");
    if let Some(t) = &e.app_tag {
        let _ = write!(out, "<error-app-tag>{}</error-app-tag>", escape_text(t));
    }
    if let Some(p) = &e.path {
        out.push_str("<error-path");
        for (prefix, ns) in path_prefixes(p) {
            let _ = write!(out, " xmlns:{prefix}=\"{}\"", escape_attr(ns));
        }
        let _ = write!(out, ">{}</error-path>", escape_text(p));
    }
    if let Some(m) = &e.message {
        let _ = write!(
            out,
            "<error-message xml:lang=\"en\">{}</error-message>",
            escape_text(m)
        );
    }
    if !e.info.is_empty() {
        out.push_str("<error-info>");
        for (k, v) in &e.info {
            let _ = write!(out, "<{k}>{}</{k}>", escape_text(v));
        }
        out.push_str("</error-info>");
    }
    out.push_str("</rpc-error>");
}

/// The prefixes an XML-form path uses, with their namespaces.
fn path_prefixes(path: &str) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for m in crate::yang::MODULES {
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

/// The start of an `<rpc-reply>` (see [`encode_reply`]).
pub fn reply_start(reply_attrs: &str) -> String {
    format!("<rpc-reply xmlns=\"{NC_NS}\"{reply_attrs}>")
}

/// Render an `<rpc-reply>`.
pub fn encode_reply(reply_attrs: &str, result: &Result<Reply, Vec<RpcError>>) -> String {
    let mut out = reply_start(reply_attrs);
    match result {
        Ok(Reply::Ok) => out.push_str("<ok/>"),
        Ok(Reply::Data(d)) => {
            if d.is_empty() {
                out.push_str("<data/>");
            } else {
                out.push_str("<data>");
                out.push_str(d);
                out.push_str("</data>");
            }
        }
        Ok(Reply::Raw(r)) => out.push_str(r),
        Ok(Reply::Stream(_)) => {
            // written by the session in pieces (`session::Writer`), never
            // encoded whole
            let e = RpcError::operation_failed("a streamed reply is not encoded whole");
            write_error(&e, &mut out);
        }
        Err(errors) => {
            for e in errors {
                write_error(e, &mut out);
            }
        }
    }
    out.push_str("</rpc-reply>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    fn op(xml: &str) -> Result<Operation, Vec<RpcError>> {
        decode(parse(xml).unwrap()).operation
    }

    #[test]
    fn decodes_edit_config() {
        let o = op(
            r#"<rpc message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
          <edit-config><target><candidate/></target><default-operation>none</default-operation>
          <test-option>test-only</test-option><error-option>rollback-on-error</error-option>
          <config><vrrp xmlns="urn:hotlease:yang:vrrp"/></config></edit-config></rpc>"#,
        )
        .unwrap();
        match o {
            Operation::EditConfig {
                target,
                default_operation,
                test_option,
                error_option,
                config,
            } => {
                assert_eq!(target, Datastore::Candidate);
                assert_eq!(default_operation, EditOp::None);
                assert_eq!(test_option, TestOption::TestOnly);
                assert_eq!(error_option, ErrorOption::RollbackOnError);
                assert_eq!(config.elements().count(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn copies_attributes_and_flags_missing_message_id() {
        let r = decode(
            parse(r#"<nc:rpc xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" xmlns:ex="urn:ex" ex:user-id="fred" message-id="101"><nc:get/></nc:rpc>"#)
                .unwrap(),
        );
        assert!(r.reply_attrs.contains("ex:user-id=\"fred\""));
        assert!(r.reply_attrs.contains("xmlns:ex=\"urn:ex\""));
        assert!(r.operation.is_ok());
        let r = decode(
            parse(r#"<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get/></rpc>"#).unwrap(),
        );
        let e = &r.operation.unwrap_err()[0];
        assert_eq!(e.tag, ErrorTag::MissingAttribute);
        let reply = encode_reply(&r.reply_attrs, &Err(vec![e.clone()]));
        assert!(parse(&reply).is_ok());
    }

    #[test]
    fn commit_parameters() {
        let o = op(r#"<rpc message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><commit><confirmed/><confirm-timeout>30</confirm-timeout><persist>abc</persist></commit></rpc>"#).unwrap();
        assert_eq!(
            o,
            Operation::Commit(Commit {
                confirmed: true,
                confirm_timeout: 30,
                persist: Some("abc".into()),
                persist_id: None
            })
        );
        assert!(op(r#"<rpc message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><frobnicate/></rpc>"#).is_err());
    }

    #[test]
    fn error_xml_declares_prefixes() {
        let e = RpcError::application(ErrorTag::InvalidValue, "bad <value>")
            .with_path(Some("/vrrp:vrrp/vrrp:group".into()))
            .with_info("bad-element", "group");
        let mut s = String::new();
        write_error(&e, &mut s);
        assert!(s.contains("xmlns:vrrp=\"urn:hotlease:yang:vrrp\""));
        assert!(s.contains("bad &lt;value&gt;"));
        assert!(crate::xml::parse(&s).is_ok());
    }
}

//! The error every northbound operation answers with: an `<rpc-error>` as
//! a typed value (RFC 6241 Appendix A), the mapping of libyang validation
//! errors onto it (RFC 7950 §15), and of the subsystems' refusals
//! (`config::ConfigError`). The northbound owns it because it decides the
//! errors; `netconf/rpc.rs` only prints them on the wire.

use super::allowed;
use crate::config::{ConfigError, Refusal};
use crate::yang::{xml_path, LyError};

/// error-type (RFC 6241 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Transport,
    Rpc,
    Protocol,
    Application,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
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
    // a value libyang refused while parsing says what is allowed
    let message = match (tag, e.path.as_deref()) {
        (ErrorTag::InvalidValue, Some(at)) => allowed::parse_error_message(at, &e.message),
        _ => None,
    };
    RpcError {
        error_type: ErrorType::Application,
        tag,
        app_tag: app_tag.map(str::to_string),
        path,
        message: Some(message.unwrap_or_else(|| e.message.clone())),
        info: Vec::new(),
    }
}

/// A subsystem's refusal as the `<rpc-error>` of the operation that brought
/// the configuration: an unusable value is invalid-value, a rule or host
/// refusing valid values is operation-failed (with its app-tag).
impl From<ConfigError> for RpcError {
    fn from(e: ConfigError) -> RpcError {
        let tag = match e.kind {
            Refusal::Invalid => ErrorTag::InvalidValue,
            Refusal::Refused => ErrorTag::OperationFailed,
        };
        RpcError {
            error_type: ErrorType::Application,
            tag,
            app_tag: e.app_tag,
            path: Some(e.path),
            message: Some(e.message),
            info: Vec::new(),
        }
    }
}

/// Refusals of a configuration, as rpc-errors.
pub fn from_config(errors: Vec<ConfigError>) -> Vec<RpcError> {
    errors.into_iter().map(RpcError::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_tag_app_tag_path_and_message() {
        let e = RpcError::from(ConfigError::invalid(
            "/vrrp:vrrp".into(),
            "vrid: cannot use value 'x'",
        ));
        assert_eq!(
            (e.error_type, e.tag, e.app_tag.as_deref(), e.path.as_deref()),
            (
                ErrorType::Application,
                ErrorTag::InvalidValue,
                None,
                Some("/vrrp:vrrp")
            )
        );
        assert_eq!(e.message.as_deref(), Some("vrid: cannot use value 'x'"));
        let e = RpcError::from(
            ConfigError::refused("/dhcps:dhcp-server".into(), "overlap")
                .with_app_tag("section-overlap-other-pool"),
        );
        assert_eq!(e.tag, ErrorTag::OperationFailed);
        assert_eq!(e.app_tag.as_deref(), Some("section-overlap-other-pool"));
        assert_eq!(e.path.as_deref(), Some("/dhcps:dhcp-server"));
    }
}

//! The NETCONF server: SSH transport (`ssh`) and its connection caps
//! (`admission`), failed-login throttling (`throttle`), RFC 6242 framing (`framing`), one task per session
//! (`session`), and the rpc codec (`rpc`: `<rpc>` into the northbound's
//! typed operations, replies and `<rpc-error>`s onto the wire).
//!
//! Arrows run one way: this module calls the northbound (`Handle`) and uses
//! its operation and error types; nothing below it imports `netconf`.

pub mod admission;
pub mod framing;
pub mod rpc;
pub mod session;
pub mod ssh;
pub mod throttle;

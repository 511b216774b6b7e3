//! The NETCONF server: SSH transport (`ssh`) and its connection caps
//! (`admission`), RFC 6242 framing (`framing`),
//! one task per session (`session`), request decoding (`rpc`), errors
//! (`error`), and the pure helpers the northbound uses on payloads: the
//! edit-config engine (`edit`) and subtree filtering (`filter`).

pub mod admission;
pub mod edit;
pub mod error;
pub mod filter;
pub mod framing;
pub mod rpc;
pub mod session;
pub mod ssh;

//! The backup channel's wire protocol: messages, encoding, framing,
//! versions. Pure: bytes in, [`Message`]s out, and back; the channel runs
//! it as `Framed<TcpStream | TlsStream, WireCodec>`.
//!
//! # Frames
//!
//! ```text
//!   0                   1                   2                   3
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |          payload length N (u32, big endian, N <= MAX_FRAME)   |
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |    version    |    one Message, postcard encoded (N - 1 bytes)  ...
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The length prefix is `tokio_util`'s [`LengthDelimitedCodec`] (default
//! layout, [`MAX_FRAME`] bound). The first payload byte is the protocol
//! version the frame is written in ([`PROTOCOL_VERSION`]); the rest is
//! exactly one [`Message`] and nothing after it.
//!
//! # Encoding
//!
//! postcard 1 (its wire format is specified and frozen for 1.x): integers
//! other than `u8` are LEB128 varints, a `u8` is one byte, strings and
//! vectors are a varint length then their bytes or elements, `Option` is a
//! `0`/`1` byte then the value, an enum is its variant's index (a varint,
//! in declaration order) then its fields, a struct is its fields in
//! declaration order, an `Ipv4Addr` is its four octets. There are no field
//! names or tags, so the declaration order of every type below *is* the
//! contract: never reorder, insert or remove a field or a variant within a
//! version.
//!
//! postcard was chosen over bincode 2 because its format is a written
//! specification with a stability promise, its decoder checks every
//! length against the bytes that remain before using it (it preallocates
//! nothing a frame cannot hold), and bincode's development has ceased
//! (RUSTSEC-2025-0141).
//!
//! # Versions
//!
//! Every frame carries the version it is written in, so no frame of one
//! version is ever read as another. A decoder given a frame of a version
//! it does not speak stops there with [`WireError::UnsupportedVersion`]
//! (it never looks at the body), and the session answers with
//! `HelloReply::Refused` (reason [`Reason::UnsupportedVersion`], text
//! naming both versions, see [`WireError::refusal`]) and closes. Any
//! change to a message — a new variant included, since an older decoder
//! rejects an index it does not know — takes a new version. A newer
//! implementation that wants to talk to older ones keeps their decoders
//! (at least for `Hello` and `HelloReply`), so it can read an older peer's
//! refusal and fall back; this version speaks only version 1.
//!
//! Within a version, a frame that does not decode (an unknown variant
//! index, a varint out of range, a bad UTF-8 string, a short body, bytes
//! after the message) is [`WireError::Decode`] or
//! [`WireError::TrailingBytes`]: the session sends `Close` with
//! [`Reason::Undecodable`], logs and counts it, and closes; no lease
//! changes. Decoding never panics, and allocates at most what the frame
//! holds.
//!
//! # Session
//!
//! ```text
//!  router A                                        router B
//!   Hello ─────────────────────────┐ ┌─────────────────────── Hello
//!     (both sides send their Hello at once, without waiting)
//!   HelloReply(Accepted) ──────────┘ └──────── HelloReply(Accepted)
//!   Role{backup-id, master} ──────────────────►   (on every VRRP change)
//!   LeaseBatch{lsn 41, updates} ──────────────►   B makes them durable
//!        ◄───────────────────────────────────── LeasesRefused{41, ..} (if any)
//!        ◄───────────────────────────────────── Ack{41}  (cumulative)
//!   Keepalive{stamp} ─────────────────────────►
//!        ◄───────────────────────────────────── KeepaliveReply{stamp}
//!   BatchRequest{batch 7, after: none} ───────►
//!        ◄───────────────────────────────────── BatchPage{7, leases, cursor, more}
//!   BatchRequest{batch 7, after: cursor} ─────►   ... until more = false
//!   BatchDone{7, counts} ─────────────────────►
//!   Close{reason, text} ──────────────────────►   then the connection closes
//! ```
//!
//! # Clocks
//!
//! Lease times (`WireLease::expires`) are absolute unix seconds of the
//! sender's lease clock (`dhcp::clock`, which a step of the wall clock
//! does not move). Each `Hello` carries that clock; both routers take the
//! skew from the same two hellos (peer minus ours: the two values are
//! exact opposites, 0 within `channel::CLOCK_SKEW_TOLERANCE`), and the
//! receiver moves every lease time it gets by it ([`WireLease::to_local`]):
//! a lease runs out on both routers at the same moment, a lease sent back
//! comes home unchanged, and both order two versions of an address alike.
//! The format did not change for this (version 1 still): a version-1 peer
//! that does not correct refuses a skew over 30 s, so the two differ only
//! for a skew of 3 to 30 s, by at most that much.
//!
//! Nothing but `Hello`, `HelloReply` and `Close` may be sent before both
//! replies said `Accepted`. Either router may send lease batches (each is
//! master for its own profiles); LSNs are per sender.

use std::io;
use std::net::Ipv4Addr;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LengthDelimitedCodecError};

use crate::dhcp::leases::{Change, Lease, LeaseState, Origin};

/// The version this implementation writes and the only one it reads.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest payload (version byte + message) of a frame, both ways.
///
/// The length prefix is read before the frame: without a bound, four bytes
/// from a confused or hostile peer (or a TLS record on a plain session,
/// which reads as a length of about 370 MB) would make the reader reserve
/// that much. With it, a session buffers at most this much per frame and
/// an over-long prefix is refused before any allocation. 4 MiB holds
/// [`MAX_UPDATES`] leases of the largest size the configuration allows.
pub const MAX_FRAME: usize = 4 << 20;

/// Most lease updates a sender puts in one [`LeaseBatch`] or [`BatchPage`]
/// (and the most a [`BatchRequest`] may ask for): that many leases of the
/// largest size fit in [`MAX_FRAME`]; a longer log batch is sent as
/// several frames.
pub const MAX_UPDATES: usize = 4096;

/// Limits of the lease fields, as the DHCP server produces them: checked
/// on the way in ([`Lease::try_from`]), so a peer cannot plant what the
/// local server could never have granted.
pub const MAX_HW_LEN: usize = 16;
/// Option 61, 12 and 82 values are at most 255 bytes (one DHCP option).
pub const MAX_OPTION_LEN: usize = 255;
/// A pool name is 1..64 characters (`hotlease-dhcp-server.yang`).
pub const MAX_POOL_LEN: usize = 64;

// ------------------------------------------------------------ messages

/// One frame's message. Variant order is part of the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First frame of each side.
    Hello(Hello),
    /// Each side's answer to the other's [`Hello`].
    HelloReply(HelloReply),
    /// The sender closes the session, and says why (for the peer's state
    /// and logs: "last down reason").
    Close(Refusal),
    /// Liveness and round-trip time; answered at once with
    /// [`Message::KeepaliveReply`] carrying the same stamp.
    Keepalive(Keepalive),
    KeepaliveReply(Keepalive),
    /// The sender's VRRP role for a profile changed.
    Role(ProfileRole),
    /// Real-time replication: lease changes in log order.
    LeaseBatch(LeaseBatch),
    /// Cumulative acknowledgement of [`LeaseBatch`]es.
    Ack(Ack),
    /// Updates of a batch the receiver did not apply, sent before the
    /// batch's [`Ack`].
    LeasesRefused(LeasesRefused),
    /// Batch backup: ask the peer for a page of its lease table.
    BatchRequest(BatchRequest),
    BatchPage(BatchPage),
    /// Batch backup: the requester is done, with the outcome.
    BatchDone(BatchDone),
    /// Batch backup on demand (the `batch-backup` rpc): the sender asks
    /// the peer to run a batch backup from it now, with this batch
    /// number; the peer's `BatchDone` for it ends the rpc.
    BatchInvite(BatchInvite),
}

/// The first frame each side sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's `source` address of the service: who it says it is.
    /// The receiver checks it against its configured `peer address`, and
    /// the rule that keeps one session when both routers connect at once
    /// compares the two routers' addresses.
    pub source: Ipv4Addr,
    /// The sender's hotleased version, for state and logs only (what the
    /// two sides can read is decided by the frame's version byte).
    pub software: String,
    /// The sender's lease clock, unix seconds: leases carry absolute expiry
    /// times of it, so the receiver measures the skew, corrects the
    /// sender's lease times by it, and refuses one beyond a day
    /// ([`Reason::ClockSkew`]).
    pub unix_time: u64,
    /// Every profile the sender has on this service.
    pub profiles: Vec<ProfileHello>,
}

/// A profile as announced in the [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileHello {
    /// The profile's `backup-id`: the same profile has the same one on
    /// both routers (profile names may differ).
    pub backup_id: u16,
    /// Fingerprint of the configuration of the pools bound to the profile
    /// (computed by the configuration layer): the two routers must serve
    /// the same pools the same way, which the seed requires and we check.
    pub fingerprint: u64,
    /// The sender's role for the profile at the time of the hello.
    pub role: Role,
}

/// A router's role for a profile, from its VRRP group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Initialize,
    Master,
    Backup,
}

/// [`Message::Role`]: the sender's role for one profile changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRole {
    pub backup_id: u16,
    pub role: Role,
}

/// The answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The session is up. One verdict per profile of the hello: a profile
    /// that is not [`ProfileStatus::Accepted`] does not sync (its reason
    /// is in its state) while the others do.
    Accepted { profiles: Vec<ProfileVerdict> },
    /// The session is refused; the sender closes it after this frame.
    Refused(Refusal),
}

/// The receiver's verdict on one profile of a [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileVerdict {
    pub backup_id: u16,
    pub status: ProfileStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProfileStatus {
    /// Same backup-id, same pool fingerprint: the profile syncs.
    Accepted,
    /// The receiver has no profile with this backup-id on the service.
    UnknownBackupId,
    /// The bound pools are configured differently on the two routers.
    FingerprintMismatch,
}

/// Why a session is refused or closed: a reason the state can show, and a
/// text for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: Reason,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The peer's frames carry a protocol version this router does not
    /// speak.
    UnsupportedVersion,
    /// The hello's source is not the configured peer of a service here.
    UnexpectedPeer,
    /// Both routers connected at once; this is the session the rule drops
    /// (the other one stays).
    DuplicateSession,
    /// The wall clocks differ by more than the receiver accepts.
    ClockSkew,
    /// A frame did not decode (see [`WireError::refusal`]).
    Undecodable,
    /// A message out of order: anything before the hellos were accepted,
    /// an LSN that does not increase, a page of an unknown batch.
    ProtocolViolation,
    /// Nothing heard from the peer within the dead time.
    DeadTimer,
    /// The daemon is stopping.
    Shutdown,
    /// The service was deleted, or its peer, port or ssl-policy changed.
    Deconfigured,
}

/// Liveness probe. `stamp` is the sender's own clock (microseconds of a
/// monotonic clock); the receiver only echoes it, so the two clocks need
/// not agree and the sender gets the round-trip time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keepalive {
    pub stamp: u64,
}

/// Lease changes of one batch of the sender's lease log (or a part of one
/// longer than [`MAX_UPDATES`]), in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBatch {
    /// Log sequence number: strictly increasing on a session, so that one
    /// [`Ack`] covers every batch up to it. Numbers may be skipped (log
    /// batches with nothing for this service are not sent).
    pub lsn: u64,
    pub updates: Vec<LeaseUpdate>,
    /// True on every part of a log batch split over several frames but
    /// its last: the receiver acknowledges `lsn` only after the last part.
    pub more: bool,
}

/// One lease change, exactly as the lease log records it.
///
/// Bound, renewed, released, declined and expired leases are all an
/// [`LeaseUpdate::Upsert`] whose state says which (the log does not tell
/// a bind from a renewal, and the partner needs only the lease as it now
/// is); a lease removed by configuration (pool deleted or shrunk, an
/// expired quarantine) is a [`LeaseUpdate::Remove`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseUpdate {
    Upsert(WireLease),
    Remove { ip: Ipv4Addr },
}

/// A lease as it travels. Offers are holds, never persisted, so never
/// sent: there is no offered state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLease {
    pub ip: Ipv4Addr,
    pub pool: String,
    /// Client hardware address (chaddr, `hlen` bytes, at most 16).
    pub hw: Vec<u8>,
    /// Option 61 as the client sent it.
    pub client_id: Option<Vec<u8>>,
    /// Option 12 as the client sent it.
    pub hostname: Option<String>,
    pub state: WireState,
    /// Granted duration in seconds (`u32::MAX`: infinite).
    pub lifetime: u32,
    /// Unix seconds when the lease (or quarantine) runs out, on the
    /// sender's lease clock (`dhcp::clock`): the receiver moves it onto
    /// its own by the skew the hellos measured ([`WireLease::to_local`]).
    /// An infinite lease carries its grant here (`dhcp::leases::INFINITE`
    /// set), a released one the release.
    pub expires: u64,
    /// Option 82 (relay agent information) as the relay sent it. The
    /// carrier feature syncs it per user; the lease table does not keep it
    /// yet, so today's conversions send `None` and drop what arrives. It
    /// is in version 1 so that keeping it needs no new version.
    pub relay_agent: Option<Vec<u8>>,
}

/// [`LeaseState`] without `Offered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WireState {
    Bound,
    Released,
    Declined,
    Expired,
}

/// Cumulative: every [`LeaseBatch`] with an LSN up to `lsn` is durable on
/// the sender of the ack (or refused, see [`LeasesRefused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub lsn: u64,
}

/// The updates of batch `lsn` the receiver did not apply. They are
/// counted on both sides; the batch is still acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasesRefused {
    pub lsn: u64,
    pub leases: Vec<RefusedLease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedLease {
    pub ip: Ipv4Addr,
    /// The pool the update named (empty for a removal).
    pub pool: String,
    pub reason: LeaseRefusal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaseRefusal {
    /// No pool of that name here.
    UnknownPool,
    /// The pool exists but is not bound to a profile accepted on this
    /// session, or the address is outside it.
    NotInProfile,
    /// A field out of range (see [`LeaseError`]).
    Invalid,
}

/// Batch backup: ask for the peer's leases of the pools of `backup_ids`
/// with addresses above `after` (all when `None`), in address order, at
/// most `max` of them. The responder keeps no state between pages: the
/// cursor is in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// Chosen by the requester; echoed in the pages.
    pub batch: u32,
    pub backup_ids: Vec<u16>,
    pub after: Option<Ipv4Addr>,
    /// The responder sends at most `min(max, MAX_UPDATES)`.
    pub max: u32,
}

/// A page of the responder's lease table: every lease it holds in the
/// address range `(after, cursor]` of the request, so that the requester
/// can also see which of its own leases the peer lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPage {
    pub batch: u32,
    pub leases: Vec<WireLease>,
    /// Highest address the page covers; the next request's `after`.
    pub cursor: Ipv4Addr,
    /// False on the last page, which covers every address up to
    /// 255.255.255.255 whatever `cursor` says.
    pub more: bool,
}

/// The requester's outcome of a batch backup, for the responder's state
/// (last batch backup time, result and counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchDone {
    pub batch: u32,
    pub counts: BatchCounts,
}

/// See [`Message::BatchInvite`]. Numbers the inviter chooses have the
/// high bit set ([`INVITED`]), the requester's own never: the two kinds of
/// batch never share a number on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInvite {
    pub batch: u32,
}

/// The bit that marks a batch number chosen by an inviter.
pub const INVITED: u32 = 1 << 31;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Leases received in the pages.
    pub received: u32,
    /// The peer's lease was newer: taken.
    pub taken: u32,
    /// The requester's lease was newer, or the peer lacked it: sent back
    /// as real-time updates.
    pub sent: u32,
    /// Same on both sides.
    pub unchanged: u32,
    /// Not applied (unknown pool, invalid).
    pub refused: u32,
}

// ------------------------------------------------------------- errors

/// Errors of the codec. On any decode error the session is closed: after
/// one bad frame the byte stream cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("backup channel i/o: {0}")]
    Io(#[from] io::Error),
    #[error("frame announced longer than {MAX_FRAME} bytes")]
    FrameTooLong,
    #[error("empty frame (no protocol version byte)")]
    EmptyFrame,
    #[error(
        "peer speaks backup protocol version {got}, this router speaks version {PROTOCOL_VERSION}"
    )]
    UnsupportedVersion { got: u8 },
    #[error("undecodable message: {0}")]
    Decode(postcard::Error),
    #[error("{len} bytes after the message in its frame")]
    TrailingBytes { len: usize },
    #[error("connection closed inside a frame ({len} bytes of it received)")]
    Truncated { len: usize },
    /// Local: the message does not fit in a frame (the sender must split
    /// at [`MAX_UPDATES`]).
    #[error("message of {len} bytes does not fit in a frame of {MAX_FRAME}")]
    TooLongToSend { len: usize },
    #[error("message does not encode: {0}")]
    Encode(postcard::Error),
}

impl WireError {
    /// What to tell the peer before closing after this error: `None` when
    /// the fault is local or the transport is gone.
    pub fn refusal(&self) -> Option<Refusal> {
        let reason = match self {
            WireError::UnsupportedVersion { .. } => Reason::UnsupportedVersion,
            WireError::FrameTooLong
            | WireError::EmptyFrame
            | WireError::Decode(_)
            | WireError::TrailingBytes { .. } => Reason::Undecodable,
            WireError::Io(_)
            | WireError::Truncated { .. }
            | WireError::TooLongToSend { .. }
            | WireError::Encode(_) => return None,
        };
        Some(Refusal {
            reason,
            text: self.to_string(),
        })
    }
}

/// Why a lease does not convert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("an offer is a hold, not a lease: it is never replicated")]
    Offered,
    #[error("pool name is {len} bytes, must be 1 to {MAX_POOL_LEN}")]
    PoolName { len: usize },
    #[error("{field} is {len} bytes, at most {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

// -------------------------------------------------------------- codec

/// Frames and (de)serializes [`Message`]s: `Framed<stream, WireCodec>`.
#[derive(Debug)]
pub struct WireCodec {
    frames: LengthDelimitedCodec,
    /// A frame's length prefix was consumed and its payload is still being
    /// received (so an end of stream now is a truncated frame, even with
    /// nothing buffered).
    in_frame: bool,
}

impl WireCodec {
    pub fn new() -> WireCodec {
        WireCodec {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(MAX_FRAME)
                .new_codec(),
            in_frame: false,
        }
    }
}

impl Default for WireCodec {
    fn default() -> Self {
        WireCodec::new()
    }
}

/// Decode one frame's payload (version byte + message).
fn decode_payload(payload: &[u8]) -> Result<Message, WireError> {
    let (&version, body) = payload.split_first().ok_or(WireError::EmptyFrame)?;
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion { got: version });
    }
    let (msg, rest) = postcard::take_from_bytes::<Message>(body).map_err(WireError::Decode)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { len: rest.len() });
    }
    Ok(msg)
}

/// Encode `msg` as a frame payload (version byte + message).
fn encode_payload(msg: &Message) -> Result<Vec<u8>, WireError> {
    let payload = postcard::to_extend(msg, vec![PROTOCOL_VERSION]).map_err(WireError::Encode)?;
    if payload.len() > MAX_FRAME {
        return Err(WireError::TooLongToSend { len: payload.len() });
    }
    Ok(payload)
}

fn frame_error(e: io::Error) -> WireError {
    if e.get_ref()
        .is_some_and(|i| i.is::<LengthDelimitedCodecError>())
    {
        WireError::FrameTooLong
    } else {
        WireError::Io(e)
    }
}

impl Decoder for WireCodec {
    type Item = Message;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let before = src.len();
        match self.frames.decode(src).map_err(frame_error)? {
            Some(frame) => {
                self.in_frame = false;
                decode_payload(&frame).map(Some)
            }
            None => {
                // the prefix is consumed when (and only when) it is whole
                self.in_frame |= src.len() < before;
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, WireError> {
        match self.decode(src)? {
            Some(msg) => Ok(Some(msg)),
            None if src.is_empty() && !self.in_frame => Ok(None),
            None => Err(WireError::Truncated { len: src.len() }),
        }
    }
}

impl Encoder<&Message> for WireCodec {
    type Error = WireError;

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), WireError> {
        let payload = encode_payload(msg)?;
        self.frames
            .encode(payload.as_slice(), dst)
            .map_err(frame_error)
    }
}

impl Encoder<Message> for WireCodec {
    type Error = WireError;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), WireError> {
        self.encode(&msg, dst)
    }
}

// -------------------------------------------------------- conversions

impl TryFrom<LeaseState> for WireState {
    type Error = LeaseError;

    fn try_from(s: LeaseState) -> Result<WireState, LeaseError> {
        Ok(match s {
            LeaseState::Offered => return Err(LeaseError::Offered),
            LeaseState::Bound => WireState::Bound,
            LeaseState::Released => WireState::Released,
            LeaseState::Declined => WireState::Declined,
            LeaseState::Expired => WireState::Expired,
        })
    }
}

impl From<WireState> for LeaseState {
    fn from(s: WireState) -> LeaseState {
        match s {
            WireState::Bound => LeaseState::Bound,
            WireState::Released => LeaseState::Released,
            WireState::Declined => LeaseState::Declined,
            WireState::Expired => LeaseState::Expired,
        }
    }
}

impl TryFrom<&Lease> for WireLease {
    type Error = LeaseError;

    /// Refuses offers only: a lease of the local table is sent as it is.
    fn try_from(l: &Lease) -> Result<WireLease, LeaseError> {
        Ok(WireLease {
            ip: l.ip,
            pool: l.pool.clone(),
            hw: l.hw.clone(),
            client_id: l.client_id.clone(),
            hostname: l.hostname.clone(),
            state: l.state.try_into()?,
            lifetime: l.lifetime,
            expires: l.expires,
            relay_agent: None,
        })
    }
}

impl WireLease {
    /// `self` with its times moved from the sender's clock onto ours:
    /// `skew` is the sender's clock minus ours (s). A lease the sender
    /// granted for an hour then runs out an hour after its grant by our
    /// clock too, and a lease sent back comes home unchanged. An infinite
    /// lease's grant moves with it (still infinite); the one without a
    /// grant (`u64::MAX`) stays. Saturating: a time a skew would move past
    /// either end stays at that end.
    pub fn to_local(mut self, skew: i64) -> WireLease {
        self.expires = expiry_to_local(self.expires, self.lifetime, skew);
        self
    }
}

fn expiry_to_local(expires: u64, lifetime: u32, skew: i64) -> u64 {
    // the sender's time minus the skew (i64::MIN saturates to MAX's move)
    let by = skew.checked_neg().unwrap_or(i64::MAX);
    crate::dhcp::leases::shift_expiry(expires, lifetime, by)
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), LeaseError> {
    if len > max {
        return Err(LeaseError::TooLong { field, len, max });
    }
    Ok(())
}

impl TryFrom<WireLease> for Lease {
    type Error = LeaseError;

    /// A lease learnt from the partner (origin `peer`), with its fields
    /// checked against what the DHCP server itself can produce. Whether
    /// its pool exists here is the sync actor's question. The relay agent
    /// option is dropped (the table has no field for it yet).
    fn try_from(w: WireLease) -> Result<Lease, LeaseError> {
        if w.pool.is_empty() || w.pool.len() > MAX_POOL_LEN {
            return Err(LeaseError::PoolName { len: w.pool.len() });
        }
        check_len("hardware address", w.hw.len(), MAX_HW_LEN)?;
        if let Some(c) = &w.client_id {
            check_len("client-id", c.len(), MAX_OPTION_LEN)?;
        }
        if let Some(h) = &w.hostname {
            check_len("hostname", h.len(), MAX_OPTION_LEN)?;
        }
        if let Some(r) = &w.relay_agent {
            check_len("relay agent information", r.len(), MAX_OPTION_LEN)?;
        }
        Ok(Lease {
            ip: w.ip,
            pool: w.pool,
            hw: w.hw,
            client_id: w.client_id,
            hostname: w.hostname,
            state: w.state.into(),
            lifetime: w.lifetime,
            expires: w.expires,
            origin: Origin::Peer,
        })
    }
}

impl TryFrom<&Change> for LeaseUpdate {
    type Error = LeaseError;

    fn try_from(c: &Change) -> Result<LeaseUpdate, LeaseError> {
        Ok(match c {
            Change::Upsert(l) => LeaseUpdate::Upsert(l.try_into()?),
            Change::Delete(ip) => LeaseUpdate::Remove { ip: *ip },
        })
    }
}

impl TryFrom<LeaseUpdate> for Change {
    type Error = LeaseError;

    fn try_from(u: LeaseUpdate) -> Result<Change, LeaseError> {
        Ok(match u {
            LeaseUpdate::Upsert(w) => Change::Upsert(w.try_into()?),
            LeaseUpdate::Remove { ip } => Change::Delete(ip),
        })
    }
}

// -------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn wire_lease() -> WireLease {
        WireLease {
            ip: ip("10.0.0.7"),
            pool: "p1".into(),
            hw: vec![2, 0, 0, 0, 0, 1],
            client_id: None,
            hostname: Some("h".into()),
            state: WireState::Bound,
            lifetime: 3600,
            expires: 1_800_000_000,
            relay_agent: None,
        }
    }

    /// One message of every kind (and every variant of the inner enums).
    fn samples() -> Vec<Message> {
        let full = WireLease {
            client_id: Some(vec![1, 2, 0, 0, 0, 0, 1]),
            relay_agent: Some(vec![1, 4, 0, 0, 0, 9]),
            state: WireState::Expired,
            lifetime: u32::MAX,
            expires: u64::MAX,
            ..wire_lease()
        };
        vec![
            Message::Hello(Hello {
                source: ip("192.0.2.1"),
                software: "0.1.0".into(),
                unix_time: 1_800_000_000,
                profiles: vec![
                    ProfileHello {
                        backup_id: 10,
                        fingerprint: 0x0123_4567_89ab_cdef,
                        role: Role::Master,
                    },
                    ProfileHello {
                        backup_id: 65535,
                        fingerprint: 0,
                        role: Role::Initialize,
                    },
                ],
            }),
            Message::HelloReply(HelloReply::Accepted {
                profiles: vec![
                    ProfileVerdict {
                        backup_id: 10,
                        status: ProfileStatus::Accepted,
                    },
                    ProfileVerdict {
                        backup_id: 11,
                        status: ProfileStatus::UnknownBackupId,
                    },
                    ProfileVerdict {
                        backup_id: 12,
                        status: ProfileStatus::FingerprintMismatch,
                    },
                ],
            }),
            Message::HelloReply(HelloReply::Refused(Refusal {
                reason: Reason::UnexpectedPeer,
                text: "192.0.2.9 is not a configured peer".into(),
            })),
            Message::Close(Refusal {
                reason: Reason::Deconfigured,
                text: String::new(),
            }),
            Message::Keepalive(Keepalive { stamp: 123_456_789 }),
            Message::KeepaliveReply(Keepalive { stamp: u64::MAX }),
            Message::Role(ProfileRole {
                backup_id: 10,
                role: Role::Backup,
            }),
            Message::LeaseBatch(LeaseBatch {
                lsn: 41,
                updates: vec![
                    LeaseUpdate::Upsert(wire_lease()),
                    LeaseUpdate::Upsert(full.clone()),
                    LeaseUpdate::Remove { ip: ip("10.0.0.8") },
                ],
                more: true,
            }),
            Message::BatchInvite(BatchInvite { batch: INVITED | 3 }),
            Message::Ack(Ack { lsn: 41 }),
            Message::LeasesRefused(LeasesRefused {
                lsn: 41,
                leases: vec![
                    RefusedLease {
                        ip: ip("10.0.0.7"),
                        pool: "p9".into(),
                        reason: LeaseRefusal::UnknownPool,
                    },
                    RefusedLease {
                        ip: ip("10.0.0.8"),
                        pool: String::new(),
                        reason: LeaseRefusal::NotInProfile,
                    },
                    RefusedLease {
                        ip: ip("10.0.0.9"),
                        pool: "p1".into(),
                        reason: LeaseRefusal::Invalid,
                    },
                ],
            }),
            Message::BatchRequest(BatchRequest {
                batch: 7,
                backup_ids: vec![10, 11],
                after: None,
                max: 1000,
            }),
            Message::BatchRequest(BatchRequest {
                batch: 7,
                backup_ids: vec![10],
                after: Some(ip("10.0.0.7")),
                max: 1000,
            }),
            Message::BatchPage(BatchPage {
                batch: 7,
                leases: vec![
                    wire_lease(),
                    WireLease {
                        state: WireState::Released,
                        ..full.clone()
                    },
                    WireLease {
                        state: WireState::Declined,
                        ..full
                    },
                ],
                cursor: ip("10.0.0.7"),
                more: true,
            }),
            Message::BatchDone(BatchDone {
                batch: 7,
                counts: BatchCounts {
                    received: 3,
                    taken: 1,
                    sent: 2,
                    unchanged: 0,
                    refused: 0,
                },
            }),
        ]
    }

    fn frame(msg: &Message) -> BytesMut {
        let mut out = BytesMut::new();
        WireCodec::new().encode(msg, &mut out).unwrap();
        out
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, WireError> {
        let mut codec = WireCodec::new();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = codec.decode_eof(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    /// Ack: the smallest message, its frame spelled out.
    #[test]
    fn ack_bytes_both_ways() {
        let msg = Message::Ack(Ack { lsn: 300 });
        // length 4 | version 1 | variant 7 (Ack) | 300 as LEB128
        let bytes = [0, 0, 0, 4, 1, 7, 0xac, 0x02];
        assert_eq!(&frame(&msg)[..], &bytes);
        assert_eq!(decode_all(&bytes).unwrap(), vec![msg]);
    }

    /// LeaseBatch: the lease layout spelled out field by field.
    #[test]
    fn lease_batch_bytes_both_ways() {
        let msg = Message::LeaseBatch(LeaseBatch {
            lsn: 5,
            updates: vec![LeaseUpdate::Upsert(wire_lease())],
            more: false,
        });
        #[rustfmt::skip]
        let bytes = [
            0, 0, 0, 33,              // payload length
            1,                        // protocol version
            6,                        // Message::LeaseBatch
            5,                        // lsn
            1,                        // one update
            0,                        // LeaseUpdate::Upsert
            10, 0, 0, 7,              // ip
            2, b'p', b'1',            // pool
            6, 2, 0, 0, 0, 0, 1,      // hw
            0,                        // client_id: None
            1, 1, b'h',               // hostname: Some("h")
            0,                        // WireState::Bound
            0x90, 0x1c,               // lifetime 3600
            0x80, 0xa4, 0xa7, 0xda, 0x06, // expires 1,800,000,000
            0,                        // relay_agent: None
            0,                        // more: false
        ];
        assert_eq!(&frame(&msg)[..], &bytes);
        assert_eq!(decode_all(&bytes).unwrap(), vec![msg]);
    }

    /// Hello: the first frame, the one another version must read.
    #[test]
    fn hello_bytes_both_ways() {
        let msg = Message::Hello(Hello {
            source: ip("192.0.2.1"),
            software: "0.1.0".into(),
            unix_time: 1_800_000_000,
            profiles: vec![ProfileHello {
                backup_id: 10,
                fingerprint: 0x0123_4567_89ab_cdef,
                role: Role::Master,
            }],
        });
        #[rustfmt::skip]
        let bytes = [
            0, 0, 0, 29,              // payload length
            1,                        // protocol version
            0,                        // Message::Hello
            192, 0, 2, 1,             // source
            5, b'0', b'.', b'1', b'.', b'0', // software
            0x80, 0xa4, 0xa7, 0xda, 0x06, // unix_time
            1,                        // one profile
            10,                       // backup_id
            0xef, 0x9b, 0xaf, 0xcd, 0xf8, 0xac, 0xd1, 0x91, 0x01, // fingerprint
            1,                        // Role::Master
        ];
        assert_eq!(&frame(&msg)[..], &bytes);
        assert_eq!(decode_all(&bytes).unwrap(), vec![msg]);
    }

    #[test]
    fn every_message_round_trips() {
        let all = samples();
        let mut stream = BytesMut::new();
        for m in &all {
            let f = frame(m);
            assert_eq!(decode_all(&f).unwrap(), vec![m.clone()], "{m:?}");
            stream.extend_from_slice(&f);
        }
        // back to back on one stream, as the channel reads them
        assert_eq!(decode_all(&stream).unwrap(), all);
    }

    /// A stream cut at every possible point (one byte per read) decodes
    /// the same; nothing comes out before a frame is whole.
    #[test]
    fn frames_split_over_reads() {
        let all = samples();
        let mut bytes = Vec::new();
        for m in &all {
            bytes.extend_from_slice(&frame(m));
        }
        let mut codec = WireCodec::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in &bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = codec.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert_eq!(out, all);

        // three reads of 3, 4 and the rest bytes of one frame
        let f = frame(&all[0]);
        let mut codec = WireCodec::new();
        let mut buf = BytesMut::from(&f[..3]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&f[3..7]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&f[7..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(all[0].clone()));
    }

    /// The stream ends inside a frame: in its prefix, right after it, or
    /// inside its payload.
    #[test]
    fn end_of_stream_inside_a_frame_is_an_error() {
        let f = frame(&samples()[0]);
        for cut in [2, 4, 5, f.len() - 1] {
            let err = decode_all(&f[..cut]).unwrap_err();
            assert!(matches!(err, WireError::Truncated { .. }), "{cut}: {err}");
            assert_eq!(err.refusal(), None);
        }
        assert_eq!(decode_all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn over_long_frame_refused_before_allocating() {
        let too_long = (MAX_FRAME as u32 + 1).to_be_bytes();
        for prefix in [too_long, u32::MAX.to_be_bytes()] {
            let mut codec = WireCodec::new();
            let mut buf = BytesMut::from(&prefix[..]);
            let err = codec.decode(&mut buf).unwrap_err();
            assert!(matches!(err, WireError::FrameTooLong), "{err}");
            assert!(buf.capacity() < 1024, "reserved {}", buf.capacity());
            assert_eq!(err.refusal().unwrap().reason, Reason::Undecodable);
        }
        // exactly MAX_FRAME is a frame: waited for, not refused
        let mut codec = WireCodec::new();
        let mut buf = BytesMut::from(&(MAX_FRAME as u32).to_be_bytes()[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);

        // and a message that does not fit is not sent
        let mut big = wire_lease();
        big.hostname = Some("x".repeat(MAX_FRAME));
        let msg = Message::LeaseBatch(LeaseBatch {
            lsn: 1,
            updates: vec![LeaseUpdate::Upsert(big)],
            more: false,
        });
        let mut out = BytesMut::new();
        let err = WireCodec::new().encode(&msg, &mut out).unwrap_err();
        assert!(matches!(err, WireError::TooLongToSend { .. }), "{err}");
        assert!(out.is_empty());
    }

    /// MAX_UPDATES leases of the largest size the configuration and DHCP
    /// allow fit in one frame.
    #[test]
    fn largest_batch_fits_in_a_frame() {
        let worst = WireLease {
            ip: ip("255.255.255.255"),
            pool: "p".repeat(MAX_POOL_LEN),
            hw: vec![0xff; MAX_HW_LEN],
            client_id: Some(vec![0xff; MAX_OPTION_LEN]),
            hostname: Some("h".repeat(MAX_OPTION_LEN)),
            state: WireState::Expired,
            lifetime: u32::MAX,
            expires: u64::MAX,
            relay_agent: Some(vec![0xff; MAX_OPTION_LEN]),
        };
        let msg = Message::BatchPage(BatchPage {
            batch: u32::MAX,
            leases: vec![worst; MAX_UPDATES],
            cursor: ip("255.255.255.255"),
            more: true,
        });
        let f = frame(&msg);
        assert!(f.len() <= MAX_FRAME + 4, "{}", f.len());
        assert_eq!(decode_all(&f).unwrap(), vec![msg]);
    }

    #[test]
    fn unknown_version_refused_with_its_reason() {
        let mut f = frame(&samples()[0]).to_vec();
        for v in [0, 2, 255] {
            f[4] = v;
            let err = decode_all(&f).unwrap_err();
            assert!(
                matches!(err, WireError::UnsupportedVersion { got } if got == v),
                "{err}"
            );
            let r = err.refusal().unwrap();
            assert_eq!(r.reason, Reason::UnsupportedVersion);
            assert_eq!(
                r.text,
                format!("peer speaks backup protocol version {v}, this router speaks version 1")
            );
            // the refusal itself travels in this version
            let reply = Message::HelloReply(HelloReply::Refused(r));
            assert_eq!(decode_all(&frame(&reply)).unwrap(), vec![reply]);
        }
        // a frame of a later version is refused whatever its body holds
        assert!(matches!(
            decode_all(&[0, 0, 0, 3, 2, 0xff, 0xff]),
            Err(WireError::UnsupportedVersion { got: 2 })
        ));
    }

    /// Within version 1: an unknown variant, a short body, trailing bytes,
    /// an empty frame, a bad varint, bad UTF-8.
    #[test]
    fn undecodable_frames_are_errors_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (&[0, 0, 0, 2, 1, 12], "unknown Message variant"),
            (&[0, 0, 0, 3, 1, 1, 2], "unknown HelloReply variant"),
            (&[0, 0, 0, 2, 1, 7], "Ack without its lsn"),
            (&[0, 0, 0, 4, 1, 7, 5, 0], "a byte after the Ack"),
            (&[0, 0, 0, 0], "empty frame"),
            (
                &[
                    0, 0, 0, 13, 1, 7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    0x7f,
                ],
                "varint longer than a u64",
            ),
            (&[0, 0, 0, 6, 1, 2, 0, 2, 0xc3, 0x28], "text not UTF-8"),
        ];
        for (bytes, what) in cases {
            let err = decode_all(bytes).expect_err(what);
            assert!(
                matches!(
                    err,
                    WireError::Decode(_) | WireError::TrailingBytes { .. } | WireError::EmptyFrame
                ),
                "{what}: {err}"
            );
            assert_eq!(err.refusal().unwrap().reason, Reason::Undecodable, "{what}");
        }
    }

    fn lease() -> Lease {
        Lease {
            ip: ip("10.0.0.7"),
            pool: "p1".into(),
            hw: vec![2, 0, 0, 0, 0, 1],
            client_id: Some(vec![1, 2, 0, 0, 0, 0, 1]),
            hostname: Some("h".into()),
            state: LeaseState::Bound,
            lifetime: 3600,
            expires: 1_800_000_000,
            origin: Origin::Local,
        }
    }

    /// A lease from a peer whose clock is an hour ahead (or behind) runs
    /// out here when it runs out there, and comes back unchanged.
    #[test]
    fn a_skewed_peers_lease_times_move_onto_our_clock() {
        use crate::dhcp::leases::{cmp_versions, infinite_expiry, INFINITE};
        let theirs = lease();
        let w = WireLease::try_from(&theirs).unwrap();
        for skew in [3600i64, -3600, 7, -86_400] {
            let here = Lease::try_from(w.clone().to_local(skew)).unwrap();
            assert_eq!(
                i128::from(here.expires),
                i128::from(theirs.expires) - i128::from(skew),
                "{skew}"
            );
            assert_eq!(here.lifetime, theirs.lifetime);
            // the grant moves by the skew too: the version order on our
            // clock is the sender's
            assert_eq!(
                i128::from(here.changed_at()),
                i128::from(theirs.changed_at()) - i128::from(skew)
            );
            // sent back, corrected by the skew the other side measured
            let back = WireLease::try_from(&here).unwrap().to_local(-skew);
            assert_eq!(back.expires, theirs.expires);
        }
        // both routers see the same order of two versions of an address
        let mut a = lease();
        a.expires = 1_800_000_010; // granted 10 s after `lease()`
        let b = lease();
        let a_at_b = Lease::try_from(WireLease::try_from(&a).unwrap().to_local(3600)).unwrap();
        assert_eq!(cmp_versions(&a, &b), std::cmp::Ordering::Greater);
        let mut b_here = b.clone();
        b_here.expires -= 3600; // b's clock is an hour behind a's
        assert_eq!(cmp_versions(&a_at_b, &b_here), std::cmp::Ordering::Greater);
        // no skew: nothing moves
        assert_eq!(w.clone().to_local(0), w);
        // infinite: its grant moves, it stays infinite
        let mut inf = lease();
        inf.lifetime = u32::MAX;
        inf.expires = infinite_expiry(1_800_000_000);
        let moved = WireLease::try_from(&inf).unwrap().to_local(3600);
        assert_eq!(moved.expires, infinite_expiry(1_799_996_400));
        assert!(moved.expires >= INFINITE);
        inf.expires = u64::MAX;
        let w = WireLease::try_from(&inf).unwrap();
        assert_eq!(w.clone().to_local(3600), w);
        // a skew past either end saturates (a hostile clock, no panic)
        let w = WireLease::try_from(&lease()).unwrap();
        assert_eq!(w.clone().to_local(i64::MAX).expires, 0);
        assert_eq!(w.to_local(i64::MIN).expires, INFINITE - 1);
    }

    #[test]
    fn lease_converts_both_ways() {
        for state in [
            LeaseState::Bound,
            LeaseState::Released,
            LeaseState::Declined,
            LeaseState::Expired,
        ] {
            let l = Lease { state, ..lease() };
            let w = WireLease::try_from(&l).unwrap();
            assert_eq!(w.relay_agent, None);
            let back = Lease::try_from(w).unwrap();
            // learnt from the partner
            assert_eq!(back.origin, Origin::Peer);
            assert_eq!(
                back,
                Lease {
                    origin: Origin::Peer,
                    ..l
                }
            );
        }
        // a lease with no client-id, no hostname, an empty chaddr
        let l = Lease {
            client_id: None,
            hostname: None,
            hw: Vec::new(),
            origin: Origin::Peer,
            ..lease()
        };
        assert_eq!(
            Lease::try_from(WireLease::try_from(&l).unwrap()).unwrap(),
            l
        );
    }

    #[test]
    fn offers_are_not_replicated() {
        let l = Lease {
            state: LeaseState::Offered,
            ..lease()
        };
        assert_eq!(WireLease::try_from(&l), Err(LeaseError::Offered));
        assert_eq!(
            LeaseUpdate::try_from(&Change::Upsert(l)),
            Err(LeaseError::Offered)
        );
    }

    #[test]
    fn peer_lease_out_of_range_refused() {
        let mut w = WireLease::try_from(&lease()).unwrap();
        w.hw = vec![0; MAX_HW_LEN + 1];
        assert_eq!(
            Lease::try_from(w.clone()),
            Err(LeaseError::TooLong {
                field: "hardware address",
                len: 17,
                max: 16
            })
        );
        w.hw = vec![0; MAX_HW_LEN];
        assert!(Lease::try_from(w.clone()).is_ok());
        for bad in [
            WireLease {
                client_id: Some(vec![0; 256]),
                ..w.clone()
            },
            WireLease {
                hostname: Some("h".repeat(256)),
                ..w.clone()
            },
            WireLease {
                relay_agent: Some(vec![0; 256]),
                ..w.clone()
            },
        ] {
            assert!(
                matches!(Lease::try_from(bad), Err(LeaseError::TooLong { .. })),
                "{w:?}"
            );
        }
        for pool in [String::new(), "p".repeat(MAX_POOL_LEN + 1)] {
            let len = pool.len();
            assert_eq!(
                Lease::try_from(WireLease { pool, ..w.clone() }),
                Err(LeaseError::PoolName { len })
            );
        }
    }

    #[test]
    fn log_changes_convert_both_ways() {
        let up = Change::Upsert(Lease {
            origin: Origin::Peer,
            ..lease()
        });
        let del = Change::Delete(ip("10.0.0.8"));
        for c in [up, del] {
            let u = LeaseUpdate::try_from(&c).unwrap();
            assert_eq!(Change::try_from(u).unwrap(), c);
        }
        assert_eq!(
            LeaseUpdate::try_from(&Change::Delete(ip("10.0.0.8"))).unwrap(),
            LeaseUpdate::Remove { ip: ip("10.0.0.8") }
        );
    }
}

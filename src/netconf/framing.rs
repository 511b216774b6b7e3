//! RFC 6242 message framing: end-of-message (`]]>]]>`, base:1.0) and chunked
//! (`\n#LEN\n...\n##\n`, base:1.1).
//!
//! The decoder is pure: bytes are pushed in as they arrive and whole messages
//! come out. Bytes that follow a message in the same read stay buffered, so
//! an RPC sent in the same segment as the client's hello is still answered
//! after the framing switches to chunked.

const EOM: &[u8] = b"]]>]]>";
/// Upper bound on one message; a client sending more is cut off.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    EndOfMessage,
    Chunked,
}

/// Framing errors: each one ends the session (RFC 6242 §4.2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("bad chunk header")]
    BadChunkHeader,
    #[error("message exceeds {MAX_MESSAGE} bytes")]
    TooBig,
}

/// Incremental decoder.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    buf: Vec<u8>,
    /// Chunked: body collected so far for the current message.
    msg: Vec<u8>,
    /// EOM: how far `buf` has been scanned for the delimiter.
    scanned: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            framing: Framing::EndOfMessage,
            buf: Vec::new(),
            msg: Vec::new(),
            scanned: 0,
        }
    }
}

impl Decoder {
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Switch framing (after both hellos); buffered bytes are kept.
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
        self.scanned = 0;
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        match self.framing {
            Framing::EndOfMessage => self.next_eom(),
            Framing::Chunked => self.next_chunked(),
        }
    }

    fn next_eom(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let from = self.scanned.saturating_sub(EOM.len() - 1);
        if let Some(pos) = self.buf[from..]
            .windows(EOM.len())
            .position(|w| w == EOM)
            .map(|p| p + from)
        {
            let msg = self.buf[..pos].to_vec();
            self.buf.drain(..pos + EOM.len());
            self.scanned = 0;
            return Ok(Some(msg));
        }
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_MESSAGE {
            return Err(FramingError::TooBig);
        }
        Ok(None)
    }

    fn next_chunked(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        loop {
            // Tolerate stray newlines before a chunk header (some clients
            // send one after their hello's ]]>]]>): keep only the last.
            match self.buf.iter().position(|b| *b != b'\n' && *b != b'\r') {
                None => {
                    if self.buf.len() > 1 {
                        let n = self.buf.len() - 1;
                        self.buf.drain(..n);
                    }
                    return Ok(None);
                }
                Some(0) => return Err(FramingError::BadChunkHeader),
                Some(p) => {
                    self.buf.drain(..p - 1);
                    if self.buf[0] != b'\n' {
                        return Err(FramingError::BadChunkHeader);
                    }
                }
            }
            // now buf starts with "\n" followed by a non-newline byte
            if self.buf.len() < 2 {
                return Ok(None);
            }
            if self.buf[1] != b'#' {
                return Err(FramingError::BadChunkHeader);
            }
            if self.buf.len() < 3 {
                return Ok(None);
            }
            if self.buf[2] == b'#' {
                // end of chunks: "\n##\n"
                if self.buf.len() < 4 {
                    return Ok(None);
                }
                if self.buf[3] != b'\n' || self.msg.is_empty() {
                    return Err(FramingError::BadChunkHeader);
                }
                self.buf.drain(..4);
                return Ok(Some(std::mem::take(&mut self.msg)));
            }
            // "\n#<digits>\n": at most 10 digits, 1..=4294967295, no leading zero
            let digits_end = match self.buf[2..].iter().position(|b| !b.is_ascii_digit()) {
                Some(p) => p + 2,
                None => {
                    if self.buf.len() - 2 > 10 {
                        return Err(FramingError::BadChunkHeader);
                    }
                    return Ok(None);
                }
            };
            let digits = &self.buf[2..digits_end];
            if digits.is_empty()
                || digits.len() > 10
                || digits[0] == b'0'
                || self.buf[digits_end] != b'\n'
            {
                return Err(FramingError::BadChunkHeader);
            }
            let len: u64 = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(FramingError::BadChunkHeader)?;
            if len > u32::MAX as u64 {
                return Err(FramingError::BadChunkHeader);
            }
            let len = len as usize;
            if self.msg.len() + len > MAX_MESSAGE {
                return Err(FramingError::TooBig);
            }
            let body_start = digits_end + 1;
            if self.buf.len() < body_start + len {
                return Ok(None);
            }
            self.msg
                .extend_from_slice(&self.buf[body_start..body_start + len]);
            self.buf.drain(..body_start + len);
        }
    }
}

/// Frame one outgoing message.
pub fn encode(framing: Framing, msg: &[u8], out: &mut Vec<u8>) {
    // One chunk per message keeps the reply a single write.
    encode_piece(framing, msg, out);
    encode_end(framing, out);
}

/// One piece of a message that is written as it is produced: a chunk of
/// its own (chunked), the bytes as they are (end-of-message).
pub fn encode_piece(framing: Framing, piece: &[u8], out: &mut Vec<u8>) {
    if framing == Framing::Chunked && !piece.is_empty() {
        out.extend_from_slice(format!("\n#{}\n", piece.len()).as_bytes());
    }
    out.extend_from_slice(piece);
}

/// The end of a message (after its pieces).
pub fn encode_end(framing: Framing, out: &mut Vec<u8>) {
    out.extend_from_slice(match framing {
        Framing::EndOfMessage => EOM,
        Framing::Chunked => b"\n##\n",
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eom_split_across_reads() {
        let mut d = Decoder::default();
        d.push(b"<hello/>]]>]");
        assert_eq!(d.next_message().unwrap(), None);
        d.push(b"]><rpc/>]]>]]>");
        assert_eq!(d.next_message().unwrap().unwrap(), b"<hello/>");
        assert_eq!(d.next_message().unwrap().unwrap(), b"<rpc/>");
        assert_eq!(d.next_message().unwrap(), None);
    }

    #[test]
    fn hello_and_chunked_rpc_in_one_read() {
        let mut d = Decoder::default();
        d.push(b"<hello/>]]>]]>\n#5\n<rpc/\n#1\n>\n##\n");
        assert_eq!(d.next_message().unwrap().unwrap(), b"<hello/>");
        d.set_framing(Framing::Chunked);
        assert_eq!(d.next_message().unwrap().unwrap(), b"<rpc/>");
        assert_eq!(d.next_message().unwrap(), None);
    }

    #[test]
    fn chunked_byte_by_byte() {
        let mut d = Decoder::default();
        d.set_framing(Framing::Chunked);
        let wire = b"\n#3\nabc\n#2\nde\n##\n";
        let mut got = None;
        for b in wire.iter() {
            d.push(&[*b]);
            if let Some(m) = d.next_message().unwrap() {
                got = Some(m);
            }
        }
        assert_eq!(got.unwrap(), b"abcde");
    }

    #[test]
    fn tolerates_newline_before_chunk() {
        let mut d = Decoder::default();
        d.set_framing(Framing::Chunked);
        d.push(b"\n\n#2\nab\n##\n");
        assert_eq!(d.next_message().unwrap().unwrap(), b"ab");
    }

    #[test]
    fn bad_chunk_headers() {
        for bad in [
            &b"\n#0\n"[..],
            b"\n#01\na",
            b"\n#x\n",
            b"#3\nabc",
            b"\n#99999999999\n",
            b"\n##\n",
            b"\n#3 \nabc",
        ] {
            let mut d = Decoder::default();
            d.set_framing(Framing::Chunked);
            d.push(bad);
            assert_eq!(
                d.next_message(),
                Err(FramingError::BadChunkHeader),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encode_round_trip() {
        let mut out = Vec::new();
        encode(Framing::Chunked, b"<x/>", &mut out);
        let mut d = Decoder::default();
        d.set_framing(Framing::Chunked);
        d.push(&out);
        assert_eq!(d.next_message().unwrap().unwrap(), b"<x/>");
    }
}

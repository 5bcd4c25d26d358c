//! The TLS records that carry a ClientHello: framing checks and reassembly, read
//! incrementally by the acceptor and at once by `ClientHello::parse`.

use std::borrow::Cow;

use super::MAX_CLIENT_HELLO_LEN;
use crate::error::Error;

/// The most TLS records one ClientHello may be split over. Real TLS stacks send it
/// in one record (a ClientHello larger than a record would be past
/// [`MAX_CLIENT_HELLO_LEN`] anyway); DPI-evasion tools split it into a handful. 64
/// leaves room for those while refusing the 1-byte-body records a hostile client
/// would use to multiply the per-record work (about 2,700 of them fit in
/// [`MAX_CLIENT_HELLO_LEN`]): `Error::TooManyRecords` once the 64th record ends
/// without completing the message.
pub const MAX_CLIENT_HELLO_RECORDS: usize = 64;

/// The start of a connection read as ClientHello records.
pub(super) enum Framed<'a> {
    /// The whole handshake message (borrowed when one record holds it).
    Done(Cow<'a, [u8]>),
    /// This many more bytes are needed before the message is complete.
    Need(usize),
}

/// How far the ClientHello records at the start of a buffer have been read.
///
/// The state lets a reader that appends to its buffer take each record in once:
/// every call resumes at the first record not yet complete, so the work over a whole
/// connection is linear in its bytes (starting over at offset 0 after every read was
/// quadratic in the number of records). Record bodies are not copied here; only the
/// handshake header's 4 bytes are kept.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// Where the next record (header) starts.
    next: usize,
    /// Complete records taken in.
    count: usize,
    /// Handshake-message bytes those records carried.
    message_len: usize,
    /// The first bytes of the message (type and 24-bit length), as far as known.
    header: [u8; 4],
    /// The message length with its header, once all 4 header bytes are known.
    total: Option<usize>,
}

impl Records {
    /// Take in the complete records of `buf`, which must start with the bytes given
    /// at the previous call (a reader only appends). `None`: the records hold the
    /// whole handshake message; `Some(n)`: `n >= 1` more bytes are needed, and
    /// `buf.len() + n` never passes [`MAX_CLIENT_HELLO_LEN`]. Bytes after the record
    /// that completes the message are not looked at: they are later traffic.
    ///
    /// Refuses, as soon as the deciding byte has arrived: a record that is not a
    /// handshake record (after its first byte), a handshake message that is not a
    /// ClientHello (after its first byte), a record reaching past
    /// [`MAX_CLIENT_HELLO_LEN`] (after its header), a message that cannot end within
    /// it even in one more record (after the record that completes its handshake
    /// header), and a message not complete after [`MAX_CLIENT_HELLO_RECORDS`]
    /// records.
    pub(crate) fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        loop {
            if self.total.is_some_and(|total| self.message_len >= total) {
                return Ok(None);
            }
            let pos = self.next;
            // Checked before the rest of the header arrives: a client speaking
            // another protocol is refused after one byte, not after a timeout.
            if let Some(&ty) = buf.get(pos)
                && ty != 0x16
            {
                return Err(Error::NotClientHello {
                    what: "record type",
                    value: ty,
                });
            }
            let Some(header) = buf.get(pos..pos + 5) else {
                return Ok(Some(pos + 5 - buf.len()));
            };
            let end = pos + 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
            if end > MAX_CLIENT_HELLO_LEN {
                return Err(Error::Oversized {
                    len: end,
                    max: MAX_CLIENT_HELLO_LEN,
                });
            }
            if end == pos + 5 {
                return Err(Error::Malformed("empty handshake record"));
            }
            if self.message_len == 0
                && let Some(&ty) = buf.get(pos + 5)
                && ty != 0x01
            {
                return Err(Error::NotClientHello {
                    what: "handshake type",
                    value: ty,
                });
            }
            let Some(body) = buf.get(pos + 5..end) else {
                return Ok(Some(end - buf.len()));
            };
            for (slot, &b) in self.header.iter_mut().skip(self.message_len).zip(body) {
                *slot = b;
            }
            self.message_len += body.len();
            self.count += 1;
            self.next = end;
            if self.total.is_none() && self.message_len >= 4 {
                let [_, a, b, c] = self.header;
                self.total =
                    Some(4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)));
            }
            if let Some(total) = self.total {
                if self.message_len >= total {
                    return Ok(None);
                }
                // The rest needs at least one more record, header included: refuse
                // now what can never fit rather than read toward it.
                let least = end + 5 + (total - self.message_len);
                if least > MAX_CLIENT_HELLO_LEN {
                    return Err(Error::Oversized {
                        len: least,
                        max: MAX_CLIENT_HELLO_LEN,
                    });
                }
            }
            if self.count >= MAX_CLIENT_HELLO_RECORDS {
                return Err(Error::TooManyRecords {
                    max: MAX_CLIENT_HELLO_RECORDS,
                });
            }
        }
    }

    /// Where the records taken in so far end. Once [`advance`](Self::advance) has
    /// answered `None`, `buf[..end()]` is exactly the ClientHello records: a reader
    /// that read further has later traffic after it.
    #[cfg(any(feature = "tls", test))]
    pub(crate) fn end(&self) -> usize {
        self.next
    }

    /// The handshake message carried by the records [`advance`](Self::advance) took
    /// in from `buf` (borrowed when one record holds it).
    pub(super) fn message<'a>(&self, buf: &'a [u8]) -> Cow<'a, [u8]> {
        // advance checked every header up to `next`; `get` keeps this panic-free anyway
        let body = |pos: usize| {
            let len = buf
                .get(pos + 3..pos + 5)
                .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
            buf.get(pos + 5..pos + 5 + len).unwrap_or_default()
        };
        if self.count == 1 {
            return Cow::Borrowed(body(0));
        }
        let mut message = Vec::with_capacity(self.message_len);
        let mut pos = 0;
        while pos < self.next {
            let part = body(pos);
            message.extend_from_slice(part);
            pos += 5 + part.len();
        }
        Cow::Owned(message)
    }
}

/// Reassemble the handshake message carried by the TLS records at the start of
/// `buf` (the checks of [`Records::advance`]).
pub(super) fn reassemble(buf: &[u8]) -> Result<Framed<'_>, Error> {
    let mut records = Records::default();
    Ok(match records.advance(buf)? {
        None => Framed::Done(records.message(buf)),
        Some(n) => Framed::Need(n),
    })
}

//! A bounds-checked reader for the TLS presentation language (RFC 8446 §3).

use crate::error::Error;

/// Reads big-endian integers and length-prefixed vectors; every read is checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], structure: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            structure,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn fail(&self, reason: impl Into<String>) -> Error {
        Error::malformed(self.structure, self.pos, reason)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.fail(format!("needs {n} bytes, {left} left")));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Error> {
        Ok(self
            .bytes(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        // Two bytes always fit.
        Ok(self.uint(2)? as u16)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        self.uint(8)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// A vector with a `len_bytes`-byte length prefix and at least `min` bytes.
    pub(crate) fn vec(&mut self, len_bytes: usize, min: usize) -> Result<&'a [u8], Error> {
        let n = self.uint(len_bytes)? as usize;
        if n < min {
            return Err(self.fail(format!("vector of {n} bytes, at least {min} required")));
        }
        self.bytes(n)
    }

    pub(crate) fn finish(&self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.fail(format!("{} trailing bytes", self.buf.len() - self.pos)))
        }
    }
}

//! CT log entries: `MerkleTreeLeaf`, `TimestampedEntry`, `extra_data` chains
//! (RFC 6962 §3.4, §4.6) and static-ct-api `TileLeaf`s and data tiles.
//!
//! Parsers borrow from the input, check every length, refuse trailing bytes and
//! return [`Error::Malformed`] with the offset; they never panic.

use std::borrow::Cow;
use std::io::Read;

use ring::digest::{Context, SHA256};

use crate::error::Error;
use crate::merkle::Hash;
use crate::tls::Reader;

/// Entries in a full data tile (static-ct-api).
pub(crate) const TILE_WIDTH: usize = 256;
/// Largest decompressed tile accepted (a full data tile is typically under 1 MiB).
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the HTTP client's
pub(crate) const MAX_TILE_LEN: usize = 64 << 20;

/// What a log entry logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedEntry<'a> {
    /// `x509_entry`: a final certificate, DER.
    X509 {
        /// The certificate.
        certificate: &'a [u8],
    },
    /// `precert_entry`: the precertificate's TBS (poison removed) and its issuer's key hash.
    Precert {
        /// SHA-256 of the final issuer's SubjectPublicKeyInfo.
        issuer_key_hash: Hash,
        /// The `TBSCertificate` as it will appear in the final certificate.
        tbs_certificate: &'a [u8],
    },
}

/// RFC 6962 `TimestampedEntry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampedEntry<'a> {
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The logged certificate or precertificate.
    pub entry: SignedEntry<'a>,
    /// `CtExtensions`, raw.
    pub extensions: &'a [u8],
}

impl<'a> TimestampedEntry<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let timestamp = r.u64()?;
        let entry = match r.u16()? {
            0 => SignedEntry::X509 {
                certificate: r.vec(3, 1)?,
            },
            1 => SignedEntry::Precert {
                issuer_key_hash: r.array()?,
                tbs_certificate: r.vec(3, 1)?,
            },
            t => return Err(r.fail(format!("unknown LogEntryType {t}"))),
        };
        let extensions = r.vec(2, 0)?;
        Ok(Self {
            timestamp,
            entry,
            extensions,
        })
    }

    /// The static-ct-api `leaf_index` extension (type 0, 40-bit big-endian), if present.
    pub fn leaf_index(&self) -> Result<Option<u64>, Error> {
        let mut r = Reader::new(self.extensions, "CtExtensions");
        let mut found = None;
        while !r.is_empty() {
            let ty = r.u8()?;
            let data = r.vec(2, 0)?;
            if ty == 0 {
                if found.is_some() || data.len() != 5 {
                    return Err(r.fail("leaf_index must appear once and hold 5 bytes"));
                }
                found = Some(data.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)));
            }
        }
        Ok(found)
    }
}

fn hash_timestamped_entry(raw: &[u8]) -> Hash {
    // SHA-256(0x00 leaf prefix || 0x00 v1 || 0x00 timestamped_entry || entry)
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0, 0, 0]);
    ctx.update(raw);
    let mut h = [0u8; 32];
    h.copy_from_slice(ctx.finish().as_ref());
    h
}

/// RFC 6962 `MerkleTreeLeaf` (the `leaf_input` of `get-entries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerkleTreeLeaf<'a> {
    /// The entry.
    pub entry: TimestampedEntry<'a>,
    raw_entry: &'a [u8],
}

impl<'a> MerkleTreeLeaf<'a> {
    /// Parses a `leaf_input`: version v1, leaf type `timestamped_entry`, the entry.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, "MerkleTreeLeaf");
        if r.u8()? != 0 {
            return Err(r.fail("version is not v1"));
        }
        if r.u8()? != 0 {
            return Err(r.fail("leaf type is not timestamped_entry"));
        }
        let start = r.pos();
        let entry = TimestampedEntry::read(&mut r)?;
        let raw_entry = &bytes[start..r.pos()];
        r.finish()?;
        Ok(Self { entry, raw_entry })
    }

    /// The Merkle leaf hash of this entry.
    pub fn leaf_hash(&self) -> Hash {
        hash_timestamped_entry(self.raw_entry)
    }
}

/// The `extra_data` of a `get-entries` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraData<'a> {
    /// For an `x509_entry`: the issuer chain (leaf's issuer first).
    X509Chain(Vec<&'a [u8]>),
    /// For a `precert_entry`: the submitted precertificate and its chain.
    Precert {
        /// The full precertificate, DER.
        pre_certificate: &'a [u8],
        /// Its issuer chain.
        chain: Vec<&'a [u8]>,
    },
}

fn read_cert_list<'a>(r: &mut Reader<'a>, structure: &'static str) -> Result<Vec<&'a [u8]>, Error> {
    let list = r.vec(3, 0)?;
    let mut inner = Reader::new(list, structure);
    let mut out = Vec::new();
    while !inner.is_empty() {
        out.push(inner.vec(3, 1)?);
    }
    Ok(out)
}

impl<'a> ExtraData<'a> {
    /// Parses `extra_data` for the entry type of `leaf`.
    pub fn parse(leaf: &TimestampedEntry<'_>, bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, "extra_data");
        let out = match leaf.entry {
            SignedEntry::X509 { .. } => {
                Self::X509Chain(read_cert_list(&mut r, "certificate_chain")?)
            }
            SignedEntry::Precert { .. } => Self::Precert {
                pre_certificate: r.vec(3, 1)?,
                chain: read_cert_list(&mut r, "precertificate_chain")?,
            },
        };
        r.finish()?;
        Ok(out)
    }
}

/// static-ct-api `TileLeaf`: one entry of a data tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileLeaf<'a> {
    /// The entry.
    pub entry: TimestampedEntry<'a>,
    /// The full precertificate for `precert_entry` leaves.
    pub pre_certificate: Option<&'a [u8]>,
    /// SHA-256 fingerprints of the issuer chain (served under `issuer/`).
    pub chain_fingerprints: Vec<Hash>,
    raw_entry: &'a [u8],
}

impl<'a> TileLeaf<'a> {
    fn read(r: &mut Reader<'a>, bytes: &'a [u8]) -> Result<Self, Error> {
        let start = r.pos();
        let entry = TimestampedEntry::read(r)?;
        let raw_entry = &bytes[start..r.pos()];
        let pre_certificate = match entry.entry {
            SignedEntry::X509 { .. } => None,
            SignedEntry::Precert { .. } => Some(r.vec(3, 1)?),
        };
        let fps = r.vec(2, 0)?;
        if !fps.len().is_multiple_of(32) {
            return Err(r.fail(format!("fingerprint chain of {} bytes", fps.len())));
        }
        let chain_fingerprints = fps
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self {
            entry,
            pre_certificate,
            chain_fingerprints,
            raw_entry,
        })
    }

    /// The Merkle leaf hash of this entry.
    pub fn leaf_hash(&self) -> Hash {
        hash_timestamped_entry(self.raw_entry)
    }
}

/// Parses a (decompressed) static-ct-api data tile: consecutive [`TileLeaf`]s, at
/// most 256.
pub fn parse_data_tile(bytes: &[u8]) -> Result<Vec<TileLeaf<'_>>, Error> {
    let mut r = Reader::new(bytes, "data tile");
    let mut out = Vec::with_capacity(TILE_WIDTH);
    while !r.is_empty() {
        if out.len() == TILE_WIDTH {
            return Err(r.fail(format!("more than {TILE_WIDTH} entries")));
        }
        out.push(TileLeaf::read(&mut r, bytes)?);
    }
    Ok(out)
}

/// Parses a level-0..n Merkle tile: consecutive 32-byte hashes, at most [`TILE_WIDTH`].
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the HTTP client's
pub(crate) fn parse_hash_tile(bytes: &[u8]) -> Result<Vec<Hash>, Error> {
    if !bytes.len().is_multiple_of(32) || bytes.len() > 32 * TILE_WIDTH {
        return Err(Error::malformed(
            "hash tile",
            bytes.len(),
            "length is not a multiple of 32 up to 8192",
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Undoes gzip if a data tile is gzip-compressed (magic `1f 8b`: a data tile
/// starts with a millisecond timestamp, whose first bytes are zero for millennia),
/// refusing output over [`MAX_TILE_LEN`]. Never used on hash tiles (see
/// [`decode_hash_tile`]).
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the HTTP client's
pub(crate) fn decode_tile(bytes: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(Cow::Borrowed(bytes));
    }
    gunzip(bytes).map(Cow::Owned)
}

/// A hash tile as served: gunzipped only when the response said
/// `Content-Encoding: gzip`. Its first hash starts with `1f 8b` once in 65,536
/// tiles, so the magic bytes must not decide.
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the HTTP client's
pub(crate) fn decode_hash_tile(bytes: &[u8], gzip_encoded: bool) -> Result<Vec<Hash>, Error> {
    if gzip_encoded {
        parse_hash_tile(&gunzip(bytes)?)
    } else {
        parse_hash_tile(bytes)
    }
}

/// gzip, with the output capped at [`MAX_TILE_LEN`].
#[cfg_attr(not(feature = "http"), allow(dead_code))] // the HTTP client's
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_TILE_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::malformed("gzip tile", 0, e.to_string()))?;
    if out.len() > MAX_TILE_LEN {
        return Err(Error::malformed(
            "gzip tile",
            0,
            format!("inflates past {MAX_TILE_LEN} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use proptest::prelude::*;

    use super::*;

    fn data_tile_0() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/static-ct/navigli2025h2/tile/data/000"
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn gzip_tiles_decode_to_the_same_entries() {
        let data = data_tile_0();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&data).unwrap();
        let gz = enc.finish().unwrap();
        let decoded = decode_tile(&gz).unwrap();
        assert_eq!(&decoded[..], &data[..]);
        assert!(matches!(decode_tile(&data).unwrap(), Cow::Borrowed(_)));
        assert!(matches!(
            decode_tile(&gz[..gz.len() / 2]),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn hash_tiles_hold_whole_hashes_up_to_a_full_tile() {
        assert_eq!(TILE_WIDTH, 256);
        assert_eq!(parse_hash_tile(&[7; 64]).unwrap(), vec![[7; 32]; 2]);
        assert!(parse_hash_tile(&[0; 33]).is_err());
        assert!(parse_hash_tile(&[0; 32 * 257]).is_err());
    }

    #[test]
    fn a_hash_tile_starting_with_the_gzip_magic_is_not_gunzipped() {
        // A first hash beginning 1f 8b (one tile in 65,536) is still two hashes.
        let raw = [[0x1f, 0x8b].as_slice(), &[0; 30], &[7; 32]].concat();
        let mut first = [0; 32];
        first[..2].copy_from_slice(&[0x1f, 0x8b]);
        assert_eq!(decode_hash_tile(&raw, false).unwrap(), vec![first, [7; 32]]);
        // Served with Content-Encoding: gzip, the same tile is gunzipped first.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode_hash_tile(&gz, true).unwrap(), vec![first, [7; 32]]);
        assert!(decode_hash_tile(&raw, true).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_make_decode_tile_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..600)
        ) {
            let _ = decode_tile(&bytes);
            let mut gz = vec![0x1f, 0x8b];
            gz.extend_from_slice(&bytes);
            let _ = decode_tile(&gz);
        }
    }
}

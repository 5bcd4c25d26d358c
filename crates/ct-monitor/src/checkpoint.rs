//! static-ct-api checkpoints: a C2SP signed note carrying a C2SP tlog-checkpoint,
//! signed with an RFC 6962 `TreeHeadSignature` (note signature type 0x05).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::Error;
use crate::merkle::{Hash, sha256};
use crate::sth::{DigitallySigned, LogKey, SignedTreeHead};
use crate::tls::Reader;

/// Largest note accepted; real checkpoints are a few hundred bytes.
pub(crate) const MAX_NOTE_LEN: usize = 1 << 20;
/// Most signature lines accepted (the Go reference's limit).
pub(crate) const MAX_SIGNATURES: usize = 100;

/// One signature line of a signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoteSignature {
    /// The key name.
    pub(crate) name: String,
    /// The 4-byte key id.
    pub(crate) key_id: [u8; 4],
    /// The signature bytes after the key id.
    pub(crate) signature: Vec<u8>,
}

/// A parsed (not yet verified) signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedNote {
    /// The signed text, ending in a newline.
    pub(crate) text: String,
    /// The signature lines in order.
    pub(crate) signatures: Vec<NoteSignature>,
}

fn note_err(reason: impl Into<String>) -> Error {
    Error::BadTreeHead {
        what: "signed note",
        reason: reason.into(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

impl SignedNote {
    /// Parses a signed note (c2sp.org/signed-note): text, a blank line, and one or
    /// more lines `— <name> <base64(key id || signature)>`.
    pub(crate) fn parse(note: &[u8]) -> Result<Self, Error> {
        if note.len() > MAX_NOTE_LEN {
            return Err(note_err(format!(
                "{} bytes, limit {MAX_NOTE_LEN}",
                note.len()
            )));
        }
        let s = std::str::from_utf8(note).map_err(|e| note_err(format!("not UTF-8: {e}")))?;
        if let Some(c) = s.chars().find(|c| c.is_control() && *c != '\n') {
            return Err(note_err(format!("control character {c:?}")));
        }
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| note_err("no blank line before the signatures"))?;
        let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or_else(|| note_err("does not end with a newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(note_err(format!("more than {MAX_SIGNATURES} signatures")));
            }
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
                note_err(format!(
                    "signature line {line:?} does not start with an em dash"
                ))
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| note_err(format!("signature line {line:?} has no space")))?;
            if !valid_name(name) {
                return Err(note_err(format!("invalid key name {name:?}")));
            }
            let raw = STANDARD
                .decode(b64)
                .map_err(|e| note_err(format!("signature of {name:?} is not base64: {e}")))?;
            if raw.len() < 5 {
                return Err(note_err(format!(
                    "signature of {name:?} has {} bytes",
                    raw.len()
                )));
            }
            let mut key_id = [0u8; 4];
            key_id.copy_from_slice(&raw[..4]);
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_id,
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }
}

/// The body of a checkpoint (c2sp.org/tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The log's origin line.
    pub(crate) origin: String,
    /// Tree size.
    pub(crate) tree_size: u64,
    /// Root hash.
    pub(crate) root_hash: Hash,
    /// Extension lines, if any (not covered by an RFC 6962 note signature).
    pub(crate) extensions: Vec<String>,
}

impl Checkpoint {
    /// Parses a checkpoint body (the note text).
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadTreeHead {
            what: "checkpoint",
            reason,
        };
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("does not end with a newline".into()))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad("empty origin line".into()));
        }
        let size = lines
            .next()
            .ok_or_else(|| bad("no tree size line".into()))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad(format!("tree size {size:?} is not a decimal number")));
        }
        let tree_size = size
            .parse::<u64>()
            .map_err(|e| bad(format!("tree size {size:?}: {e}")))?;
        let root = lines
            .next()
            .ok_or_else(|| bad("no root hash line".into()))?;
        let root_hash: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad(format!("root hash {root:?} is not base64 of 32 bytes")))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line".into()));
        }
        Ok(Self {
            origin: origin.to_string(),
            tree_size,
            root_hash,
            extensions,
        })
    }
}

/// The static-ct-api note key id: the first 4 bytes of
/// `SHA-256(name || 0x0A || 0x05 || LogID)`.
pub(crate) fn rfc6962_key_id(name: &str, log_id: &Hash) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 34);
    input.extend_from_slice(name.as_bytes());
    input.push(0x0a);
    input.push(0x05);
    input.extend_from_slice(log_id);
    let h = sha256(&input);
    [h[0], h[1], h[2], h[3]]
}

/// Parses and verifies a static-ct-api checkpoint from the log with `origin`
/// and `key`, returning it as a [`SignedTreeHead`].
///
/// Rules: the origin line must equal `origin`; exactly one signature line must
/// carry the log's name and key id (others, e.g. witnesses, are ignored); its
/// body is an `RFC6962NoteSignature` (timestamp, `DigitallySigned`) that must
/// verify; extension lines are refused because that signature does not cover them.
pub fn verify_checkpoint(note: &[u8], origin: &str, key: &LogKey) -> Result<SignedTreeHead, Error> {
    let sth = checkpoint_tree_head(note, origin, key)?;
    key.verify(&sth.signed_input(), &sth.signature, "checkpoint")?;
    Ok(sth)
}

/// Everything [`verify_checkpoint`] checks except the signature itself: the tree
/// head the log signed (or claims to have signed). A monitor hands it to
/// [`crate::LogVerifier::update_tree_head`], which verifies the signature and keeps
/// a bad one as evidence.
pub fn checkpoint_tree_head(
    note: &[u8],
    origin: &str,
    key: &LogKey,
) -> Result<SignedTreeHead, Error> {
    let note = SignedNote::parse(note)?;
    let cp = Checkpoint::parse(&note.text)?;
    let bad = |reason: String| Error::BadTreeHead {
        what: "checkpoint",
        reason,
    };
    if cp.origin != origin {
        return Err(bad(format!(
            "origin {:?} is not the expected {origin:?}",
            cp.origin
        )));
    }
    if !cp.extensions.is_empty() {
        return Err(bad(format!(
            "{} extension lines, which an RFC 6962 signature does not cover",
            cp.extensions.len()
        )));
    }
    let key_id = rfc6962_key_id(origin, key.log_id());
    let mut ours = note
        .signatures
        .iter()
        .filter(|s| s.name == origin && s.key_id == key_id);
    let sig = ours.next().ok_or_else(|| Error::NoSignatureFromKey {
        name: origin.to_string(),
        key_id,
    })?;
    if ours.next().is_some() {
        return Err(bad("two signature lines from the log key".into()));
    }
    let (timestamp, signature) = parse_rfc6962_note_signature(&sig.signature)?;
    let sth = SignedTreeHead {
        tree_size: cp.tree_size,
        timestamp,
        root_hash: cp.root_hash,
        signature,
    };
    Ok(sth)
}

/// Parses an `RFC6962NoteSignature` body: a u64 timestamp and a `DigitallySigned`.
pub(crate) fn parse_rfc6962_note_signature(body: &[u8]) -> Result<(u64, DigitallySigned), Error> {
    let mut r = Reader::new(body, "RFC6962NoteSignature");
    let timestamp = r.u64()?;
    let signature = DigitallySigned::read(&mut r)?;
    r.finish()?;
    Ok((timestamp, signature))
}

//! Witness cosignatures on checkpoints (c2sp.org/tlog-cosignature, Ed25519
//! `cosignature/v1`) and a k-of-n witness policy per log, so a monitor can refuse a
//! checkpoint its required witnesses have not signed.

use std::fmt;
use std::num::NonZeroUsize;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, UnparsedPublicKey};

use crate::checkpoint::{Checkpoint, SignedNote};
use crate::error::Error;
use crate::merkle::sha256;

/// The vkey / key-id signature type of an Ed25519 `cosignature/v1` key.
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// A witness: its key name and Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct Witness {
    name: String,
    key: [u8; 32],
    key_id: [u8; 4],
}

impl fmt::Debug for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Witness")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:02x?}", self.key_id))
            .finish()
    }
}

fn bad_key(reason: impl Into<String>) -> Error {
    Error::BadWitnessKey(reason.into())
}

impl Witness {
    /// A witness named `name` with the 32-byte Ed25519 public key `key`.
    pub fn new(name: &str, key: [u8; 32]) -> Result<Self, Error> {
        if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
            return Err(bad_key(format!("invalid key name {name:?}")));
        }
        Ok(Self {
            name: name.to_string(),
            key,
            key_id: cosignature_key_id(name, &key),
        })
    }

    /// Parses a signed-note verifier key `<name>+<hex key id>+<base64(0x04 || key)>`,
    /// checking the key id.
    pub fn from_vkey(vkey: &str) -> Result<Self, Error> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad_key(format!("vkey {vkey:?} is not name+id+key")));
        };
        let raw = STANDARD
            .decode(b64)
            .map_err(|e| bad_key(format!("vkey key of {name:?} is not base64: {e}")))?;
        let (alg, key) = raw
            .split_first()
            .ok_or_else(|| bad_key(format!("vkey of {name:?} has no key")))?;
        if *alg != ALG_COSIGNATURE_V1 {
            return Err(bad_key(format!(
                "vkey of {name:?} has type {alg:#04x}, a cosignature/v1 key is 0x04"
            )));
        }
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| bad_key(format!("vkey of {name:?}: {} key bytes, not 32", key.len())))?;
        let witness = Self::new(name, key)?;
        let want = hex::encode(witness.key_id);
        if id != want {
            return Err(bad_key(format!(
                "vkey of {name:?} says key id {id}, the key's id is {want}"
            )));
        }
        Ok(witness)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id: `SHA-256(name || "\n" || 0x04 || key)[:4]`.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// Verifies a `timestamped_signature` body (u64 time, 64-byte Ed25519
    /// signature) over `note_text`, returning the time it states.
    pub fn verify(&self, note_text: &str, body: &[u8]) -> Result<u64, Error> {
        let bad = || Error::BadSignature {
            what: "cosignature",
        };
        let (time, sig) = body.split_at_checked(8).ok_or_else(bad)?;
        if sig.len() != 64 {
            return Err(bad());
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(time);
        let timestamp = u64::from_be_bytes(t);
        if timestamp > i64::MAX as u64 {
            return Err(bad());
        }
        let msg = cosigned_message(timestamp, note_text);
        UnparsedPublicKey::new(&ED25519, self.key)
            .verify(&msg, sig)
            .map_err(|_| bad())?;
        Ok(timestamp)
    }
}

/// `SHA-256(name || "\n" || 0x04 || key)[:4]`.
pub(crate) fn cosignature_key_id(name: &str, key: &[u8; 32]) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 34);
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ALG_COSIGNATURE_V1);
    input.extend_from_slice(key);
    let h = sha256(&input);
    [h[0], h[1], h[2], h[3]]
}

/// The signed message: `cosignature/v1\ntime <t>\n` and the whole note body.
pub(crate) fn cosigned_message(timestamp: u64, note_text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{note_text}").into_bytes()
}

/// One verified cosignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's key name.
    pub witness: String,
    /// The time it states (seconds since the Unix epoch).
    pub timestamp: u64,
}

/// At least `threshold` of `witnesses` must have cosigned a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessPolicy {
    witnesses: Vec<Witness>,
    threshold: usize,
}

/// Configures a [`WitnessPolicy`]: its witnesses and how many of them must cosign.
#[derive(Debug, Clone, Default)]
pub struct WitnessPolicyBuilder {
    witnesses: Vec<Witness>,
    threshold: Option<NonZeroUsize>,
}

impl WitnessPolicyBuilder {
    /// Adds a witness.
    pub fn witness(mut self, witness: Witness) -> Self {
        self.witnesses.push(witness);
        self
    }

    /// How many of the witnesses must have cosigned (default: all of them).
    pub fn threshold(mut self, k: NonZeroUsize) -> Self {
        self.threshold = Some(k);
        self
    }

    /// The policy. Refused ([`Error::InvalidConfig`]): no witness, a threshold
    /// above the number of witnesses, two witnesses with the same name or key.
    pub fn build(self) -> Result<WitnessPolicy, Error> {
        let n = self.witnesses.len();
        if n == 0 {
            return Err(Error::invalid_config("witnesses", "no witness configured"));
        }
        let threshold = self.threshold.map_or(n, NonZeroUsize::get);
        if threshold > n {
            return Err(Error::invalid_config(
                "threshold",
                format!("{threshold} is more than the {n} witnesses"),
            ));
        }
        for (i, w) in self.witnesses.iter().enumerate() {
            if self.witnesses[..i]
                .iter()
                .any(|o| o.name == w.name || o.key == w.key)
            {
                return Err(Error::invalid_config(
                    "witnesses",
                    format!("witness {:?} is listed twice (same name or key)", w.name),
                ));
            }
        }
        Ok(WitnessPolicy {
            witnesses: self.witnesses,
            threshold,
        })
    }
}

impl WitnessPolicy {
    /// A builder with no witness yet.
    pub fn builder() -> WitnessPolicyBuilder {
        WitnessPolicyBuilder::default()
    }

    /// The witnesses.
    pub fn witnesses(&self) -> &[Witness] {
        &self.witnesses
    }

    /// How many must have cosigned.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Checks the cosignatures of a signed checkpoint from the log `origin`.
    ///
    /// The checkpoint's origin line must be `origin` (the rule the log's own
    /// signature follows), so a cosignature over another log's checkpoint never
    /// counts. A witness named like the log is refused: its lines are the log's.
    /// Lines from keys not in the policy are ignored; a line from a configured
    /// witness that does not verify does not count (and is named in the error).
    /// Each witness counts once. Fewer than `threshold` verified witnesses is
    /// [`Error::WitnessQuorum`].
    pub fn verify(&self, note: &[u8], origin: &str) -> Result<Vec<Cosignature>, Error> {
        let note = SignedNote::parse(note)?;
        let cp = Checkpoint::parse(&note.text)?;
        if cp.origin != origin {
            return Err(Error::BadTreeHead {
                what: "checkpoint",
                reason: format!("origin {:?} is not the expected {origin:?}", cp.origin),
            });
        }
        if self.witnesses.iter().any(|w| w.name == origin) {
            return Err(Error::invalid_config(
                "witnesses",
                format!("witness {origin:?} has the log's own name"),
            ));
        }
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for w in &self.witnesses {
            let lines = note
                .signatures
                .iter()
                .filter(|s| s.name == w.name && s.key_id == w.key_id);
            let mut verified = None;
            for line in lines {
                match w.verify(&note.text, &line.signature) {
                    Ok(timestamp) => verified = Some(timestamp),
                    Err(_) => failed.push(w.name.clone()),
                }
            }
            if let Some(timestamp) = verified {
                ok.push(Cosignature {
                    witness: w.name.clone(),
                    timestamp,
                });
            }
        }
        if ok.len() < self.threshold {
            return Err(Error::WitnessQuorum {
                origin: origin.to_string(),
                required: self.threshold,
                verified: ok.into_iter().map(|c| c.witness).collect(),
                failed,
            });
        }
        Ok(ok)
    }
}

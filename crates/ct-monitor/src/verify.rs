//! Per-log verification state: the last trusted tree head, a compact range of
//! the leaves seen so far and the last range a signed root confirmed. Whatever
//! the log does wrong comes out as a [`LogMisbehaved`] carrying the signed
//! objects and the proof, and the state does not advance past it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use palisade_core_traits::{EventId, EventKind, SecurityEvent, Severity, Subject, Timestamp};

use crate::error::{Error, ProofFailure};
use crate::merkle::{CompactRange, EMPTY_ROOT, Hash, sha256, verify_consistency, verify_inclusion};
use crate::state::State;
use crate::sth::{LogKey, SignedTreeHead};

/// What the log did wrong, with what proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// A tree head whose signature does not verify with the log key.
    BadSignature {
        /// The tree head as served.
        sth: SignedTreeHead,
    },
    /// Two validly signed tree heads of one size with different roots: a fork.
    Fork {
        /// The head trusted so far.
        trusted: SignedTreeHead,
        /// The conflicting head.
        other: SignedTreeHead,
    },
    /// A consistency proof between two validly signed tree heads failed.
    InconsistentTreeHeads {
        /// The smaller head.
        old: SignedTreeHead,
        /// The larger head.
        new: SignedTreeHead,
        /// The proof the log served.
        proof: Vec<Hash>,
        /// Why it failed.
        failure: ProofFailure,
    },
    /// The root recomputed from the log's own entries differs from its signed root.
    RootMismatch {
        /// The signed head.
        sth: SignedTreeHead,
        /// The root of the leaves the log served.
        computed: Hash,
    },
    /// A validly signed tree head contradicts the pinned (size, root) the verifier
    /// was started from: a consistency proof failed, or the sizes are equal and the
    /// roots differ (a fork from the pinned view). The monitor also reports a head
    /// that contradicts a read-only log's final tree head (the pin) this way: of its
    /// size with another root (`RootMismatch`), or larger (`SizesReversed`, the
    /// head's size first), with an empty proof.
    InconsistentWithPinned {
        /// The pinned tree size.
        pinned_size: u64,
        /// The pinned root.
        pinned_root: Hash,
        /// The log's head.
        sth: SignedTreeHead,
        /// The proof the log served (between the smaller and the larger size).
        proof: Vec<Hash>,
        /// Why it failed.
        failure: ProofFailure,
    },
    /// An inclusion proof against a validly signed tree head failed.
    BadInclusionProof {
        /// The head the proof is against.
        sth: SignedTreeHead,
        /// Leaf index.
        leaf_index: u64,
        /// Leaf hash.
        leaf_hash: Hash,
        /// The proof the log served.
        proof: Vec<Hash>,
        /// Why it failed.
        failure: ProofFailure,
    },
    /// A larger validly signed tree head stamped earlier than the trusted one:
    /// RFC 6962 §3.5 has each new head's timestamp more recent than the last.
    TimestampRegression {
        /// The head trusted so far.
        trusted: SignedTreeHead,
        /// The larger head with the earlier timestamp.
        other: SignedTreeHead,
    },
    /// A smaller validly signed tree head stamped later than the earliest signed
    /// head of the trusted tree: the log says its tree shrank (RFC 6962 §3.5), a
    /// rollback. The two signed heads prove it; no consistency proof is needed or
    /// asked for.
    Rollback {
        /// The earliest signed head seen of the trusted tree (its size and root),
        /// stamped before `other`.
        trusted: SignedTreeHead,
        /// The smaller head with the later timestamp.
        other: SignedTreeHead,
    },
}

impl Misbehaviour {
    /// A short name of the kind (`"fork"`, `"bad_signature"`, …), as in the security
    /// event's `misbehaviour` evidence and the `metrics` labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadSignature { .. } => "bad_signature",
            Self::Fork { .. } => "fork",
            Self::InconsistentTreeHeads { .. } => "inconsistent_tree_heads",
            Self::RootMismatch { .. } => "root_mismatch",
            Self::InconsistentWithPinned { .. } => "inconsistent_with_pinned",
            Self::BadInclusionProof { .. } => "bad_inclusion_proof",
            Self::TimestampRegression { .. } => "timestamp_regression",
            Self::Rollback { .. } => "rollback",
        }
    }
}

/// A log misbehaved: the event a monitor raises, never advancing past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMisbehaved {
    /// The log's name (its URL or origin) as configured.
    pub log: String,
    /// The RFC 6962 LogID.
    pub log_id: Hash,
    /// The evidence.
    pub evidence: Misbehaviour,
}

fn b64(h: &[u8]) -> String {
    STANDARD.encode(h)
}

fn sth_evidence(prefix: &str, sth: &SignedTreeHead) -> [(String, String); 4] {
    [
        (format!("{prefix}_tree_size"), sth.tree_size.to_string()),
        (format!("{prefix}_timestamp"), sth.timestamp.to_string()),
        (format!("{prefix}_root_hash"), b64(&sth.root_hash)),
        (format!("{prefix}_signature"), b64(&sth.signature.to_tls())),
    ]
}

impl LogMisbehaved {
    /// The shared-vocabulary event (kind `LogMisbehaviour`, severity critical),
    /// with the signed objects as base64 evidence. `time` comes from the caller's Clock.
    pub fn to_security_event(&self, time: Timestamp) -> Result<SecurityEvent, Error> {
        let mut ev: Vec<(String, String)> = vec![("log_id".into(), b64(&self.log_id))];
        let proof = match &self.evidence {
            Misbehaviour::BadSignature { sth } => {
                ev.extend(sth_evidence("sth", sth));
                None
            }
            Misbehaviour::Fork { trusted, other }
            | Misbehaviour::TimestampRegression { trusted, other }
            | Misbehaviour::Rollback { trusted, other } => {
                ev.extend(sth_evidence("trusted", trusted));
                ev.extend(sth_evidence("other", other));
                None
            }
            Misbehaviour::InconsistentTreeHeads {
                old,
                new,
                proof,
                failure,
            } => {
                ev.extend(sth_evidence("old", old));
                ev.extend(sth_evidence("new", new));
                ev.push(("failure".into(), failure.to_string()));
                Some(proof)
            }
            Misbehaviour::RootMismatch { sth, computed } => {
                ev.extend(sth_evidence("sth", sth));
                ev.push(("computed_root".into(), b64(computed)));
                None
            }
            Misbehaviour::InconsistentWithPinned {
                pinned_size,
                pinned_root,
                sth,
                proof,
                failure,
            } => {
                ev.push(("pinned_tree_size".into(), pinned_size.to_string()));
                ev.push(("pinned_root_hash".into(), b64(pinned_root)));
                ev.extend(sth_evidence("sth", sth));
                ev.push(("failure".into(), failure.to_string()));
                Some(proof)
            }
            Misbehaviour::BadInclusionProof {
                sth,
                leaf_index,
                leaf_hash,
                proof,
                failure,
            } => {
                ev.extend(sth_evidence("sth", sth));
                ev.push(("leaf_index".into(), leaf_index.to_string()));
                ev.push(("leaf_hash".into(), b64(leaf_hash)));
                ev.push(("failure".into(), failure.to_string()));
                Some(proof)
            }
        };
        ev.insert(0, ("misbehaviour".into(), self.evidence.kind().into()));
        if let Some(proof) = proof {
            let joined: Vec<String> = proof.iter().map(|h| b64(h)).collect();
            ev.push(("proof".into(), joined.join(",")));
        }
        // Deterministic id: the same evidence gives the same event id.
        let digest = sha256(format!("{ev:?}").as_bytes());
        let id = EventId::new(format!("ct-log-{}", hex::encode(&digest[..16])))?;
        let mut event = SecurityEvent::new(
            id,
            time,
            EventKind::LogMisbehaviour,
            Severity::Critical,
            Subject::Domain {
                domain: self.log.clone(),
            },
            "palisade-ct-monitor",
        );
        for (k, v) in ev {
            event = event.with_evidence(k, v);
        }
        Ok(event)
    }
}

/// What accepting a tree head did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeHeadUpdate {
    /// It is the first head seen and is now trusted.
    Initial,
    /// It is larger, consistent, and now trusted.
    Advanced,
    /// It is the same tree (same size and root), possibly re-signed; a re-signed
    /// head with a later timestamp replaces the trusted one.
    Same,
    /// It is an older head (smaller, stamped no later than the earliest signed
    /// head of the trusted tree), consistent with the trusted one; nothing changes.
    Older,
}

/// Whether `sth` is a smaller tree than `earlier` stamped later: an honest log
/// only signs its current tree, so a cached old head carries its old timestamp.
pub(crate) fn rolls_back(earlier: &SignedTreeHead, sth: &SignedTreeHead) -> bool {
    sth.tree_size < earlier.tree_size && sth.timestamp > earlier.timestamp
}

/// Verification state for one log.
#[derive(Debug, Clone)]
pub struct LogVerifier {
    log: String,
    key: LogKey,
    trusted: Option<SignedTreeHead>,
    /// The earliest signed head seen of the trusted tree: a smaller head stamped
    /// after it is a rollback even when stamped before `trusted` (a re-signing).
    earliest: Option<SignedTreeHead>,
    /// A (size, root) trusted out of band, checked against the first signed head.
    pinned: Option<(u64, Hash)>,
    range: CompactRange,
    /// The last range whose root a trusted head of its size confirmed.
    confirmed: CompactRange,
    /// `range` holds unconfirmed leaves restored from a saved state: read before
    /// this run, so a root mismatch over them is no evidence of this run.
    restored: bool,
}

/// Configures a [`LogVerifier`] that does not start from nothing: from a pinned tree
/// or from a saved [`State`].
#[derive(Debug, Clone)]
pub struct LogVerifierBuilder {
    log: String,
    key: LogKey,
    pin: Option<(u64, Hash)>,
    state: Option<State>,
}

impl LogVerifierBuilder {
    /// Starts from a tree (size, root) the caller trusts out of band (a pinned
    /// checkpoint, e.g. one its witnesses cosigned) instead of trusting the first
    /// signed head blindly. The first signed head offered to
    /// [`LogVerifier::update_tree_head`] must come with the consistency proof
    /// between the pinned tree and it (the smaller first; empty for equal sizes,
    /// where the roots must be equal); a head that contradicts the pin is
    /// [`Misbehaviour::InconsistentWithPinned`]. A pinned size of 0 pins nothing.
    pub fn pin(mut self, tree_size: u64, root_hash: Hash) -> Self {
        self.pin = (tree_size > 0).then_some((tree_size, root_hash));
        self
    }

    /// Continues from saved state ([`LogVerifier::state`]); its head's signature is
    /// checked again by [`LogVerifierBuilder::build`].
    pub fn state(mut self, state: State) -> Self {
        self.state = Some(state);
        self
    }

    /// The verifier. Fails when the state's head or earliest head does not verify
    /// with the key ([`Error::BadSignature`]), when its earliest head is not an
    /// earlier signature of its head's tree ([`Error::BadState`]), when its range is ahead of its head or its
    /// confirmed range ahead of its range ([`Error::Malformed`]), when its range
    /// reaches the head's size with another root ([`Error::BadState`]: the saved
    /// state is corrupt), or when both a pin and a state were given
    /// ([`Error::InvalidConfig`]: a restored verifier already trusts a head).
    pub fn build(self) -> Result<LogVerifier, Error> {
        let mut v = LogVerifier::new(self.log, self.key);
        match (self.state, self.pin) {
            (Some(_), Some(_)) => Err(Error::invalid_config(
                "pin",
                "a verifier restored from state already trusts a head; pin only a fresh one",
            )),
            (Some(state), None) => {
                state.trusted.verify(&v.key)?;
                if state.range.size() > state.trusted.tree_size {
                    return Err(Error::malformed(
                        "LogVerifier state",
                        0,
                        "compact range is ahead of the trusted tree head",
                    ));
                }
                if state.confirmed.size() > state.range.size() {
                    return Err(Error::malformed(
                        "LogVerifier state",
                        0,
                        "confirmed compact range is ahead of the range read",
                    ));
                }
                // The head's signature is the log's; a range that stops at its size
                // but has another root was damaged here, not by the log.
                if state.range.size() == state.trusted.tree_size
                    && state.range.root() != state.trusted.root_hash
                {
                    return Err(Error::BadState {
                        path: None,
                        reason: format!(
                            "corrupt state: the stored leaves of {} entries do not hash to the stored tree head's root",
                            state.trusted.tree_size
                        ),
                    });
                }
                state.earliest.verify(&v.key)?;
                // Both signatures are the log's: a mismatch was made here.
                let (e, t) = (&state.earliest, &state.trusted);
                if (e.tree_size, e.root_hash) != (t.tree_size, t.root_hash)
                    || e.timestamp > t.timestamp
                {
                    return Err(Error::BadState {
                        path: None,
                        reason: format!(
                            "corrupt state: the earliest head (size {}, stamped {}) is not an earlier signature of the trusted head (size {}, stamped {})",
                            e.tree_size, e.timestamp, t.tree_size, t.timestamp
                        ),
                    });
                }
                // At the head's size the range is confirmed (its root was just
                // checked), whatever the state says (a version 1 file says nothing).
                v.confirmed = if state.range.size() == state.trusted.tree_size {
                    state.range.clone()
                } else {
                    state.confirmed
                };
                v.restored = state.range.size() > v.confirmed.size();
                v.trusted = Some(state.trusted);
                v.earliest = Some(state.earliest);
                v.range = state.range;
                Ok(v)
            }
            (None, pin) => {
                v.pinned = pin;
                Ok(v)
            }
        }
    }
}

impl LogVerifier {
    /// A fresh verifier for the log `log` (its URL or origin, used in events) that
    /// trusts the first validly signed head (trust on first use).
    pub fn new(log: impl Into<String>, key: LogKey) -> Self {
        Self {
            log: log.into(),
            key,
            trusted: None,
            earliest: None,
            pinned: None,
            range: CompactRange::new(),
            confirmed: CompactRange::new(),
            restored: false,
        }
    }

    /// A builder for a verifier that starts from a pinned tree or from saved state.
    pub fn builder(log: impl Into<String>, key: LogKey) -> LogVerifierBuilder {
        LogVerifierBuilder {
            log: log.into(),
            key,
            pin: None,
            state: None,
        }
    }

    /// The (size, root) the next consistency proof must start from: the trusted
    /// head's, else the pinned one.
    pub fn anchor(&self) -> Option<(u64, Hash)> {
        self.trusted
            .as_ref()
            .map(|t| (t.tree_size, t.root_hash))
            .or(self.pinned)
    }

    /// What a [`crate::StateStore`] should save, once a head is trusted.
    pub fn state(&self) -> Option<State> {
        self.trusted.clone().map(|trusted| State {
            earliest: self.earliest.clone().unwrap_or_else(|| trusted.clone()),
            trusted,
            range: self.range.clone(),
            confirmed: self.confirmed.clone(),
        })
    }

    /// The last trusted tree head.
    pub fn trusted(&self) -> Option<&SignedTreeHead> {
        self.trusted.as_ref()
    }

    /// The earliest signed head seen of the trusted tree (same size and root):
    /// a smaller head stamped after it is a rollback.
    pub fn earliest(&self) -> Option<&SignedTreeHead> {
        self.earliest.as_ref()
    }

    /// Trusts a new tree: its first signature is the earliest one seen.
    fn trust(&mut self, sth: SignedTreeHead) {
        self.earliest = Some(sth.clone());
        self.trusted = Some(sth);
    }

    /// The leaves appended so far. Confirmed by a signed root only when the range
    /// is at the trusted size; short of it, they are as the log served them.
    pub fn range(&self) -> &CompactRange {
        &self.range
    }

    /// The last range a signed root confirmed: its root equalled the root of a
    /// trusted head of its size (the empty range when none did yet).
    pub fn confirmed(&self) -> &CompactRange {
        &self.confirmed
    }

    fn misbehaved(&self, evidence: Misbehaviour) -> Box<LogMisbehaved> {
        tracing::warn!(log = %self.log, kind = evidence.kind(), "log misbehaved");
        Box::new(LogMisbehaved {
            log: self.log.clone(),
            log_id: *self.key.log_id(),
            evidence,
        })
    }

    /// Offers a new tree head with the consistency proof between it and the
    /// trusted head (from the smaller to the larger; empty when sizes are equal).
    /// A smaller head stamped after the earliest signed head of the trusted tree
    /// is [`Misbehaviour::Rollback`] whatever the proof (an empty one will do).
    pub fn update_tree_head(
        &mut self,
        sth: SignedTreeHead,
        proof: &[Hash],
    ) -> Result<TreeHeadUpdate, Box<LogMisbehaved>> {
        if sth.verify(&self.key).is_err() {
            return Err(self.misbehaved(Misbehaviour::BadSignature { sth }));
        }
        // The empty tree has one root (RFC 9162 §2.1.1); no proof would ever check it.
        if sth.tree_size == 0 && sth.root_hash != EMPTY_ROOT {
            return Err(self.misbehaved(Misbehaviour::RootMismatch {
                sth,
                computed: EMPTY_ROOT,
            }));
        }
        let Some(trusted) = self.trusted.clone() else {
            if let Some((size, root)) = self.pinned {
                return self.first_after_pin(size, root, sth, proof);
            }
            self.trust(sth);
            return Ok(TreeHeadUpdate::Initial);
        };
        if sth.tree_size == trusted.tree_size {
            return if sth.root_hash == trusted.root_hash {
                // Keep the freshest signature of this tree (staleness is measured
                // from it) and the earliest (rollbacks are measured from it).
                if self
                    .earliest
                    .as_ref()
                    .is_some_and(|e| sth.timestamp < e.timestamp)
                {
                    self.earliest = Some(sth.clone());
                }
                if sth.timestamp > trusted.timestamp {
                    self.trusted = Some(sth);
                }
                Ok(TreeHeadUpdate::Same)
            } else {
                Err(self.misbehaved(Misbehaviour::Fork {
                    trusted,
                    other: sth,
                }))
            };
        }
        if let Some(earliest) = self.earliest.clone()
            && rolls_back(&earliest, &sth)
        {
            return Err(self.misbehaved(Misbehaviour::Rollback {
                trusted: earliest,
                other: sth,
            }));
        }
        let (old, new) = if sth.tree_size < trusted.tree_size {
            (sth.clone(), trusted.clone())
        } else {
            (trusted.clone(), sth.clone())
        };
        // Nothing needs proving about the empty tree.
        if old.tree_size > 0
            && let Err(e) = verify_consistency(
                old.tree_size,
                new.tree_size,
                &old.root_hash,
                &new.root_hash,
                proof,
            )
        {
            let failure = match e {
                Error::ConsistencyProof(f) => f,
                _ => ProofFailure::RootMismatch,
            };
            return Err(self.misbehaved(Misbehaviour::InconsistentTreeHeads {
                old,
                new,
                proof: proof.to_vec(),
                failure,
            }));
        }
        tracing::debug!(
            log = %self.log,
            old = old.tree_size,
            new = new.tree_size,
            "consistency checked"
        );
        if sth.tree_size < trusted.tree_size {
            return Ok(TreeHeadUpdate::Older);
        }
        if sth.timestamp < trusted.timestamp {
            return Err(self.misbehaved(Misbehaviour::TimestampRegression {
                trusted,
                other: sth,
            }));
        }
        self.trust(sth);
        Ok(TreeHeadUpdate::Advanced)
    }

    /// The first signed head of a pinned verifier: consistent with the pin, or misbehaviour.
    fn first_after_pin(
        &mut self,
        size: u64,
        root: Hash,
        sth: SignedTreeHead,
        proof: &[Hash],
    ) -> Result<TreeHeadUpdate, Box<LogMisbehaved>> {
        let (m, n, old, new) = if sth.tree_size < size {
            (sth.tree_size, size, sth.root_hash, root)
        } else {
            (size, sth.tree_size, root, sth.root_hash)
        };
        let result = if m == 0 {
            // A head of the empty tree says nothing about the pinned one.
            Ok(())
        } else {
            verify_consistency(m, n, &old, &new, proof)
        };
        if let Err(e) = result {
            let failure = match e {
                Error::ConsistencyProof(f) => f,
                _ => ProofFailure::RootMismatch,
            };
            return Err(self.misbehaved(Misbehaviour::InconsistentWithPinned {
                pinned_size: size,
                pinned_root: root,
                sth,
                proof: proof.to_vec(),
                failure,
            }));
        }
        match sth.tree_size.cmp(&size) {
            // Older than the pin: consistent, but nothing to trust yet.
            std::cmp::Ordering::Less => Ok(TreeHeadUpdate::Older),
            std::cmp::Ordering::Equal => {
                self.trust(sth);
                Ok(TreeHeadUpdate::Same)
            }
            std::cmp::Ordering::Greater => {
                self.trust(sth);
                Ok(TreeHeadUpdate::Advanced)
            }
        }
    }

    /// Appends the leaf hashes of the next entries (in log order) and, when the
    /// range reaches the trusted size, compares the recomputed root with it.
    /// Leaves beyond the trusted size are refused until a larger head is trusted.
    ///
    /// A root that differs is [`AppendError::Misbehaved`] when every unconfirmed
    /// leaf was appended since the verifier was built. When some came with a
    /// restored [`State`] (read in an earlier run, maybe served wrong once and
    /// right since), it is [`AppendError::ReadAgain`] instead: the range goes back
    /// to the confirmed one, and a mismatch after that is misbehaviour.
    pub fn append_leaves(
        &mut self,
        leaves: impl IntoIterator<Item = Hash>,
    ) -> Result<u64, AppendError> {
        let Some(trusted) = self.trusted.clone() else {
            return Err(AppendError::NoTrustedTreeHead);
        };
        for leaf in leaves {
            if self.range.size() == trusted.tree_size {
                return Err(AppendError::BeyondTreeHead {
                    tree_size: trusted.tree_size,
                });
            }
            let mut next = self.range.clone();
            next.append(leaf);
            if next.size() == trusted.tree_size && next.root() != trusted.root_hash {
                if self.restored {
                    // Not this run's evidence: read the leaves again.
                    tracing::warn!(
                        log = %self.log,
                        tree_size = trusted.tree_size,
                        from = self.confirmed.size(),
                        "root mismatch over leaves read before a restart; reading them again"
                    );
                    self.restored = false;
                    self.range = self.confirmed.clone();
                    return Err(AppendError::ReadAgain {
                        from: self.range.size(),
                    });
                }
                // Do not advance: the state stays before the leaf that failed
                // (the leaves before it are unconfirmed, not verified).
                return Err(AppendError::Misbehaved(self.misbehaved(
                    Misbehaviour::RootMismatch {
                        sth: trusted,
                        computed: next.root(),
                    },
                )));
            }
            self.range = next;
            if self.range.size() == trusted.tree_size {
                self.confirmed = self.range.clone();
                self.restored = false;
            }
        }
        Ok(self.range.size())
    }

    /// Checks an inclusion proof against the trusted head.
    pub fn check_inclusion(
        &self,
        leaf_index: u64,
        leaf_hash: Hash,
        proof: &[Hash],
    ) -> Result<(), AppendError> {
        let Some(sth) = self.trusted.clone() else {
            return Err(AppendError::NoTrustedTreeHead);
        };
        match verify_inclusion(leaf_index, sth.tree_size, &leaf_hash, proof, &sth.root_hash) {
            Ok(()) => Ok(()),
            Err(e) => {
                let failure = match e {
                    Error::InclusionProof(f) => f,
                    _ => ProofFailure::RootMismatch,
                };
                Err(AppendError::Misbehaved(self.misbehaved(
                    Misbehaviour::BadInclusionProof {
                        sth,
                        leaf_index,
                        leaf_hash,
                        proof: proof.to_vec(),
                        failure,
                    },
                )))
            }
        }
    }
}

/// Why leaves or a proof were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    /// No tree head is trusted yet, so there is nothing to check against.
    NoTrustedTreeHead,
    /// The caller offered more leaves than the trusted head covers.
    BeyondTreeHead {
        /// The trusted size.
        tree_size: u64,
    },
    /// The log's data contradicts its signed head.
    Misbehaved(Box<LogMisbehaved>),
    /// The root check failed over leaves restored from a saved state, not all
    /// read by this verifier: no evidence. The range went back to the confirmed
    /// one; append the leaves again from `from`.
    ReadAgain {
        /// The size of the confirmed range: the index of the next leaf to append.
        from: u64,
    },
}

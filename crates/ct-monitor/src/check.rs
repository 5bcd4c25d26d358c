//! One log entry against a watchlist and an authorizer.

use palisade_core_traits::{EventId, EventKind, SecurityEvent, Severity, Subject, Timestamp};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::{FromDer, TbsCertificate};

use crate::der::strip_ct_extensions;
use crate::entry::{SignedEntry, TileLeaf, TimestampedEntry};
use crate::error::Error;
use crate::identifiers::{Identifiers, from_parsed_tbs};
use crate::merkle::{Hash, sha256};
use crate::watch::{Authorizer, WatchMatch, Watchlist};

/// A `TBSCertificate` without the poison and SCT-list extensions: what a log records
/// for a precertificate, and what a final certificate's TBS reduces to.
pub fn tbs_without_ct_extensions(tbs_der: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(strip_ct_extensions(tbs_der)?.into_owned())
}

/// Hash of a `TBSCertificate` without the poison and SCT-list extensions (the
/// [`CertificateInfo::tbs_hash`] of its log entries).
pub fn tbs_hash(tbs_der: &[u8]) -> Result<Hash, Error> {
    Ok(sha256(&strip_ct_extensions(tbs_der)?))
}

/// Most (item, identifier) matches of one entry: past it, matching stops and the
/// entry is [`Verdict::Malformed`] (wildcard names can match every item each).
pub(crate) const MAX_MATCHES_PER_ENTRY: usize = 10_000;

/// What a monitor learns from one parsable certificate or precertificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// `true` for a precertificate entry.
    pub is_precert: bool,
    /// SHA-256 of the `TBSCertificate` without the poison and SCT-list extensions:
    /// equal for a precertificate and its certificate, so one issuance is one hash.
    pub tbs_hash: Hash,
    /// SHA-256 of the subject's DER SubjectPublicKeyInfo.
    pub spki_hash: Hash,
    /// Names and addresses.
    pub identifiers: Identifiers,
}

/// The outcome for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// No watch item matched.
    NoMatch,
    /// Watch items matched, and the authorizer knows the certificate.
    Authorized {
        /// The certificate.
        info: CertificateInfo,
        /// What matched.
        matches: Vec<WatchMatch>,
    },
    /// Watch items matched and nobody authorized it: alert.
    Unauthorized {
        /// The certificate.
        info: CertificateInfo,
        /// What matched.
        matches: Vec<WatchMatch>,
    },
    /// The entry could not be parsed or checked, or is over the per-entry limits
    /// (identifiers, matches); it counts as a match for every watch item.
    Malformed {
        /// Why parsing or checking failed.
        reason: String,
        /// Every watch item.
        matches: Vec<WatchMatch>,
    },
}

impl Verdict {
    /// Whether a human should hear about it (unauthorized or malformed).
    pub fn is_alert(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Malformed { .. })
    }

    /// The shared-vocabulary event for an alerting verdict about entry `index` of
    /// `log` (unauthorized: high; malformed: medium), or `None` when the verdict does
    /// not alert. `time` comes from the caller's clock.
    pub fn to_security_event(
        &self,
        log: &str,
        index: u64,
        time: Timestamp,
    ) -> Result<Option<SecurityEvent>, Error> {
        let (subject, matches, info, severity): (String, _, Option<&CertificateInfo>, _) =
            match self {
                Self::Unauthorized { info, matches } => {
                    let Some(first) = matches.first() else {
                        return Ok(None);
                    };
                    (
                        first.identifier.clone(),
                        matches,
                        Some(info),
                        Severity::High,
                    )
                }
                Self::Malformed { matches, .. } => {
                    (log.to_string(), matches, None, Severity::Medium)
                }
                _ => return Ok(None),
            };
        let id = match info {
            Some(info) => format!("ct-cert-{}", hex::encode(&info.tbs_hash[..16])),
            None => format!(
                "ct-malformed-{}",
                hex::encode(&sha256(format!("{log}/{index}").as_bytes())[..16])
            ),
        };
        let id = EventId::new(id)?;
        let mut event = SecurityEvent::new(
            id,
            time,
            EventKind::UnauthorizedCertificate,
            severity,
            Subject::Domain { domain: subject },
            "palisade-ct-monitor",
        )
        .with_evidence("log", log)
        .with_evidence("index", index.to_string());
        if let Self::Malformed { reason, .. } = self {
            event = event.with_evidence("malformed", reason.clone());
        }
        if let Some(info) = info {
            event = event
                .with_evidence("tbs_sha256", hex::encode(info.tbs_hash))
                .with_evidence("spki_sha256", hex::encode(info.spki_hash))
                .with_evidence("precertificate", info.is_precert.to_string());
        }
        for m in matches {
            event = event.with_evidence(
                "matched",
                format!("{} on {}", m.item, m.identifier.escape_debug()),
            );
        }
        Ok(Some(event))
    }
}

fn info_of(
    tbs: &TbsCertificate<'_>,
    raw_tbs: &[u8],
    is_precert: bool,
) -> Result<CertificateInfo, Error> {
    Ok(CertificateInfo {
        is_precert,
        tbs_hash: sha256(&strip_ct_extensions(raw_tbs)?),
        spki_hash: sha256(tbs.subject_pki.raw),
        identifiers: from_parsed_tbs(tbs)?,
    })
}

impl CertificateInfo {
    /// What [`CertificateInfo::from_entry`] reports for a plain DER certificate,
    /// without wrapping it in a log entry (`is_precert` is false).
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, Error> {
        Self::from_entry(&TimestampedEntry {
            timestamp: 0,
            entry: SignedEntry::X509 { certificate: der },
            extensions: &[],
        })
    }

    /// Parses the certificate or precertificate TBS of a log entry.
    pub fn from_entry(entry: &TimestampedEntry<'_>) -> Result<Self, Error> {
        certificate_info(entry)
    }
}

fn certificate_info(entry: &TimestampedEntry<'_>) -> Result<CertificateInfo, Error> {
    match entry.entry {
        SignedEntry::X509 { certificate } => {
            let (rest, cert) = X509Certificate::from_der(certificate)
                .map_err(|e| Error::malformed("Certificate", 0, e.to_string()))?;
            if !rest.is_empty() {
                return Err(Error::malformed(
                    "Certificate",
                    certificate.len() - rest.len(),
                    "trailing bytes",
                ));
            }
            info_of(&cert.tbs_certificate, cert.tbs_certificate.as_ref(), false)
        }
        SignedEntry::Precert {
            tbs_certificate, ..
        } => {
            let (rest, tbs) = TbsCertificate::from_der(tbs_certificate)
                .map_err(|e| Error::malformed("TBSCertificate", 0, e.to_string()))?;
            if !rest.is_empty() {
                return Err(Error::malformed(
                    "TBSCertificate",
                    tbs_certificate.len() - rest.len(),
                    "trailing bytes",
                ));
            }
            info_of(&tbs, tbs_certificate, true)
        }
    }
}

/// Checks that a logged precertificate TBS is the submitted precertificate minus
/// its poison extension (RFC 6962 §3.2), allowing only the issuer and authority key
/// identifier to differ (precertificate-signing CAs). A mismatch is an error: the
/// entry is not what it claims, and the monitor treats it as malformed.
pub fn check_precertificate(logged_tbs: &[u8], pre_certificate: &[u8]) -> Result<(), Error> {
    let (rest, cert) = X509Certificate::from_der(pre_certificate)
        .map_err(|e| Error::malformed("precertificate", 0, e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            "precertificate",
            pre_certificate.len() - rest.len(),
            "trailing bytes",
        ));
    }
    match crate::der::precert_mismatch(logged_tbs, cert.tbs_certificate.as_ref())? {
        None => Ok(()),
        Some(reason) => Err(Error::PrecertMismatch { reason }),
    }
}

/// [`check_entry`] for a static-ct `TileLeaf` at position `index`, which also
/// carries the full precertificate and must carry a `leaf_index` extension: a
/// precertificate that does not match its logged TBS, or a missing leaf index, is
/// [`Verdict::Malformed`].
pub fn check_tile_leaf(
    leaf: &TileLeaf<'_>,
    index: u64,
    watchlist: &Watchlist,
    authorizer: &Authorizer,
) -> Verdict {
    if let Ok(None) = leaf.entry.leaf_index() {
        return Verdict::Malformed {
            reason: format!("static-ct leaf at index {index} has no leaf_index extension"),
            matches: watchlist.match_all(),
        };
    }
    check_log_entry(
        &leaf.entry,
        leaf.pre_certificate,
        index,
        watchlist,
        authorizer,
    )
}

/// [`check_entry`] plus, when the log supplied the full precertificate (RFC 6962
/// `extra_data` or a static-ct `TileLeaf`), the check that it matches the logged TBS.
pub fn check_log_entry(
    entry: &TimestampedEntry<'_>,
    pre_certificate: Option<&[u8]>,
    index: u64,
    watchlist: &Watchlist,
    authorizer: &Authorizer,
) -> Verdict {
    if let (
        SignedEntry::Precert {
            tbs_certificate, ..
        },
        Some(pre),
    ) = (entry.entry, pre_certificate)
        && let Err(e) = check_precertificate(tbs_certificate, pre)
    {
        return Verdict::Malformed {
            reason: e.to_string(),
            matches: watchlist.match_all(),
        };
    }
    check_entry(entry, index, watchlist, authorizer)
}

/// Checks the entry at position `index` of its log: parse, match, authorize.
/// Never fails: a parse error, a static-ct `leaf_index` extension that is
/// malformed or differs from `index`, a certificate with more than 10,000
/// identifiers ([`Error::TooManyIdentifiers`]) or an entry with more than 10,000
/// (item, identifier) matches is a [`Verdict::Malformed`] that matches every item.
pub fn check_entry(
    entry: &TimestampedEntry<'_>,
    index: u64,
    watchlist: &Watchlist,
    authorizer: &Authorizer,
) -> Verdict {
    let bad_index = match entry.leaf_index() {
        Ok(Some(i)) if i != index => Some(format!("leaf_index extension {i} at index {index}")),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    if let Some(reason) = bad_index {
        return Verdict::Malformed {
            reason,
            matches: watchlist.match_all(),
        };
    }
    let info = match certificate_info(entry) {
        Ok(info) => info,
        Err(e) => {
            return Verdict::Malformed {
                reason: e.to_string(),
                matches: watchlist.match_all(),
            };
        }
    };
    let Some(matches) = watchlist.matches_at_most(&info.identifiers, MAX_MATCHES_PER_ENTRY) else {
        // Bounded work, and never "no match": the entry alerts like an unparsable one.
        return Verdict::Malformed {
            reason: format!(
                "more than {MAX_MATCHES_PER_ENTRY} watch matches in one entry; not matched further"
            ),
            matches: watchlist.match_all(),
        };
    };
    if matches.is_empty() {
        Verdict::NoMatch
    } else if authorizer.is_authorized(&info.tbs_hash, &info.spki_hash) {
        Verdict::Authorized { info, matches }
    } else {
        Verdict::Unauthorized { info, matches }
    }
}

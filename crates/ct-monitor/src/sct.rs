//! Signed certificate timestamps (RFC 6962 §3.2–3.3): parsing the SCT list,
//! rebuilding what the log signed, verifying each SCT against a v3 log list, and
//! the Chrome and Apple CT policies on top.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use palisade_core_traits::{Clock, SystemClock, Timestamp};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::der::{first_element, octet_string, strip_ct_extensions};
use crate::error::Error;
use crate::loglist::{LogInfo, LogList, LogProtocol, LogState};
use crate::merkle::{Hash, sha256};
use crate::sth::DigitallySigned;
use crate::tls::Reader;

/// One `SignedCertificateTimestamp` (v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sct {
    /// The log's id: SHA-256 of its key.
    pub log_id: Hash,
    /// Milliseconds since the Unix epoch, as signed by the log.
    pub timestamp: u64,
    /// `CtExtensions` (opaque; empty in practice).
    pub extensions: Vec<u8>,
    /// The log's signature.
    pub signature: DigitallySigned,
}

impl Sct {
    /// Parses one serialized SCT; only version 1 (`0`) exists.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, "SignedCertificateTimestamp");
        let version = r.u8()?;
        if version != 0 {
            return Err(r.fail(format!("version {version}, only v1 (0) exists")));
        }
        let sct = Self {
            log_id: r.array()?,
            timestamp: r.u64()?,
            extensions: r.vec(2, 0)?.to_vec(),
            signature: DigitallySigned::read(&mut r)?,
        };
        r.finish()?;
        Ok(sct)
    }

    /// The bytes the log signed (RFC 6962 §3.2 `digitally-signed struct`) for `entry`.
    pub fn signed_data(&self, entry: &SignedEntryData<'_>) -> Vec<u8> {
        let (entry_type, issuer, body) = match entry {
            SignedEntryData::X509 { certificate } => (0u16, None, *certificate),
            SignedEntryData::Precert {
                issuer_key_hash,
                tbs_certificate,
            } => (1, Some(issuer_key_hash), *tbs_certificate),
        };
        let mut out = Vec::with_capacity(12 + 32 + 3 + body.len() + 2 + self.extensions.len());
        out.push(0); // sct_version v1
        out.push(0); // signature_type certificate_timestamp
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&entry_type.to_be_bytes());
        if let Some(hash) = issuer {
            out.extend_from_slice(*hash);
        }
        // Certificates and TBS are under 2^24 bytes: checked by the callers.
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(body);
        out.extend_from_slice(&(self.extensions.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.extensions);
        out
    }
}

/// What an SCT is over: a whole certificate (`x509_entry`, SCTs from the TLS
/// extension or OCSP) or a precertificate's TBS and its issuer's key hash
/// (`precert_entry`, SCTs embedded in the certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedEntryData<'a> {
    /// A DER certificate.
    X509 {
        /// The certificate.
        certificate: &'a [u8],
    },
    /// A precertificate.
    Precert {
        /// SHA-256 of the issuer's SubjectPublicKeyInfo.
        issuer_key_hash: &'a Hash,
        /// The TBSCertificate without the poison and SCT-list extensions.
        tbs_certificate: &'a [u8],
    },
}

/// Parses a TLS `SignedCertificateTimestampList` (the TLS extension, the OCSP
/// extension and, inside an OCTET STRING, the certificate extension carry one).
pub fn parse_sct_list(bytes: &[u8]) -> Result<Vec<Sct>, Error> {
    let mut outer = Reader::new(bytes, "SignedCertificateTimestampList");
    let list = outer.vec(2, 1)?;
    outer.finish()?;
    let mut r = Reader::new(list, "SignedCertificateTimestampList");
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(Sct::parse(r.vec(2, 1)?)?);
    }
    Ok(out)
}

/// DER of the embedded SCT list OID 1.3.6.1.4.1.11129.2.4.2 (without tag and length).
const SCT_LIST_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];

/// How an SCT reached the relying party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SctSource {
    /// In the certificate's SCT-list extension (over the precertificate).
    Embedded,
    /// In the TLS `signed_certificate_timestamp` extension (over the certificate).
    TlsExtension,
    /// In a stapled OCSP response (over the certificate).
    Ocsp,
}

/// Whether one SCT's signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SctStatus {
    /// The signature verifies with the log's key from the list.
    Valid,
    /// The log is in the list and the signature does not verify.
    Invalid,
    /// No log in the list has this id.
    UnknownLog,
    /// The signature verifies but the timestamp is after the verifier's clock:
    /// RFC 6962 §5.2 has TLS clients reject it, and no policy counts it.
    FutureTimestamp,
}

/// One SCT's result, with what the list says about its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SctCheck {
    /// Where it came from.
    pub source: SctSource,
    /// The log id.
    pub log_id: Hash,
    /// The log's description, if the log is in the list.
    pub log: Option<String>,
    /// The log's operator at the SCT's timestamp (its `previous_operators` applied).
    pub operator: Option<String>,
    /// The SCT's timestamp (milliseconds since the Unix epoch).
    pub timestamp: u64,
    /// Signature result.
    pub status: SctStatus,
    /// The log's state in the list (as of the list, i.e. at the time of check).
    pub log_state: Option<LogState>,
    /// When the log entered that state.
    pub log_state_since: Option<Timestamp>,
    /// The log was usable for this SCT: qualified, usable or read-only, or retired
    /// after the SCT's timestamp; and the certificate's expiry lies inside the log's
    /// temporal interval, if it has one.
    pub log_usable: bool,
    /// An RFC 6962 log (`logs`), not a static-ct-api one (`tiled_logs`).
    pub rfc6962_log: bool,
}

/// The SCTs of one certificate, verified; the input of the policy checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SctReport {
    /// The certificate's `notBefore`.
    pub not_before: Timestamp,
    /// The certificate's `notAfter`.
    pub not_after: Timestamp,
    /// Every SCT, embedded first, in the order given.
    pub scts: Vec<SctCheck>,
}

/// Checks SCTs against the logs of a v3 log list, at the time of its clock.
#[derive(Debug, Clone)]
pub struct SctVerifier<'a> {
    logs: HashMap<Hash, &'a LogInfo>,
    clock: Arc<dyn Clock>,
}

struct Cert<'a> {
    der: &'a [u8],
    tbs: &'a [u8],
    not_before: Timestamp,
    not_after: Timestamp,
    sct_list: Option<&'a [u8]>,
}

fn time(t: x509_parser::time::ASN1Time, what: &'static str) -> Result<Timestamp, Error> {
    u64::try_from(t.timestamp())
        .map(Timestamp::from_unix_secs)
        .map_err(|_| Error::malformed("Certificate", 0, format!("{what} before 1970")))
}

fn parse_cert(der: &[u8]) -> Result<Cert<'_>, Error> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| Error::malformed("Certificate", 0, e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            "Certificate",
            der.len() - rest.len(),
            "trailing bytes",
        ));
    }
    if der.len() >= 1 << 24 {
        return Err(Error::malformed("Certificate", 0, "2^24 bytes or more"));
    }
    let tbs = first_element(der)?;
    let mut sct_list = None;
    for ext in cert.tbs_certificate.extensions() {
        if ext.oid.as_bytes() == SCT_LIST_OID {
            if sct_list.is_some() {
                return Err(Error::malformed(
                    "Certificate",
                    0,
                    "two SCT-list extensions",
                ));
            }
            sct_list = Some(ext.value);
        }
    }
    let validity = &cert.tbs_certificate.validity;
    Ok(Cert {
        der,
        tbs,
        not_before: time(validity.not_before, "notBefore")?,
        not_after: time(validity.not_after, "notAfter")?,
        sct_list,
    })
}

/// SHA-256 of a DER certificate's SubjectPublicKeyInfo. For a certificate's issuer
/// this is the RFC 6962 `issuer_key_hash`.
pub fn spki_hash(cert_der: &[u8]) -> Result<Hash, Error> {
    let (rest, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| Error::malformed("Certificate", 0, e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            "Certificate",
            cert_der.len() - rest.len(),
            "trailing bytes",
        ));
    }
    Ok(sha256(cert.tbs_certificate.subject_pki.raw))
}

/// The SCTs embedded in a DER certificate (empty when it has no SCT-list extension).
pub fn embedded_scts(cert_der: &[u8]) -> Result<Vec<Sct>, Error> {
    match parse_cert(cert_der)?.sct_list {
        Some(v) => parse_sct_list(octet_string(v)?),
        None => Ok(Vec::new()),
    }
}

/// The operator of `log` at `ms` (milliseconds): a `previous_operators` entry whose
/// end time is at or after it, else the current operator.
fn operator_at(log: &LogInfo, ms: u64) -> &str {
    let at = Timestamp::from_unix_nanos(ms.saturating_mul(1_000_000));
    log.previous_operators
        .iter()
        .filter(|(_, end)| at <= *end)
        .min_by_key(|(_, end)| *end)
        .map_or(log.operator.as_str(), |(name, _)| name.as_str())
}

impl<'a> SctVerifier<'a> {
    /// Indexes the logs of `list` by log id; the time of check is the system clock's.
    pub fn new(list: &'a LogList) -> Self {
        Self {
            logs: list.logs.iter().map(|l| (*l.key.log_id(), l)).collect(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The clock whose `now()` is the time of check: an SCT stamped after it is
    /// [`SctStatus::FutureTimestamp`] (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Verifies the SCTs embedded in `cert_der` (issued by `issuer_der`) and any
    /// SCT lists delivered with it (TLS extension, OCSP: raw TLS
    /// `SignedCertificateTimestampList` bytes). A certificate or list that does not
    /// parse is an error; an SCT that does not verify is reported, not an error.
    pub fn verify(
        &self,
        cert_der: &[u8],
        issuer_der: &[u8],
        delivered: &[(SctSource, &[u8])],
    ) -> Result<SctReport, Error> {
        let cert = parse_cert(cert_der)?;
        let mut scts = Vec::new();
        if let Some(ext) = cert.sct_list {
            let list = parse_sct_list(octet_string(ext)?)?;
            let issuer_key_hash = spki_hash(issuer_der)?;
            let tbs = strip_ct_extensions(cert.tbs)?;
            let entry = SignedEntryData::Precert {
                issuer_key_hash: &issuer_key_hash,
                tbs_certificate: &tbs,
            };
            for sct in &list {
                scts.push(self.check(sct, &entry, SctSource::Embedded, cert.not_after));
            }
        }
        let entry = SignedEntryData::X509 {
            certificate: cert.der,
        };
        for (source, bytes) in delivered {
            for sct in &parse_sct_list(bytes)? {
                scts.push(self.check(sct, &entry, *source, cert.not_after));
            }
        }
        Ok(SctReport {
            not_before: cert.not_before,
            not_after: cert.not_after,
            scts,
        })
    }

    /// Checks one SCT over `entry`; `not_after` is the certificate's expiry, for the
    /// log's temporal interval.
    pub fn check(
        &self,
        sct: &Sct,
        entry: &SignedEntryData<'_>,
        source: SctSource,
        not_after: Timestamp,
    ) -> SctCheck {
        let Some(log) = self.logs.get(&sct.log_id) else {
            return SctCheck {
                source,
                log_id: sct.log_id,
                log: None,
                operator: None,
                timestamp: sct.timestamp,
                status: SctStatus::UnknownLog,
                log_state: None,
                log_state_since: None,
                log_usable: false,
                rfc6962_log: false,
            };
        };
        let at = Timestamp::from_unix_nanos(sct.timestamp.saturating_mul(1_000_000));
        let status = match log
            .key
            .verify(&sct.signed_data(entry), &sct.signature, "SCT")
        {
            Ok(()) if at > self.clock.now() => SctStatus::FutureTimestamp,
            Ok(()) => SctStatus::Valid,
            Err(_) => SctStatus::Invalid,
        };
        let state_ok = match log.state {
            LogState::Qualified | LogState::Usable | LogState::ReadOnly { .. } => true,
            LogState::Retired => log.state_since.is_some_and(|since| at < since),
            _ => false,
        };
        let interval_ok = log
            .temporal_interval
            .is_none_or(|(start, end)| start <= not_after && not_after < end);
        SctCheck {
            source,
            log_id: sct.log_id,
            log: Some(log.description.clone()),
            operator: Some(operator_at(log, sct.timestamp).to_string()),
            timestamp: sct.timestamp,
            status,
            log_state: Some(log.state.clone()),
            log_state_since: log.state_since,
            log_usable: state_ok && interval_ok,
            rfc6962_log: matches!(log.protocol, LogProtocol::Rfc6962 { .. }),
        }
    }
}

/// A browser CT policy, as published (see `docs/ct-monitor.md` for the versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CtPolicy {
    /// Chrome's Certificate Transparency Policy (ct_policy.md as of 2026-04-15).
    Chrome,
    /// Apple's Certificate Transparency policy (support.apple.com/103214).
    Apple,
}

/// Whether a certificate's SCTs satisfy a policy, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The policy.
    pub policy: CtPolicy,
    /// Compliant.
    pub compliant: bool,
    /// Why not (empty when compliant).
    pub reason: String,
}

const DAY_SECS: u64 = 86_400;

/// Currently qualified, usable or read-only.
fn current(c: &SctCheck) -> bool {
    matches!(
        c.log_state,
        Some(LogState::Qualified | LogState::Usable | LogState::ReadOnly { .. })
    )
}

/// Retired before `ms` (milliseconds).
fn retired_before(c: &SctCheck, ms: u64) -> bool {
    matches!(c.log_state, Some(LogState::Retired))
        && c.log_state_since
            .is_none_or(|since| since <= Timestamp::from_unix_nanos(ms.saturating_mul(1_000_000)))
}

impl SctReport {
    /// The certificate's lifetime, `notAfter - notBefore`, in seconds.
    fn lifetime_secs(&self) -> u64 {
        self.not_after
            .saturating_duration_since(self.not_before)
            .as_secs()
    }

    /// Evaluates `policy` on the valid SCTs. The log states are the list's (the
    /// time of check is when the list was current; keep it fresh).
    pub fn policy(&self, policy: CtPolicy) -> PolicyOutcome {
        let result = match policy {
            CtPolicy::Chrome => self.chrome(),
            CtPolicy::Apple => self.apple(),
        };
        PolicyOutcome {
            policy,
            compliant: result.is_ok(),
            reason: result.err().unwrap_or_default(),
        }
    }

    fn valid(&self) -> impl Iterator<Item = &SctCheck> {
        self.scts.iter().filter(|c| c.status == SctStatus::Valid)
    }

    fn chrome(&self) -> Result<(), String> {
        // A retired log counts only if the earliest SCT presented predates its retirement.
        let earliest = self.valid().map(|c| c.timestamp).min().unwrap_or(0);
        let counts = |c: &&SctCheck| {
            current(c) || (c.log_state == Some(LogState::Retired) && !retired_before(c, earliest))
        };
        let embedded: Vec<&SctCheck> = self
            .valid()
            .filter(|c| c.source == SctSource::Embedded)
            .filter(counts)
            .collect();
        let n = if self.lifetime_secs() <= 180 * DAY_SECS {
            2
        } else {
            3
        };
        let embedded_ok = (|| {
            if !embedded.iter().any(|c| current(c)) {
                return Err(
                    "no embedded SCT from a currently qualified, usable or read-only log"
                        .to_string(),
                );
            }
            let logs: BTreeSet<&Hash> = embedded.iter().map(|c| &c.log_id).collect();
            if logs.len() < n {
                return Err(format!(
                    "embedded SCTs from {} distinct logs, {n} required for this lifetime",
                    logs.len()
                ));
            }
            distinct_operators(&embedded, 2)
        })();
        let delivered: Vec<&SctCheck> = self
            .valid()
            .filter(|c| c.source != SctSource::Embedded && current(c))
            .collect();
        let delivered_ok = if delivered.len() < 2 {
            Err(format!(
                "{} SCTs delivered via TLS/OCSP from current logs, 2 required",
                delivered.len()
            ))
        } else {
            distinct_operators(&delivered, 2)
        };
        match (embedded_ok, delivered_ok) {
            (Ok(()), _) | (_, Ok(())) => Ok(()),
            (Err(e), Err(d)) => Err(format!("embedded: {e}; delivered: {d}")),
        }
    }

    fn apple(&self) -> Result<(), String> {
        let once = |c: &&SctCheck| {
            current(c)
                || (c.log_state == Some(LogState::Retired) && !retired_before(c, c.timestamp))
        };
        let counted: Vec<&SctCheck> = self.valid().filter(once).collect();
        if counted.len() < 2 {
            return Err(format!(
                "{} SCTs from once or currently approved logs, 2 required",
                counted.len()
            ));
        }
        if !counted.iter().any(|c| c.rfc6962_log) {
            return Err("no SCT from an RFC 6962 log".into());
        }
        let delivered = counted
            .iter()
            .filter(|c| c.source != SctSource::Embedded && current(c))
            .count();
        let current_logs = counted.iter().filter(|c| current(c)).count();
        if delivered >= 1 && current_logs >= 2 {
            return Ok(());
        }
        // Lifetime per RFC 5280 (notBefore through notAfter inclusive), in days of
        // 86,400 seconds, any remainder counting as a day.
        let days = (self.lifetime_secs() + 1).div_ceil(DAY_SECS);
        let (n, per_operator) = match days {
            0..=180 => (2, 1),
            181..=398 => (3, 2),
            _ => return Err(format!("lifetime of {days} days exceeds 398")),
        };
        let embedded: Vec<&&SctCheck> = counted
            .iter()
            .filter(|c| c.source == SctSource::Embedded)
            .collect();
        if !embedded.iter().any(|c| current(c)) {
            return Err(
                "no embedded SCT from a currently approved log and no SCT via TLS/OCSP".into(),
            );
        }
        // Distinct logs, at most `per_operator` of them counted per operator.
        let mut per_op: BTreeMap<&str, BTreeSet<&Hash>> = BTreeMap::new();
        for c in &embedded {
            per_op
                .entry(c.operator.as_deref().unwrap_or(""))
                .or_default()
                .insert(&c.log_id);
        }
        let counted_logs: usize = per_op.values().map(|l| l.len().min(per_operator)).sum();
        if counted_logs < n {
            return Err(format!(
                "{counted_logs} embedded SCTs count (distinct logs, at most {per_operator} per operator), {n} required for {days} days"
            ));
        }
        Ok(())
    }
}

fn distinct_operators(scts: &[&SctCheck], n: usize) -> Result<(), String> {
    let ops: BTreeSet<&str> = scts.iter().filter_map(|c| c.operator.as_deref()).collect();
    if ops.len() < n {
        return Err(format!(
            "SCTs from {} distinct operators, {n} required",
            ops.len()
        ));
    }
    Ok(())
}

//! Identifier extraction from certificates and precertificate TBS, with
//! certspotter's defensive rules: every CN, DNS and IP SANs, IPs found in DNS
//! SANs and CNs, names cut at a NUL byte (both halves kept), `http(s)://`
//! prefixes, UTF-8/Latin-1 ambiguity (both readings kept), and IDNs in punycode.
//!
//! The rule when in doubt: produce more candidate names, never fewer. An extra
//! candidate can only cause an extra alert; a missing one hides a certificate.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use palisade_core_traits::canonical_ip;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, TbsCertificate};

use crate::error::Error;

/// Most identifiers (names, addresses and anomalies, after de-duplication) taken
/// from one certificate. Real certificates carry at most a few thousand names;
/// more is refused ([`Error::TooManyIdentifiers`]) so that one hostile entry
/// cannot cost unbounded memory and matching time.
pub(crate) const MAX_IDENTIFIERS: usize = 10_000;

/// The names and addresses a certificate is valid for, normalised for matching:
/// DNS names lower-case ASCII (punycode), without a trailing dot, deduplicated
/// (in the order first seen).
#[derive(Clone, Default)]
pub struct Identifiers {
    /// DNS names, possibly with `*` and `?` labels.
    pub dns_names: Vec<String>,
    /// IP addresses (from IP SANs, and from DNS SANs or CNs that parse as one).
    pub ip_addrs: Vec<IpAddr>,
    /// Oddities found while extracting (e.g. an IP SAN of 8 bytes), for the event.
    pub anomalies: Vec<String>,
    /// Boxed: it rides along in every event's `CertificateInfo`.
    index: Box<Index>,
}

/// Where each name and address was pushed, so de-duplication is a hash lookup (a
/// scan would make N names cost N²). An entry is checked against the vector
/// before a value is skipped, so a caller editing the public fields never loses
/// a name to a stale entry.
#[derive(Clone, Default)]
struct Index {
    dns: HashMap<String, usize>,
    ip: HashMap<IpAddr, usize>,
}

impl PartialEq for Identifiers {
    fn eq(&self, other: &Self) -> bool {
        self.dns_names == other.dns_names
            && self.ip_addrs == other.ip_addrs
            && self.anomalies == other.anomalies
    }
}

impl Eq for Identifiers {}

impl fmt::Debug for Identifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identifiers")
            .field("dns_names", &self.dns_names)
            .field("ip_addrs", &self.ip_addrs)
            .field("anomalies", &self.anomalies)
            .finish()
    }
}

impl Identifiers {
    fn push_dns(&mut self, name: String) {
        if name.is_empty() {
            return;
        }
        if let Some(&i) = self.index.dns.get(&name)
            && self.dns_names.get(i) == Some(&name)
        {
            return;
        }
        self.index.dns.insert(name.clone(), self.dns_names.len());
        self.dns_names.push(name);
    }

    fn push_ip(&mut self, ip: IpAddr) {
        // An IPv4-mapped IPv6 SAN is the IPv4 address (ARCHITECTURE: canonical form).
        let ip = canonical_ip(ip);
        if let Some(&i) = self.index.ip.get(&ip)
            && self.ip_addrs.get(i) == Some(&ip)
        {
            return;
        }
        self.index.ip.insert(ip, self.ip_addrs.len());
        self.ip_addrs.push(ip);
    }

    /// Names, addresses and anomalies so far.
    fn count(&self) -> usize {
        self.dns_names.len() + self.ip_addrs.len() + self.anomalies.len()
    }

    /// [`Error::TooManyIdentifiers`] once over [`MAX_IDENTIFIERS`]; checked after
    /// each value, which adds a bounded number of readings.
    fn within_limit(&self) -> Result<(), Error> {
        if self.count() > MAX_IDENTIFIERS {
            return Err(Error::TooManyIdentifiers {
                limit: MAX_IDENTIFIERS,
            });
        }
        Ok(())
    }

    /// One decoded string from a CN (`is_cn`) or a DNS SAN, before the NUL rule.
    fn add_final(&mut self, value: &str, is_cn: bool) {
        let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
        if let Ok(ip) = value.parse::<IpAddr>() {
            self.push_ip(ip);
        } else if !(is_cn && value.contains(' ')) {
            // A CN with a space is a person or organisation name, not a DNS name.
            self.push_dns(canonical_dns_name(value));
        }
    }

    /// The identifiers of a DER certificate. More than 10,000 (names, addresses
    /// and anomalies) is [`Error::TooManyIdentifiers`].
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, Error> {
        from_certificate_der(der)
    }

    /// The identifiers of a DER `TBSCertificate` (as logged for a precertificate).
    /// More than 10,000 is [`Error::TooManyIdentifiers`].
    pub fn from_tbs_der(der: &[u8]) -> Result<Self, Error> {
        from_tbs_der(der)
    }

    /// Adds one subject CN value (already decoded), with every defensive reading.
    pub fn add_common_name(&mut self, value: &str) {
        self.add_value(value, true);
    }

    /// Adds one dNSName SAN from its raw bytes, with every defensive reading.
    pub fn add_dns_san(&mut self, raw: &[u8]) {
        self.add_bytes(raw, false);
    }

    fn add_value(&mut self, value: &str, is_cn: bool) {
        self.add_final(value, is_cn);
        for prefix in ["http://", "https://"] {
            if let Some(rest) = strip_prefix_ignore_case(value, prefix) {
                self.add_final(rest.split('/').next().unwrap_or(rest), is_cn);
            }
        }
        if let Some(i) = value.find('\0') {
            self.add_value(&value[..i], is_cn);
        }
    }

    /// Adds every reading of raw string bytes (UTF-8 if valid, Latin-1 if not ASCII).
    fn add_bytes(&mut self, raw: &[u8], is_cn: bool) {
        for s in readings(raw) {
            self.add_value(&s, is_cn);
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn latin1(raw: &[u8]) -> String {
    raw.iter().map(|b| char::from(*b)).collect()
}

/// UTF-8 if it is valid, and Latin-1 whenever a byte is not ASCII: a CA that put
/// UTF-8 into a Latin-1 type, or the other way round, is still matched.
fn readings(raw: &[u8]) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    if let Ok(s) = std::str::from_utf8(raw) {
        out.push(s.to_string());
    }
    if !raw.is_ascii() {
        out.push(latin1(raw));
    }
    out
}

/// Lower-cases, drops trailing dots, and turns labels with non-ASCII characters
/// into punycode (UTS #46); a label IDNA refuses is kept lower-cased as is.
pub(crate) fn canonical_dns_name(name: &str) -> String {
    let name = name.trim_end_matches('.');
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.split('.')
        .map(|label| {
            if label.is_ascii() {
                label.to_ascii_lowercase()
            } else {
                idna::domain_to_ascii(label).unwrap_or_else(|_| label.to_lowercase())
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Decodes an X.520 string by its DER tag into every plausible reading.
fn decode_directory_string(tag: u32, data: &[u8]) -> Vec<String> {
    match tag {
        // BMPString: UTF-16BE
        30 if data.len().is_multiple_of(2) => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            vec![String::from_utf16_lossy(&units)]
        }
        // UniversalString: UTF-32BE
        28 if data.len().is_multiple_of(4) => vec![
            data.chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or('\u{fffd}')
                })
                .collect(),
        ],
        // UTF8String, PrintableString, TeletexString, IA5String, VisibleString and
        // anything else: the bytes, read as UTF-8 and as Latin-1.
        _ => readings(data),
    }
}

pub(crate) fn from_parsed_tbs(tbs: &TbsCertificate<'_>) -> Result<Identifiers, Error> {
    let mut ids = Identifiers::default();
    for attr in tbs.subject().iter_common_name() {
        let v = attr.attr_value();
        for s in decode_directory_string(v.tag().0, v.data) {
            ids.add_value(&s, true);
        }
        ids.within_limit()?;
    }
    for ext in tbs.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(s) => ids.add_bytes(s.as_bytes(), false),
                        GeneralName::Invalid(tag, raw) if tag.0 == 2 => ids.add_bytes(raw, false),
                        GeneralName::IPAddress(raw) => match raw.len() {
                            4 => ids.push_ip(IpAddr::from(
                                <[u8; 4]>::try_from(*raw).unwrap_or_default(),
                            )),
                            16 => ids.push_ip(IpAddr::from(
                                <[u8; 16]>::try_from(*raw).unwrap_or_default(),
                            )),
                            n => ids
                                .anomalies
                                .push(format!("iPAddress SAN of {n} bytes ignored")),
                        },
                        _ => {}
                    }
                    ids.within_limit()?;
                }
            }
            ParsedExtension::ParseError { error }
                if ext.oid == x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME =>
            {
                return Err(Error::malformed("subjectAltName", 0, error.to_string()));
            }
            _ => {}
        }
    }
    Ok(ids)
}

fn x509_err(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::malformed(what, 0, e.to_string())
}

/// Identifiers of a DER `TBSCertificate` (a precertificate log entry).
fn from_tbs_der(der: &[u8]) -> Result<Identifiers, Error> {
    let (rest, tbs) = TbsCertificate::from_der(der).map_err(|e| x509_err("TBSCertificate", e))?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            "TBSCertificate",
            der.len() - rest.len(),
            "trailing bytes",
        ));
    }
    from_parsed_tbs(&tbs)
}

/// Identifiers of a DER certificate (an x509 log entry).
fn from_certificate_der(der: &[u8]) -> Result<Identifiers, Error> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| x509_err("Certificate", e))?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            "Certificate",
            der.len() - rest.len(),
            "trailing bytes",
        ));
    }
    from_parsed_tbs(&cert.tbs_certificate)
}

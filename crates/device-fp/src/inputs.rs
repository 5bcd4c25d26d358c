//! Fingerprint inputs read from a [`RequestContext`] or (feature `http`) an
//! `http::HeaderMap`: User-Agent (parsed with uap-core's regexes, see [`UserAgent`]),
//! `Sec-CH-UA*` client hints, `Accept-Language`, `Accept-Encoding`, the order of header
//! names, the JA4 string and client-reported device info. Everything is optional;
//! unusable values are dropped and noted in `problems`. Both readers share one code
//! path, so the same request read either way gives the same inputs.

use std::net::IpAddr;

use palisade_core_traits::{ClientDeviceInfo, RequestContext, canonical_ip};

use crate::ja4::Ja4;
use crate::limits::{MAX_HEADER_VALUE, MAX_HEADERS};
use crate::ua::UserAgent;

/// Parsed `Sec-CH-UA*` client hints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHints {
    /// `Sec-CH-UA` brands and major versions, GREASE-like "Not…Brand" entries removed.
    pub brands: Vec<(String, String)>,
    /// `Sec-CH-UA-Mobile` (`?1` → true).
    pub mobile: Option<bool>,
    /// `Sec-CH-UA-Platform` without quotes (`Windows`, `macOS`, `Android`).
    pub platform: Option<String>,
    /// `Sec-CH-UA-Platform-Version` without quotes.
    pub platform_version: Option<String>,
}

impl ClientHints {
    /// The major version a brand claims, e.g. `Google Chrome`.
    pub fn brand_major(&self, brand: &str) -> Option<u32> {
        self.brands
            .iter()
            .find(|(b, _)| b == brand)
            .and_then(|(_, v)| v.split('.').next()?.parse().ok())
    }
}

/// Parse a structured-header string item (`"Windows"`); `None` if malformed.
fn sf_string(v: &str) -> Option<String> {
    let v = v.trim();
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('"') || inner.contains('\\') {
        return None;
    }
    Some(inner.to_owned())
}

/// Parse `Sec-CH-UA`: `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`.
pub fn parse_sec_ch_ua(v: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for item in v.split(',') {
        let mut parts = item.split(';');
        let brand = sf_string(parts.next()?)?;
        let mut version = String::new();
        for p in parts {
            if let Some(val) = p.trim().strip_prefix("v=") {
                version = sf_string(val)?;
            }
        }
        // GREASE brands vary ("Not-A.Brand", "Not/A)Brand", " Not A;Brand")
        let grease = brand.contains("Not") && brand.contains("Brand");
        if !grease {
            out.push((brand, version));
        }
    }
    Some(out)
}

/// All fingerprint inputs of one request.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FingerprintInputs {
    /// The client address ([`canonical_ip`]), for events and logs about this request.
    /// Not a fingerprint attribute: a device keeps its identity across networks.
    pub client_ip: Option<IpAddr>,
    /// Parsed User-Agent.
    pub user_agent: Option<UserAgent>,
    /// Parsed client hints.
    pub client_hints: Option<ClientHints>,
    /// Language tags of `Accept-Language`, lowercased, in order, q-values dropped.
    pub accept_language: Vec<String>,
    /// Codings of `Accept-Encoding`, lowercased and sorted.
    pub accept_encoding: Vec<String>,
    /// Lowercased header names in the order received (at most [`MAX_HEADERS`]).
    pub header_order: Vec<String>,
    /// A validated JA4: from the TLS terminator's [`TlsInfo`](palisade_core_traits::TlsInfo)
    /// in a [`RequestContext`], or set from a live connection's
    /// `Ja4Stream::ja4` (feature `tls`).
    pub ja4: Option<Ja4>,
    /// Client-reported screen size.
    pub screen: Option<(u32, u32)>,
    /// Client-reported IANA time zone.
    pub timezone: Option<String>,
    /// Client-reported languages.
    pub languages: Vec<String>,
    /// Client-reported canvas hash.
    pub canvas_hash: Option<String>,
    /// Client-reported WebGL renderer.
    pub webgl_renderer: Option<String>,
    /// Inputs that were present but unusable (name of the input, why).
    pub problems: Vec<(&'static str, &'static str)>,
}

fn small(v: Option<&str>) -> Option<&str> {
    v.filter(|v| v.len() <= MAX_HEADER_VALUE)
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .filter_map(|i| {
            let t = i.split(';').next()?.trim().to_ascii_lowercase();
            (!t.is_empty() && t.len() <= 64).then_some(t)
        })
        .take(32)
        .collect()
}

impl FingerprintInputs {
    /// Read every input from a request. Never fails: bad values are dropped and noted.
    pub fn from_request(ctx: &RequestContext) -> Self {
        let headers = || ctx.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        let mut f = Self::read_headers(headers, ctx.peer_ip);
        if let Some(j) = ctx.tls.as_ref().and_then(|t| t.ja4.as_ref()) {
            f.ja4 = Ja4::parse(j).ok();
            if f.ja4.is_none() {
                f.problems.push(("ja4", "not a JA4 string"));
            }
        }
        if let Some(d) = &ctx.device {
            f.read_device(d);
        }
        f
    }

    /// Read every header input from an `http::HeaderMap` and the client address (e.g.
    /// from [`TrustedProxies::client_ip`](palisade_core_traits::TrustedProxies::client_ip)),
    /// with the rules of [`FingerprintInputs::from_request`]: names compared
    /// case-insensitively, values over [`MAX_HEADER_VALUE`] bytes ignored, at most
    /// [`MAX_HEADERS`] names in the header order. A value that is not UTF-8 is dropped
    /// and noted (`("header", "value not UTF-8")`), never a panic.
    ///
    /// Header order: a `HeaderMap` keeps the first appearance of each name in
    /// insertion order (what hyper received) and groups repeated names together; a
    /// request with no repeated header gives the same order, and so the same
    /// fingerprint, as [`FingerprintInputs::from_request`].
    ///
    /// The JA4 is not a header: set [`FingerprintInputs::ja4`] from the connection
    /// (`Ja4Stream::ja4`, feature `tls`).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn from_headers(headers: &http::HeaderMap, client_ip: IpAddr) -> Self {
        let headers = || headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
        Self::read_headers(headers, client_ip)
    }

    /// The one header reader behind both constructors; `headers()` walks the
    /// headers (name, raw value) in the order received.
    fn read_headers<'a, I>(headers: impl Fn() -> I, client_ip: IpAddr) -> Self
    where
        I: Iterator<Item = (&'a str, &'a [u8])>,
    {
        let mut f = FingerprintInputs {
            client_ip: Some(canonical_ip(client_ip)),
            ..Default::default()
        };
        for (name, value) in headers() {
            if value.len() > MAX_HEADER_VALUE {
                f.problems.push(("header", "value too long"));
            } else if std::str::from_utf8(value).is_err() {
                f.problems.push(("header", "value not UTF-8"));
            }
            if f.header_order.len() < MAX_HEADERS {
                f.header_order.push(name.to_ascii_lowercase());
            }
        }
        // The first header of that name; a value that is not UTF-8 counts as absent
        // (the loop above noted it).
        let header = |name: &str| {
            let (_, v) = headers().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
            std::str::from_utf8(v).ok()
        };
        let problem = |f: &mut FingerprintInputs, what, why| f.problems.push((what, why));
        if let Some(ua) = header("user-agent") {
            f.user_agent = UserAgent::parse(ua);
            if f.user_agent.is_none() {
                problem(&mut f, "user-agent", "empty or too long");
            }
        }
        let ch_ua = small(header("sec-ch-ua"));
        let ch_mobile = small(header("sec-ch-ua-mobile"));
        let ch_platform = small(header("sec-ch-ua-platform"));
        if ch_ua.is_some() || ch_mobile.is_some() || ch_platform.is_some() {
            let mut ch = ClientHints::default();
            if let Some(v) = ch_ua {
                match parse_sec_ch_ua(v) {
                    Some(b) => ch.brands = b,
                    None => problem(&mut f, "sec-ch-ua", "not a structured brand list"),
                }
            }
            ch.mobile = match ch_mobile.map(str::trim) {
                Some("?1") => Some(true),
                Some("?0") => Some(false),
                None => None,
                Some(_) => {
                    problem(&mut f, "sec-ch-ua-mobile", "not ?0 or ?1");
                    None
                }
            };
            if let Some(v) = ch_platform {
                ch.platform = sf_string(v);
                if ch.platform.is_none() {
                    problem(&mut f, "sec-ch-ua-platform", "not a quoted string");
                }
            }
            ch.platform_version = small(header("sec-ch-ua-platform-version")).and_then(sf_string);
            f.client_hints = Some(ch);
        }
        if let Some(v) = small(header("accept-language")) {
            f.accept_language = list(v);
        }
        if let Some(v) = small(header("accept-encoding")) {
            f.accept_encoding = list(v);
            f.accept_encoding.sort();
            f.accept_encoding.dedup();
        }
        f
    }

    fn read_device(&mut self, d: &ClientDeviceInfo) {
        self.screen = d
            .screen
            .filter(|&(w, h)| (1..=16_384).contains(&w) && (1..=16_384).contains(&h));
        if d.screen.is_some() && self.screen.is_none() {
            self.problems.push(("screen", "outside 1..=16384"));
        }
        let short = |s: &Option<String>| s.clone().filter(|s| !s.is_empty() && s.len() <= 256);
        self.timezone = short(&d.timezone);
        self.canvas_hash = short(&d.canvas_hash);
        self.webgl_renderer = short(&d.webgl_renderer);
        self.languages = d
            .languages
            .iter()
            .filter(|l| l.len() <= 64)
            .take(32)
            .map(|l| l.to_ascii_lowercase())
            .collect();
    }
}

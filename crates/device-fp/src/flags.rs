//! Consistency flags: contradictions that attackers' tooling tends to leave.

use std::fmt;

use crate::inputs::FingerprintInputs;

/// A named contradiction in one request's fingerprint inputs. See `docs/device-fp.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConsistencyFlag {
    /// The User-Agent's OS and `Sec-CH-UA-Platform` name different platforms.
    UaPlatformVsClientHints,
    /// The User-Agent's browser major and its `Sec-CH-UA` brand version differ.
    UaVersionVsClientHints,
    /// The User-Agent's device category and `Sec-CH-UA-Mobile` disagree.
    UaMobileVsClientHints,
    /// `Sec-CH-UA*` sent with a Firefox, Safari or iOS User-Agent, which never send them.
    ClientHintsFromNonChromium,
    /// A headless browser User-Agent (HeadlessChrome, PhantomJS, …).
    HeadlessUa,
    /// An HTTP library, automation tool or crawler User-Agent (curl, python-requests, …).
    AutomationUa,
    /// A browser User-Agent over TLS a browser would not produce: JA4 without
    /// `h2`/`h3` ALPN, or below TLS 1.2.
    LibraryTlsBehindBrowserUa,
    /// A browser User-Agent without `Accept-Language`, which browsers always send.
    MissingAcceptLanguage,
    /// An input was present but unusable (malformed hints, invalid JA4, absurd screen).
    MalformedInput,
}

impl ConsistencyFlag {
    /// A stable snake_case name for logs and evidence.
    pub fn name(self) -> &'static str {
        use ConsistencyFlag::*;
        match self {
            UaPlatformVsClientHints => "ua_platform_vs_client_hints",
            UaVersionVsClientHints => "ua_version_vs_client_hints",
            UaMobileVsClientHints => "ua_mobile_vs_client_hints",
            ClientHintsFromNonChromium => "client_hints_from_non_chromium",
            HeadlessUa => "headless_ua",
            AutomationUa => "automation_ua",
            LibraryTlsBehindBrowserUa => "library_tls_behind_browser_ua",
            MissingAcceptLanguage => "missing_accept_language",
            MalformedInput => "malformed_input",
        }
    }
}

impl fmt::Display for ConsistencyFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const HEADLESS: [&str; 4] = ["headlesschrome", "phantomjs", "slimerjs", "electron"];
const AUTOMATION: [&str; 14] = [
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "okhttp",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "node-fetch",
    "axios/",
    "selenium",
    "puppeteer",
];

/// Every flag the inputs raise, in declaration order.
pub fn consistency_flags(
    inputs: &FingerprintInputs,
    raw_user_agent: Option<&str>,
) -> Vec<ConsistencyFlag> {
    use ConsistencyFlag::*;
    let mut flags = Vec::new();
    let ua = inputs.user_agent.as_ref();
    let browser = ua.is_some_and(|u| u.is_browser());
    if let (Some(u), Some(ch)) = (ua, inputs.client_hints.as_ref()) {
        if let Some(p) = &ch.platform {
            // uap-core OS families each client-hint platform may come with
            let expect: &[&str] = match p.as_str() {
                "Windows" => &["Windows"],
                "macOS" => &["Mac OS X"],
                "Android" => &["Android"],
                "iOS" => &["iOS"],
                "Chrome OS" | "ChromeOS" => &["Chrome OS"],
                "Linux" => &["Linux", "Ubuntu", "Debian", "Fedora", "Red Hat", "SUSE"],
                _ => &[],
            };
            if !expect.is_empty() && !expect.contains(&u.os.as_str()) && u.os != "Other" {
                flags.push(UaPlatformVsClientHints);
            }
        }
        let brand = match u.browser.as_str() {
            "Chrome" | "Chrome Mobile" => ch
                .brand_major("Google Chrome")
                .or(ch.brand_major("Chromium")),
            "Edge" | "Edge Mobile" => ch.brand_major("Microsoft Edge"),
            "Opera" | "Opera Mobile" => ch.brand_major("Opera"),
            _ => None,
        };
        if let (Some(b), Some(m)) = (brand, u.browser_major)
            && b != m
        {
            flags.push(UaVersionVsClientHints);
        }
        // `Sec-CH-UA-Mobile` is ?1 on phones only (tablets and desktops send ?0)
        if let Some(mobile) = ch.mobile
            && matches!(u.category.as_str(), "desktop" | "mobile" | "tablet")
            && mobile != (u.category == "mobile")
        {
            flags.push(UaMobileVsClientHints);
        }
        // Firefox, Safari and every iOS browser (WebKit) do not implement UA client hints
        if u.browser.starts_with("Firefox") || u.browser.ends_with("Safari") || u.os == "iOS" {
            flags.push(ClientHintsFromNonChromium);
        }
    }
    let lower = raw_user_agent
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if HEADLESS.iter().any(|h| lower.contains(h)) {
        flags.push(HeadlessUa);
    }
    if AUTOMATION.iter().any(|a| lower.contains(a)) || ua.is_some_and(|u| u.category == "crawler") {
        flags.push(AutomationUa);
    }
    if let (true, Some(j)) = (browser, &inputs.ja4)
        && (!matches!(j.alpn(), "h2" | "h3") || !matches!(j.version(), "12" | "13"))
    {
        flags.push(LibraryTlsBehindBrowserUa);
    }
    if browser && inputs.accept_language.is_empty() {
        flags.push(MissingAcceptLanguage);
    }
    if !inputs.problems.is_empty() {
        flags.push(MalformedInput);
    }
    if !flags.is_empty() {
        for f in &flags {
            crate::metrics::flag_raised(f.name());
        }
        // names of flags and of unusable inputs only: never a header value
        let names: Vec<&str> = flags.iter().map(|f| f.name()).collect();
        let problems: Vec<&str> = inputs.problems.iter().map(|p| p.0).collect();
        tracing::info!(
            client_ip = ?inputs.client_ip,
            flags = ?names,
            problems = ?problems,
            "device anomaly: consistency flags raised"
        );
    }
    flags
}

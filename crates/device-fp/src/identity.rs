//! Stable identity: attributes in tiers, stored as keyed hashes, and an
//! FP-STALKER-style rule matcher that recognises a device across browser updates.

use std::fmt;

use ring::hmac;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::inputs::FingerprintInputs;

/// How fast an attribute changes on one real device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tier {
    /// Changes only when the device changes: a mismatch means another device.
    Stable,
    /// Changes with updates and settings: a few mismatches are tolerated.
    Drifting,
    /// Changes all the time: never compared, not stored.
    Volatile,
}

/// The attributes a fingerprint is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Attribute {
    /// OS family from the User-Agent.
    OsFamily,
    /// Device category from the User-Agent (desktop, mobile, tablet, crawler, other).
    DeviceType,
    /// Device model from the User-Agent (uap-core device family: `iPhone`,
    /// `Samsung SM-G960F`, `Mac`, `Other`).
    DeviceModel,
    /// Browser family from the User-Agent.
    BrowserFamily,
    /// The User-Agent without version numbers and build ids (its products, platform,
    /// architecture and locale tokens), which updates leave unchanged.
    UaSkeleton,
    /// `Sec-CH-UA-Platform` and `Sec-CH-UA-Mobile`.
    Platform,
    /// Client-reported screen size.
    Screen,
    /// Client-reported time zone.
    Timezone,
    /// Client-reported WebGL renderer.
    WebglRenderer,
    /// JA4 TLS fingerprint.
    Ja4,
    /// Browser major version (matched with allowed successors, see [`MAX_MAJOR_STEP`]).
    BrowserMajor,
    /// OS version from the User-Agent.
    OsVersion,
    /// `Sec-CH-UA` brand names.
    ClientHintBrands,
    /// `Accept-Language`.
    AcceptLanguage,
    /// `Accept-Encoding`.
    AcceptEncoding,
    /// Order of header names.
    HeaderOrder,
    /// Client-reported languages.
    Languages,
    /// Client-reported canvas hash.
    CanvasHash,
    /// Full browser version (minor/build): volatile, never stored.
    BrowserBuild,
}

impl Attribute {
    /// Every attribute, in storage order.
    pub const ALL: [Attribute; 19] = [
        Attribute::OsFamily,
        Attribute::DeviceType,
        Attribute::DeviceModel,
        Attribute::BrowserFamily,
        Attribute::UaSkeleton,
        Attribute::Platform,
        Attribute::Screen,
        Attribute::Timezone,
        Attribute::WebglRenderer,
        Attribute::Ja4,
        Attribute::BrowserMajor,
        Attribute::OsVersion,
        Attribute::ClientHintBrands,
        Attribute::AcceptLanguage,
        Attribute::AcceptEncoding,
        Attribute::HeaderOrder,
        Attribute::Languages,
        Attribute::CanvasHash,
        Attribute::BrowserBuild,
    ];

    /// The attribute's tier.
    pub fn tier(self) -> Tier {
        use Attribute::*;
        match self {
            OsFamily | DeviceType | DeviceModel | BrowserFamily | UaSkeleton | Platform
            | Screen | Timezone | WebglRenderer | Ja4 => Tier::Stable,
            BrowserBuild => Tier::Volatile,
            _ => Tier::Drifting,
        }
    }

    fn name(self) -> &'static str {
        use Attribute::*;
        match self {
            OsFamily => "os",
            DeviceType => "device-type",
            DeviceModel => "device-model",
            BrowserFamily => "browser",
            Platform => "platform",
            Screen => "screen",
            Timezone => "timezone",
            WebglRenderer => "webgl",
            Ja4 => "ja4",
            BrowserMajor => "browser-major",
            OsVersion => "os-version",
            UaSkeleton => "ua-skeleton",
            ClientHintBrands => "ch-brands",
            AcceptLanguage => "accept-language",
            AcceptEncoding => "accept-encoding",
            HeaderOrder => "header-order",
            Languages => "languages",
            CanvasHash => "canvas",
            BrowserBuild => "browser-build",
        }
    }
}

/// How many major versions a browser may move up between two sightings and still be
/// recognised. A downgrade is never accepted.
pub const MAX_MAJOR_STEP: u32 = 2;
/// Drifting attributes that may differ (beyond the browser major) for a match.
pub const MAX_DRIFT: usize = 2;

const N: usize = Attribute::ALL.len();

/// The per-deployment secret for keyed attribute hashes (HMAC-SHA256).
///
/// Zeroized on drop; its `Debug` shows nothing of it.
pub struct FingerprintKey {
    key: hmac::Key,
    _bytes: Zeroizing<Vec<u8>>,
}

impl FingerprintKey {
    /// Minimum secret length.
    pub const MIN_LEN: usize = 32;

    /// A key from at least [`Self::MIN_LEN`] secret bytes.
    ///
    /// A fallible constructor rather than a builder: the key is one secret value,
    /// not a configured object. A short secret is `Error::InvalidConfig` with field
    /// `fingerprint_key` (the message gives its length, never its bytes).
    pub fn new(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < Self::MIN_LEN {
            return Err(Error::InvalidConfig {
                field: "fingerprint_key",
                reason: format!(
                    "must be at least {} bytes, got {}",
                    Self::MIN_LEN,
                    secret.len()
                ),
            });
        }
        Ok(FingerprintKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            _bytes: Zeroizing::new(secret.to_vec()),
        })
    }

    fn tag(&self, attr: Attribute, value: &str) -> u64 {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(attr.name().as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        let t = ctx.sign();
        let mut b = [0u8; 8];
        b.copy_from_slice(&t.as_ref()[..8]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(<redacted>)")
    }
}

/// A device fingerprint: one keyed 64-bit hash per present attribute, nothing raw.
///
/// The browser major is stored as the hashes of the accepted versions
/// (`major ..= major + MAX_MAJOR_STEP`), so matching needs no raw version either.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceFingerprint {
    tags: [Option<u64>; N],
    major_successors: [u64; MAX_MAJOR_STEP as usize + 1],
}

/// The matcher's verdict for a stored and an observed fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchResult {
    /// Same device by the rules.
    pub same_device: bool,
    /// Weighted share of compared attributes that agree, 0..=1 (stable weigh 3, drifting 1).
    pub similarity: f64,
    /// Attributes that differ, or that one side has and the other lacks.
    pub differing: Vec<Attribute>,
}

impl DeviceFingerprint {
    /// Fingerprint the inputs with the deployment key.
    pub fn compute(key: &FingerprintKey, inputs: &FingerprintInputs) -> Self {
        let mut raw: [Option<String>; N] = Default::default();
        let mut set = |a: Attribute, v: Option<String>| {
            if let Some(i) = Attribute::ALL.iter().position(|x| *x == a) {
                raw[i] = v.filter(|s| !s.is_empty());
            }
        };
        let ua = inputs.user_agent.as_ref();
        set(Attribute::OsFamily, ua.map(|u| u.os.clone()));
        set(Attribute::DeviceType, ua.map(|u| u.category.clone()));
        set(Attribute::DeviceModel, ua.map(|u| u.device.clone()));
        set(Attribute::BrowserFamily, ua.map(|u| u.browser.clone()));
        set(Attribute::OsVersion, ua.map(|u| u.os_version.clone()));
        set(Attribute::UaSkeleton, ua.map(|u| u.skeleton.clone()));
        set(
            Attribute::BrowserBuild,
            ua.map(|u| u.browser_version.clone()),
        );
        let ch = inputs.client_hints.as_ref();
        set(
            Attribute::Platform,
            ch.map(|c| format!("{:?}/{:?}", c.platform, c.mobile)),
        );
        set(
            Attribute::ClientHintBrands,
            ch.map(|c| {
                // brand names only: their versions move with every update (BrowserMajor covers it)
                let mut b: Vec<String> = c.brands.iter().map(|(n, _)| n.clone()).collect();
                b.sort();
                b.join(",")
            }),
        );
        set(
            Attribute::Screen,
            inputs.screen.map(|(w, h)| format!("{w}x{h}")),
        );
        set(Attribute::Timezone, inputs.timezone.clone());
        set(Attribute::WebglRenderer, inputs.webgl_renderer.clone());
        set(Attribute::Ja4, inputs.ja4.as_ref().map(|j| j.to_string()));
        set(
            Attribute::AcceptLanguage,
            Some(inputs.accept_language.join(",")),
        );
        set(
            Attribute::AcceptEncoding,
            Some(inputs.accept_encoding.join(",")),
        );
        set(Attribute::HeaderOrder, Some(inputs.header_order.join(",")));
        set(Attribute::Languages, Some(inputs.languages.join(",")));
        set(Attribute::CanvasHash, inputs.canvas_hash.clone());

        let mut tags = [None; N];
        for (i, a) in Attribute::ALL.iter().enumerate() {
            if a.tier() != Tier::Volatile {
                tags[i] = raw[i].as_deref().map(|v| key.tag(*a, v));
            }
        }
        let major = ua.and_then(|u| u.browser_major);
        let mut major_successors = [0; MAX_MAJOR_STEP as usize + 1];
        if let Some(m) = major {
            for (step, slot) in major_successors.iter_mut().enumerate() {
                *slot = key.tag(
                    Attribute::BrowserMajor,
                    &(m as u64 + step as u64).to_string(),
                );
            }
        }
        let bm = Attribute::ALL
            .iter()
            .position(|x| *x == Attribute::BrowserMajor)
            .unwrap_or(0);
        tags[bm] = major.map(|_| major_successors[0]);
        crate::metrics::fingerprint_computed();
        DeviceFingerprint {
            tags,
            major_successors,
        }
    }

    /// The keyed hash of one attribute, if it was present.
    pub fn tag(&self, attr: Attribute) -> Option<u64> {
        Attribute::ALL
            .iter()
            .position(|x| *x == attr)
            .and_then(|i| self.tags[i])
    }

    /// Is `observed` the device this (stored) fingerprint was taken from?
    ///
    /// Rules (FP-STALKER style, one update at a time):
    /// 1. at least one stable attribute is present on both sides, and none differs;
    /// 2. the browser major is the same or up to [`MAX_MAJOR_STEP`] higher;
    /// 3. an OS update does not coincide with a browser update;
    /// 4. at most [`MAX_DRIFT`] other drifting attributes differ.
    ///
    /// An attribute present on one side only differs (and lowers `similarity`): a
    /// sighting that leaves out what a device sent (client hints, JA4, client-reported
    /// values) is another device, so copying a User-Agent is not enough to be taken
    /// for it. The price: one device seen through two paths that send different
    /// attribute sets (a browser form and an API client) is two devices.
    pub fn matches(&self, observed: &DeviceFingerprint) -> MatchResult {
        let (mut agree, mut total) = (0u32, 0u32);
        let mut stable_common = 0;
        let mut stable_diff = 0;
        let mut drift_diff = 0;
        let mut os_changed = false;
        let mut major_ok = true;
        let mut major_changed = false;
        let mut differing = Vec::new();
        for (i, a) in Attribute::ALL.iter().enumerate() {
            // An attribute on one side only is a difference: leaving attributes out
            // must never make a sighting match a device that had them.
            let same = match (self.tags[i], observed.tags[i]) {
                (None, None) => continue,
                (Some(s), Some(o)) if *a == Attribute::BrowserMajor => {
                    major_changed = s != o;
                    self.major_successors.contains(&o)
                }
                (Some(s), Some(o)) => s == o,
                _ => false,
            };
            let w = if a.tier() == Tier::Stable { 3 } else { 1 };
            total += w;
            // an accepted browser update still lowers similarity and is reported
            if same && !(*a == Attribute::BrowserMajor && major_changed) {
                agree += w;
            } else {
                differing.push(*a);
            }
            match (a, a.tier(), same) {
                (_, Tier::Stable, true) => stable_common += 1,
                (_, Tier::Stable, false) => stable_diff += 1,
                (Attribute::BrowserMajor, _, false) => major_ok = false,
                (Attribute::OsVersion, _, false) => os_changed = true,
                (_, _, false) => drift_diff += 1,
                _ => {}
            }
        }
        // one update at a time: an OS update may not coincide with a browser update
        let ua_ok = !(major_changed && os_changed);
        let similarity = if total == 0 {
            0.0
        } else {
            f64::from(agree) / f64::from(total)
        };
        MatchResult {
            same_device: stable_common > 0
                && stable_diff == 0
                && major_ok
                && ua_ok
                && drift_diff <= MAX_DRIFT,
            similarity,
            differing,
        }
    }
}

//! What the scorer reads beside the request context: geo facts, device familiarity and
//! the behavioural features, given by the caller or asked of pluggable sources.

use std::fmt;
use std::net::IpAddr;

use palisade_core_traits::RequestContext;
use serde::{Deserialize, Serialize};

/// What a GeoIP/ASN database knows about an address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeoInfo {
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Latitude and longitude in degrees.
    pub location: Option<(f64, f64)>,
}

/// A GeoIP/ASN lookup. Must not panic; unknown addresses give an empty [`GeoInfo`].
pub trait GeoLookup: Send + Sync + fmt::Debug {
    /// Looks `ip` up.
    fn lookup(&self, ip: IpAddr) -> GeoInfo;
}

/// How well the service knows this device for this user, from any source (a device
/// fingerprint store, a long-lived cookie, a client certificate).
pub trait DeviceSignal: Send + Sync + fmt::Debug {
    /// 0 = never seen with this user, 1 = long-standing device; `None` = no opinion.
    /// `user` is the context's user id normalized (`normalize_user_id`).
    fn familiarity(&self, user: &str, ctx: &RequestContext) -> Option<f64>;
}

/// What a [`RequestContext`] does not carry, passed beside it; the default is none of
/// it (the scorer's [`GeoLookup`] and [`DeviceSignal`] are asked, the behavioural
/// signal is skipped).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Signals {
    /// Geo facts known by the caller; when `None` the scorer's [`GeoLookup`] is asked.
    pub geo: Option<GeoInfo>,
    /// Device familiarity known by the caller (0..1); when `None` the scorer's
    /// [`DeviceSignal`] is asked.
    pub device_familiarity: Option<f64>,
    /// Numeric request features for the behavioural (Half-Space Trees) signal, e.g.
    /// round-trip time, request size, seconds on the login form; always in the same
    /// order. Empty: the signal is skipped.
    pub numeric: Vec<f64>,
}

impl Signals {
    /// Sets the geo facts.
    pub fn with_geo(mut self, geo: GeoInfo) -> Self {
        self.geo = Some(geo);
        self
    }

    /// Sets the device familiarity.
    pub fn with_device_familiarity(mut self, familiarity: f64) -> Self {
        self.device_familiarity = Some(familiarity);
        self
    }

    /// Sets the numeric request features of the behavioural signal.
    pub fn with_numeric(mut self, features: impl Into<Vec<f64>>) -> Self {
        self.numeric = features.into();
        self
    }
}

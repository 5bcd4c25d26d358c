//! Server-side request forgery and secret URLs: the addresses a notifier never
//! connects to (checked when it is built and at every DNS resolution), and endpoints
//! that print without their path and query.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use palisade_core_traits::canonical_ip;
use reqwest::Url;

use crate::Error;

/// Host names that only ever mean a cloud provider's instance metadata service.
const METADATA_HOSTS: [&str; 5] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Whether a notifier must never connect to `ip`: link-local addresses (where cloud
/// metadata services live), the known metadata addresses outside that range, and the
/// unspecified address; IPv4 inside IPv4-mapped or NAT64 (64:ff9b::/96) addresses is
/// judged as IPv4.
pub(super) fn forbidden_destination(ip: IpAddr) -> bool {
    let v4_forbidden = |v4: Ipv4Addr| {
        v4.is_link_local()
            || v4.is_unspecified()
            || v4 == Ipv4Addr::new(100, 100, 100, 200) // Alibaba Cloud metadata
            || v4 == Ipv4Addr::new(168, 63, 129, 16) // Azure WireServer
    };
    match canonical_ip(ip) {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            (nat64 && v4_forbidden(Ipv4Addr::from(u128::from(v6) as u32)))
                || s[0] & 0xffc0 == 0xfe80 // link-local fe80::/10
                || v6.is_unspecified()
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS IMDS IPv6
        }
    }
}

/// The system resolver, minus the addresses a notifier must never reach: checked at
/// every resolution, so a name that later resolves to a metadata address (DNS
/// rebinding) is refused too.
pub(super) struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = (found.iter())
                .filter(|a| !forbidden_destination(a.ip()))
                .copied()
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(format!(
                    "{host} resolves only to link-local or cloud metadata addresses; refused"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An endpoint URL that prints without its path and query (they may hold a secret).
#[derive(Clone)]
pub(super) struct Endpoint {
    pub(super) url: Url,
    pub(super) shown: String,
}

impl Endpoint {
    pub(super) fn parse(url: &str) -> Result<Self, Error> {
        // The URL itself is secret: errors describe it, never echo it.
        let url = Url::parse(url)
            .map_err(|e| Error::config("endpoint", format!("not a valid URL ({e})")))?;
        let host = url
            .host_str()
            .ok_or_else(|| Error::config("endpoint", "the URL has no host"))?
            .to_owned();
        let literal = (host.trim_start_matches('[').trim_end_matches(']'))
            .parse::<IpAddr>()
            .ok();
        let bare = host.trim_end_matches('.').to_ascii_lowercase();
        if literal.is_some_and(forbidden_destination) || METADATA_HOSTS.contains(&bare.as_str()) {
            // Whatever the scheme: this is where cloud credentials are served.
            return Err(Error::config(
                "endpoint",
                format!("host {host} is a link-local or cloud metadata address; refused"),
            ));
        }
        let loopback =
            host == "localhost" || literal.is_some_and(|ip| canonical_ip(ip).is_loopback());
        match url.scheme() {
            "https" => {}
            // Plain HTTP would send the secret in clear: only for a local receiver.
            "http" if loopback => {}
            other => {
                return Err(Error::config(
                    "endpoint",
                    format!("{other}://{host}/… must use https (http only on loopback)"),
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::config(
                "endpoint",
                format!(
                    "{}://{host}/… must not carry credentials in the URL",
                    url.scheme()
                ),
            ));
        }
        let shown = match url.port() {
            Some(p) => format!("{}://{host}:{p}/…", url.scheme()),
            None => format!("{}://{host}/…", url.scheme()),
        };
        Ok(Endpoint { url, shown })
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

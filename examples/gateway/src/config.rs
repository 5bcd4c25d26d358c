//! Command line and environment. Every flag has an environment variable
//! (`PALISADE_*`), the contract the container and the Helm chart rely on
//! (docs/deploy.md). Secrets (the Redis URL may hold a password, the PKCS#11 PIN, the
//! webhook URL) are never printed: `Debug` redacts them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use palisade_core_traits::IpNetwork;

/// Palisade's reference auth service.
#[derive(Parser, Clone)]
#[command(name = "palisade-gateway", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "PALISADE_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// Redis URL (`redis://`, `rediss://`); repeat it to name every primary of a Redis
    /// Cluster. Without it, limits, revocations and shared state live in memory.
    #[arg(long = "redis", env = "PALISADE_REDIS_URL", value_delimiter = ',')]
    pub redis: Vec<String>,

    /// PEM file of the CA that signs the Redis servers' TLS certificates (own and peer
    /// regions), for a private CA; without it the system's roots verify `rediss://`
    /// servers. Every Redis URL (a server, each of a cluster's nodes, the peers') must
    /// then be `rediss://`.
    #[arg(long = "redis-ca", env = "PALISADE_REDIS_CA", requires = "redis")]
    pub redis_ca: Option<PathBuf>,

    /// Another region's gateway Redis, `NAME=REDIS_URL` (repeat it, or comma-separate
    /// in the environment): its revocations are relayed here and its keys verified and
    /// published here. Needs `--redis` (one server).
    #[arg(
        long = "peer-region",
        env = "PALISADE_PEER_REGIONS",
        value_delimiter = ',',
        requires = "redis",
        hide_env_values = true
    )]
    pub peer_regions: Vec<String>,

    /// PKCS#11 module to sign tokens with an HSM key (else a software key).
    #[arg(long, env = "PALISADE_PKCS11_MODULE", requires = "pkcs11_uri")]
    pub pkcs11_module: Option<PathBuf>,

    /// RFC 7512 URI of the token (`pkcs11:token=…`), without a PIN.
    #[arg(
        long = "pkcs11",
        env = "PALISADE_PKCS11_URI",
        requires = "pkcs11_module"
    )]
    pub pkcs11_uri: Option<String>,

    /// The token's user PIN.
    #[arg(long, env = "PALISADE_PKCS11_PIN", hide_env_values = true)]
    pub pkcs11_pin: Option<String>,

    /// The signing key ring's name (the HSM objects' label prefix, `[A-Za-z0-9._-]`).
    /// Instances that share one HSM token each need their own.
    #[arg(long, env = "PALISADE_KEY_NAME", default_value = "gateway")]
    pub key_name: String,

    /// Writable directory for state that survives a restart (key ring, playbook
    /// decisions, the audit log).
    #[arg(
        long,
        env = "PALISADE_STATE_DIR",
        default_value = "target/palisade-gateway"
    )]
    pub state_dir: PathBuf,

    /// Networks of the proxies in front of the gateway, trusted to report the client
    /// address in `X-Forwarded-For` (comma separated, e.g. `10.0.0.0/8`).
    #[arg(long, env = "PALISADE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNetwork>,

    /// Requests per second per client address (bursts of twice as many).
    #[arg(long, env = "PALISADE_IP_RATE", default_value = "30")]
    pub ip_rate: std::num::NonZeroU32,

    /// `/api` requests per second per token subject (bursts of twice as many).
    #[arg(long, env = "PALISADE_SUBJECT_RATE", default_value = "50")]
    pub subject_rate: std::num::NonZeroU32,

    /// Threat-intelligence deny lists: CIDR list files or CrowdSec decision-stream
    /// JSON documents (reloaded when they change).
    #[arg(long = "intel", env = "PALISADE_INTEL", value_delimiter = ',')]
    pub intel: Vec<PathBuf>,

    /// GeoIP2/GeoLite2 City database file. Without it, MaxMind's test database built
    /// into the binary (it locates only MaxMind's test addresses).
    #[arg(long, env = "PALISADE_GEOIP_CITY")]
    pub geoip_city: Option<PathBuf>,

    /// GeoLite2 ASN database file. Without it, MaxMind's test database built into the
    /// binary.
    #[arg(long, env = "PALISADE_GEOIP_ASN")]
    pub geoip_asn: Option<PathBuf>,

    /// Webhook that receives the playbooks' notifications (https).
    #[arg(long, env = "PALISADE_WEBHOOK_URL", hide_env_values = true)]
    pub webhook: Option<String>,

    /// This deployment's region (carried by events).
    #[arg(long, env = "PALISADE_REGION", default_value = "local")]
    pub region: String,

    /// The token issuer (`iss`) and the audience (`aud`) of issued tokens.
    #[arg(long, env = "PALISADE_ISSUER", default_value = "https://auth.example")]
    pub issuer: String,

    /// Serve TLS with this certificate chain (PEM); with `--tls-key`. JA4 is computed
    /// from each connection's ClientHello.
    #[arg(long, env = "PALISADE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The origin operators' browsers use (`https://auth.example.com`), when a proxy
    /// in front terminates TLS: the dashboard's WebSocket accepts only this `Origin`,
    /// and the session cookie is `Secure` when it is `https`. Without it the origin is
    /// `http://` + `Host` (`https://` with `--tls-cert`).
    #[arg(long, env = "PALISADE_PUBLIC_ORIGIN", value_parser = parse_origin)]
    pub public_origin: Option<String>,

    /// The private key of `--tls-cert` (PEM).
    #[arg(long, env = "PALISADE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often the signing key rotates (the previous key stays published for the
    /// longest token lifetime plus leeway), e.g. `24h`, `90m`.
    #[arg(long, env = "PALISADE_KEY_ROTATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub key_rotation: std::time::Duration,

    /// How long a shutdown waits for open requests before it closes them and saves
    /// the state anyway (within Kubernetes' grace period, after the preStop sleep).
    #[arg(long, env = "PALISADE_DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: std::time::Duration,

    /// Names to watch in Certificate Transparency (`.example.com` for a domain and its
    /// subdomains, `example.com` for one name); alerts join the incident bus.
    #[arg(long = "ct-watch", env = "PALISADE_CT_WATCH", value_delimiter = ',')]
    pub ct_watch: Vec<String>,

    /// A CT log list (v3 JSON, a file) whose usable logs are followed from their end.
    #[arg(long = "ct-log-list", env = "PALISADE_CT_LOG_LIST")]
    pub ct_log_list: Option<PathBuf>,

    /// Follow the two bundled offline CT test logs (real Navigli2025h2 entries served
    /// on loopback, RFC 6962 and static-ct); `--demo` turns this on.
    #[arg(long = "ct-test-logs")]
    pub ct_test_logs: bool,

    /// Run a bounded, seeded traffic and attack scenario beside real traffic, so the
    /// dashboard is alive on first start; it stops by itself.
    #[arg(long)]
    pub demo: bool,

    /// Log filter (`info`, `debug`, `palisade_gateway=debug,…`); logs are JSON lines.
    #[arg(long, env = "PALISADE_LOG", default_value = "info")]
    pub log: String,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |present: bool| if present { "<redacted>" } else { "none" };
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("redis", &format!("{} URL(s) <redacted>", self.redis.len()))
            .field(
                "peer_regions",
                &(self.peer_regions.iter())
                    .map(|p| crate::regions::spec_name(p))
                    .collect::<Vec<_>>(),
            )
            .field("pkcs11_module", &self.pkcs11_module)
            .field("pkcs11_uri", &self.pkcs11_uri)
            .field("pkcs11_pin", &redacted(self.pkcs11_pin.is_some()))
            .field("key_name", &self.key_name)
            .field("state_dir", &self.state_dir)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("intel", &self.intel)
            .field("webhook", &redacted(self.webhook.is_some()))
            .field("region", &self.region)
            .field("issuer", &self.issuer)
            .field("tls", &self.tls_cert.is_some())
            .field("public_origin", &self.public_origin)
            .field("ct_watch", &self.ct_watch)
            .field("ct_log_list", &self.ct_log_list)
            .field("ct_test_logs", &self.ct_test_logs)
            .field("demo", &self.demo)
            .finish()
    }
}

/// An origin as browsers send it: `http` or `https`, `://`, a host (a name, an IPv4
/// address or a bracketed IPv6 one) and maybe a port; nothing after. Serialised as
/// browsers do (RFC 6454 §6.2): lower case, no default port, IPv6 compressed.
fn parse_origin(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not scheme://host[:port] (no path, no trailing slash)");
    let lower = s.to_ascii_lowercase();
    let (scheme, authority, default_port) = if let Some(a) = lower.strip_prefix("https://") {
        ("https", a, 443)
    } else if let Some(a) = lower.strip_prefix("http://") {
        ("http", a, 80)
    } else {
        return Err("an origin starts with https:// or http://".into());
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        format!("[{}]", v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?)
    } else if !host.is_empty()
        && (host.bytes()).all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    {
        host.to_owned()
    } else {
        return Err(bad());
    };
    let port = match port.map(str::parse::<u16>) {
        None => None,
        Some(Ok(p)) if p == default_port => None,
        Some(Ok(p)) if p > 0 => Some(p),
        Some(_) => return Err(bad()),
    };
    Ok(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_secrets_never_print() {
        let c = Config::try_parse_from([
            "palisade-gateway",
            "--redis",
            "redis://:s3cret@10.0.0.5:6379/",
            "--pkcs11-module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--pkcs11",
            "pkcs11:token=jwt",
            "--pkcs11-pin",
            "s3cret-pin",
            "--trusted-proxies",
            "10.0.0.0/8,fd00::/8",
            "--webhook",
            "https://hooks.example/s3cret-path",
            "--peer-region",
            "us-east=redis://:s3cret@10.1.0.5:6379/",
        ])
        .unwrap();
        assert_eq!(c.peer_regions, ["us-east=redis://:s3cret@10.1.0.5:6379/"]);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.listen.port(), 7070);
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        // Bad input is a clear error naming the flag.
        let err = Config::try_parse_from(["palisade-gateway", "--trusted-proxies", "10.0.0.1/8"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--trusted-proxies"), "{err}");
        assert!(
            Config::try_parse_from(["palisade-gateway", "--pkcs11", "pkcs11:token=x"]).is_err()
        );
        // A peer region without this region's Redis has nothing to relay into.
        let err = Config::try_parse_from([
            "palisade-gateway",
            "--peer-region",
            "us=redis://:s3cret@10.1.0.5/",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--redis") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn public_origin_is_an_origin_and_nothing_more() {
        for (given, want) in [
            ("https://Auth.Example.com", "https://auth.example.com"),
            ("http://127.0.0.1:7070", "http://127.0.0.1:7070"),
            ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
            // What a browser sends: no default port, IPv6 compressed.
            ("https://auth.example.com:443", "https://auth.example.com"),
            ("http://auth.example.com:80", "http://auth.example.com"),
            ("http://auth.example.com:443", "http://auth.example.com:443"),
            ("https://[2001:DB8:0::1]", "https://[2001:db8::1]"),
        ] {
            assert_eq!(parse_origin(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "auth.example.com",
            "https://auth.example.com/",
            "https://auth.example.com/dashboard",
            "ftp://auth.example.com",
            "https://",
            "https://auth.example.com:0",
            "https://auth.example.com:99999",
            "https://user@auth.example.com",
            "https://[nonsense]",
            "https://auth example.com",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
        let err = Config::try_parse_from(["palisade-gateway", "--public-origin", "https://a/b"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--public-origin"), "{err}");
    }
}

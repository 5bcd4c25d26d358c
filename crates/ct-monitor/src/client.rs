//! HTTP clients for RFC 6962 logs and static-ct-api (tiled) logs (feature `http`).
//!
//! They only fetch and decode: nothing here is trusted until [`crate::LogVerifier`]
//! has checked it. Each client belongs to one log and makes one request at a time;
//! it waits [`ClientConfig::min_interval`] between requests, honours `429` with
//! `Retry-After` (delta-seconds; an HTTP date falls back to the backoff), and
//! retries 5xx answers, timeouts and connection errors a bounded number of times
//! with exponential backoff. Errors name the log and the URL.

use std::time::Duration;

use tokio::time::Instant;

use crate::entry::{TILE_WIDTH, decode_tile, parse_hash_tile};
use crate::error::Error;
use crate::merkle::{Hash, sha256};
use crate::responses::{self, RawEntry, tile_path};
use crate::sth::SignedTreeHead;

/// Largest response body read (a full data tile is well under 1 MiB).
pub const MAX_BODY: usize = 16 << 20;

/// How a client talks to one log.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Timeout of one request.
    pub timeout: Duration,
    /// Retries after the first attempt (5xx, 429, timeouts, connection errors).
    pub max_retries: u32,
    /// First backoff; doubled on each retry up to `max_backoff`.
    pub backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Least time between the starts of two requests to the log.
    pub min_interval: Duration,
    /// Longest `Retry-After` honoured; longer ones are cut to this.
    pub max_retry_after: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_retries: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            min_interval: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(600),
            user_agent: concat!("palisade-ct-monitor/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// GETs with per-log pacing and retries.
#[derive(Debug)]
struct Fetcher {
    http: reqwest::Client,
    log: String,
    config: ClientConfig,
    next_allowed: Instant,
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl Fetcher {
    fn new(log: &str, config: ClientConfig) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client for {log}: {e}")))?;
        Ok(Self {
            http,
            log: log.to_string(),
            config,
            next_allowed: Instant::now(),
        })
    }

    fn err(&self, url: &str, status: Option<u16>, reason: impl Into<String>) -> Error {
        Error::Http {
            log: self.log.clone(),
            url: url.to_string(),
            status,
            reason: reason.into(),
        }
    }

    /// The body of a 200 answer; `Ok(None)` for a 404 when `allow_404`.
    async fn get(&mut self, url: &str, allow_404: bool) -> Result<Option<Vec<u8>>, Error> {
        let mut attempt = 0u32;
        loop {
            tokio::time::sleep_until(self.next_allowed).await;
            self.next_allowed = Instant::now() + self.config.min_interval;
            let backoff = self
                .config
                .backoff
                .saturating_mul(1 << attempt.min(16))
                .min(self.config.max_backoff);
            let (wait, error) = match self.http.get(url).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        match self.read_body(url, resp).await {
                            Ok(body) => return Ok(Some(body)),
                            Err(e) => (backoff, e),
                        }
                    } else if status == reqwest::StatusCode::NOT_FOUND && allow_404 {
                        return Ok(None);
                    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after(resp.headers())
                            .unwrap_or(backoff)
                            .min(self.config.max_retry_after);
                        let e = self.err(
                            url,
                            Some(429),
                            format!("rate limited, retry after {wait:?}"),
                        );
                        (wait, e)
                    } else if status.is_server_error() {
                        (
                            backoff,
                            self.err(url, Some(status.as_u16()), status.to_string()),
                        )
                    } else {
                        return Err(self.err(url, Some(status.as_u16()), status.to_string()));
                    }
                }
                Err(e) => (backoff, self.err(url, None, e.to_string())),
            };
            if attempt >= self.config.max_retries {
                return Err(error);
            }
            attempt += 1;
            tracing::debug!(log = %self.log, %url, ?wait, %error, "retrying");
            self.next_allowed = self.next_allowed.max(Instant::now() + wait);
        }
    }

    async fn read_body(&self, url: &str, mut resp: reqwest::Response) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.err(url, Some(200), e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(self.err(url, Some(200), format!("body over {MAX_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn get_ok(&mut self, url: &str) -> Result<Vec<u8>, Error> {
        self.get(url, false)
            .await?
            .ok_or_else(|| self.err(url, Some(404), "not found"))
    }

    /// Attaches the log and URL to a decoding error.
    fn decode<T>(&self, url: &str, r: Result<T, Error>) -> Result<T, Error> {
        r.map_err(|e| self.err(url, Some(200), e.to_string()))
    }
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// A client for an RFC 6962 log (`<url>/ct/v1/...`).
#[derive(Debug)]
pub struct Rfc6962Client {
    f: Fetcher,
    base: String,
}

impl Rfc6962Client {
    /// A client for the log named `log` at `url` (the list's `url`).
    pub fn new(log: &str, url: &str, config: ClientConfig) -> Result<Self, Error> {
        Ok(Self {
            f: Fetcher::new(log, config)?,
            base: base(url),
        })
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/ct/v1/{endpoint}", self.base)
    }

    /// `get-sth`: the latest tree head, signature not yet verified.
    pub async fn get_sth(&mut self) -> Result<SignedTreeHead, Error> {
        let url = self.url("get-sth");
        let body = self.f.get_ok(&url).await?;
        self.f.decode(&url, SignedTreeHead::from_json(&body))
    }

    /// `get-sth-consistency` between sizes `first < second`.
    pub async fn get_sth_consistency(
        &mut self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, Error> {
        let url = self.url(&format!(
            "get-sth-consistency?first={first}&second={second}"
        ));
        let body = self.f.get_ok(&url).await?;
        self.f.decode(&url, responses::parse_consistency(&body))
    }

    /// `get-proof-by-hash`: the index of the leaf with `leaf_hash` and its audit path
    /// in the tree of `tree_size`.
    pub async fn get_proof_by_hash(
        &mut self,
        leaf_hash: &Hash,
        tree_size: u64,
    ) -> Result<(u64, Vec<Hash>), Error> {
        // base64 of a hash may hold '+' and '/', which must be escaped in a query.
        let h: String =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, leaf_hash)
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D");
        let url = self.url(&format!("get-proof-by-hash?hash={h}&tree_size={tree_size}"));
        let body = self.f.get_ok(&url).await?;
        self.f.decode(&url, responses::parse_proof_by_hash(&body))
    }

    /// `get-entries` for `[start, end]` (inclusive, as in RFC 6962). The log may
    /// return fewer entries than asked; the caller asks again for the rest.
    pub async fn get_entries(&mut self, start: u64, end: u64) -> Result<Vec<RawEntry>, Error> {
        let url = self.url(&format!("get-entries?start={start}&end={end}"));
        if end < start {
            return Err(self.f.err(&url, None, "end before start"));
        }
        let body = self.f.get_ok(&url).await?;
        self.f
            .decode(&url, responses::parse_get_entries(&body, end - start + 1))
    }

    /// `get-roots`: the accepted roots, DER.
    pub async fn get_roots(&mut self) -> Result<Vec<Vec<u8>>, Error> {
        let url = self.url("get-roots");
        let body = self.f.get_ok(&url).await?;
        self.f.decode(&url, responses::parse_get_roots(&body))
    }
}

/// A client for a static-ct-api log's monitoring prefix.
#[derive(Debug)]
pub struct StaticCtClient {
    f: Fetcher,
    base: String,
}

impl StaticCtClient {
    /// A client for the log named `log` with this monitoring prefix.
    pub fn new(log: &str, monitoring_url: &str, config: ClientConfig) -> Result<Self, Error> {
        Ok(Self {
            f: Fetcher::new(log, config)?,
            base: base(monitoring_url),
        })
    }

    /// The checkpoint (a signed note, verified by the caller).
    pub async fn checkpoint(&mut self) -> Result<Vec<u8>, Error> {
        let url = format!("{}/checkpoint", self.base);
        self.f.get_ok(&url).await
    }

    /// A tile of `width` entries, gunzipped. A partial tile (`width` < 256) can
    /// vanish once the full tile exists: a 404 for it is answered by fetching the
    /// full tile; the caller takes the prefix it needs.
    async fn tile(
        &mut self,
        level: Option<u8>,
        index: u64,
        width: usize,
    ) -> Result<Vec<u8>, Error> {
        let url = format!("{}/{}", self.base, tile_path(level, index, width));
        let body = match self.f.get(&url, width < TILE_WIDTH).await? {
            Some(b) => b,
            None => {
                let full = format!("{}/{}", self.base, tile_path(level, index, TILE_WIDTH));
                self.f.get_ok(&full).await?
            }
        };
        Ok(self.f.decode(&url, decode_tile(&body))?.into_owned())
    }

    /// The first `width` hashes of Merkle tile `index` at `level`.
    pub async fn hash_tile(
        &mut self,
        level: u8,
        index: u64,
        width: usize,
    ) -> Result<Vec<Hash>, Error> {
        let url = tile_path(Some(level), index, width);
        let bytes = self.tile(Some(level), index, width).await?;
        let mut hashes = self.f.decode(&url, parse_hash_tile(&bytes))?;
        if hashes.len() < width {
            return Err(self.f.err(
                &url,
                Some(200),
                format!("{} hashes, {width} needed", hashes.len()),
            ));
        }
        hashes.truncate(width);
        Ok(hashes)
    }

    /// Data tile `index` holding at least `width` entries (possibly more, when the
    /// partial tile had vanished); parse with [`crate::entry::parse_data_tile`].
    pub async fn data_tile(&mut self, index: u64, width: usize) -> Result<Vec<u8>, Error> {
        self.tile(None, index, width).await
    }

    /// An issuer certificate by its SHA-256 fingerprint, checked against it.
    pub async fn issuer(&mut self, fingerprint: &Hash) -> Result<Vec<u8>, Error> {
        let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        let url = format!("{}/issuer/{hex}", self.base);
        let body = self.f.get_ok(&url).await?;
        if sha256(&body) != *fingerprint {
            return Err(self
                .f
                .err(&url, Some(200), "body does not hash to the fingerprint"));
        }
        Ok(body)
    }
}

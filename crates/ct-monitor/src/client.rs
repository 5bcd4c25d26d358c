//! HTTP clients for RFC 6962 logs and static-ct-api (tiled) logs (feature `http`).
//!
//! They only fetch and decode: nothing here is trusted until [`crate::LogVerifier`]
//! has checked it. Each client belongs to one log and makes one request at a time;
//! it waits [`ClientConfig::min_interval`] between requests, honours `429` with
//! `Retry-After` (delay-seconds or an HTTP-date, RFC 9110 §10.2.3), and retries 5xx
//! answers, timeouts and connection errors a bounded number of times with
//! exponential backoff. Errors and traces name the log and the URL without its
//! credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_core_traits::{Clock, SystemClock};
use tracing::Instrument;

use crate::entry::{TILE_WIDTH, decode_hash_tile, decode_tile};
use crate::error::Error;
use crate::merkle::{Hash, sha256};
use crate::responses::{self, RawEntry, tile_path};
use crate::sth::SignedTreeHead;
use crate::telemetry::Counters;

/// Default largest response body read (a full data tile is well under 1 MiB).
const MAX_BODY: usize = 16 << 20;

/// How a client talks to one log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Timeout of one request (not zero).
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
    /// Largest response body read, in bytes (default 16 MiB, not zero); a larger one
    /// is [`Error::BodyTooLarge`].
    pub max_body: usize,
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
            max_body: MAX_BODY,
        }
    }
}

/// The wait a `Retry-After` value asks for (RFC 9110 §10.2.3): delay-seconds, or an
/// HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms) relative to
/// `now`, zero once it has passed. `None` for anything else.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A log's base URL, parsed, and the same without credentials for errors and traces.
fn base_url(url: &str) -> Result<(String, String), Error> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| Error::invalid_config("url", format!("not an absolute URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid_config(
            "url",
            format!("scheme {:?}, not http or https", parsed.scheme()),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::invalid_config(
            "url",
            "a log's base URL has no query or fragment",
        ));
    }
    let mut shown = parsed.clone();
    // Both setters only fail for URLs that cannot have credentials at all.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let trim = |u: &reqwest::Url| u.as_str().trim_end_matches('/').to_string();
    Ok((trim(&parsed), trim(&shown)))
}

/// GETs with per-log pacing and retries.
#[derive(Debug)]
struct Fetcher {
    http: reqwest::Client,
    log: String,
    /// The base URL requests go to, and the same without credentials or query.
    base: String,
    shown: String,
    config: ClientConfig,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    /// When the next request may start, on `clock.monotonic()`.
    next_allowed: Duration,
}

impl Fetcher {
    fn new(log: &str, url: &str, config: ClientConfig) -> Result<Self, Error> {
        let (base, shown) = base_url(url)?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| {
                Error::invalid_config("client_config", format!("HTTP client for {log}: {e}"))
            })?;
        Ok(Self {
            http,
            log: log.to_string(),
            base,
            shown,
            config,
            clock: Arc::new(SystemClock),
            counters: Arc::default(),
            next_allowed: Duration::ZERO,
        })
    }

    /// The URL of `path` (below the base) as shown in errors.
    fn shown(&self, path: &str) -> String {
        format!("{}/{path}", self.shown)
    }

    fn err(&self, path: &str, status: Option<u16>, reason: impl Into<String>) -> Error {
        Error::Http {
            log: self.log.clone(),
            url: self.shown(path),
            status,
            reason: reason.into(),
        }
    }

    /// The body of a 200 answer for `path` (below the base URL); `Ok(None)` for a
    /// 404 when `allow_404`.
    async fn get(&mut self, path: &str, allow_404: bool) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .get_encoded(path, allow_404)
            .await?
            .map(|(body, _)| body))
    }

    /// As [`Fetcher::get`], with whether the answer said `Content-Encoding: gzip`
    /// (reqwest is built without decompression, so the body is as sent).
    async fn get_encoded(
        &mut self,
        path: &str,
        allow_404: bool,
    ) -> Result<Option<(Vec<u8>, bool)>, Error> {
        let url = format!("{}/{path}", self.base);
        let mut attempt = 0u32;
        loop {
            let wait = self.next_allowed.saturating_sub(self.clock.monotonic());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            self.next_allowed = self
                .clock
                .monotonic()
                .saturating_add(self.config.min_interval);
            let backoff = self
                .config
                .backoff
                .saturating_mul(1 << attempt.min(16))
                .min(self.config.max_backoff);
            let span = tracing::debug_span!(
                "ct_request",
                log = %self.log,
                path = %path.split('?').next().unwrap_or_default(),
                attempt,
                status = tracing::field::Empty,
            );
            let sent = self.http.get(&url).send().instrument(span.clone()).await;
            let status = sent.as_ref().ok().map(|r| r.status().as_u16());
            if let Some(status) = status {
                span.record("status", status);
            }
            self.counters.request(&self.log, status);
            let (wait, error) = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let gzip = resp
                            .headers()
                            .get(reqwest::header::CONTENT_ENCODING)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
                        match self.read_body(path, resp).instrument(span).await {
                            Ok(body) => return Ok(Some((body, gzip))),
                            // The same request would get the same body again.
                            Err(e @ Error::BodyTooLarge { .. }) => return Err(e),
                            Err(e) => (backoff, e),
                        }
                    } else if status == reqwest::StatusCode::NOT_FOUND && allow_404 {
                        return Ok(None);
                    } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        let now = self.clock.now().to_system_time();
                        let wait = resp
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| retry_after(v, now))
                            .unwrap_or(backoff)
                            .min(self.config.max_retry_after);
                        let e = self.err(
                            path,
                            Some(429),
                            format!("rate limited, retry after {wait:?}"),
                        );
                        (wait, e)
                    } else if status.is_server_error() {
                        (
                            backoff,
                            self.err(path, Some(status.as_u16()), status.to_string()),
                        )
                    } else {
                        return Err(self.err(path, Some(status.as_u16()), status.to_string()));
                    }
                }
                // reqwest's error names the URL, credentials and all: only its kind.
                Err(e) => (backoff, self.err(path, None, transport_error(&e))),
            };
            if attempt >= self.config.max_retries {
                return Err(error);
            }
            attempt += 1;
            self.counters.retry(&self.log);
            tracing::debug!(log = %self.log, ?wait, %error, "retrying");
            self.next_allowed = self
                .next_allowed
                .max(self.clock.monotonic().saturating_add(wait));
        }
    }

    fn too_large(&self, path: &str) -> Error {
        Error::BodyTooLarge {
            log: self.log.clone(),
            url: self.shown(path),
            limit: self.config.max_body,
            entries: None,
            tile: None,
        }
    }

    async fn read_body(&self, path: &str, mut resp: reqwest::Response) -> Result<Vec<u8>, Error> {
        let limit = self.config.max_body;
        // A declared length over the limit is refused before reading it.
        if resp
            .content_length()
            .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(self.too_large(path));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.err(path, Some(200), transport_error(&e)))?
        {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(self.too_large(path));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn get_ok(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        self.get(path, false)
            .await?
            .ok_or_else(|| self.err(path, Some(404), "not found"))
    }

    /// Attaches the log and URL to a decoding error.
    fn decode<T>(&self, path: &str, r: Result<T, Error>) -> Result<T, Error> {
        r.map_err(|e| self.err(path, Some(200), e.to_string()))
    }
}

/// What went wrong on the wire, without the URL reqwest would print.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the body failed"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let source = std::error::Error::source(e).map(ToString::to_string);
    match source {
        Some(s) => format!("{kind}: {s}"),
        None => kind.to_string(),
    }
}

/// An over-large tile names the tile: there is no smaller request for it.
fn naming_tile(mut e: Error, path: &str) -> Error {
    if let Error::BodyTooLarge { tile, .. } = &mut e {
        *tile = Some(path.to_string());
    }
    e
}

/// A client for an RFC 6962 log (`<url>/ct/v1/...`).
#[derive(Debug)]
pub struct Rfc6962Client {
    f: Fetcher,
}

/// The setters both clients share.
macro_rules! client_setters {
    () => {
        /// The clock for pacing and retry waits (`monotonic`) and for `Retry-After`
        /// dates (`now`); default: the system clock.
        pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
            self.f.clock = clock;
            self
        }

        /// Counts into a monitor's counters.
        pub(crate) fn counters(mut self, counters: Arc<Counters>) -> Self {
            self.f.counters = counters;
            self
        }
    };
}

impl Rfc6962Client {
    /// A client for the log named `log` at `url` (the list's `url`). Fails with
    /// [`Error::InvalidConfig`] for a URL that is not absolute http(s).
    pub fn new(log: &str, url: &str, config: ClientConfig) -> Result<Self, Error> {
        Ok(Self {
            f: Fetcher::new(log, url, config)?,
        })
    }

    client_setters!();

    /// `get-sth`: the latest tree head, signature not yet verified.
    pub async fn get_sth(&mut self) -> Result<SignedTreeHead, Error> {
        let path = "ct/v1/get-sth";
        let body = self.f.get_ok(path).await?;
        self.f.decode(path, SignedTreeHead::from_json(&body))
    }

    /// `get-sth-consistency` between sizes `first < second`.
    pub async fn get_sth_consistency(
        &mut self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, Error> {
        let path = format!("ct/v1/get-sth-consistency?first={first}&second={second}");
        let body = self.f.get_ok(&path).await?;
        self.f.decode(&path, responses::parse_consistency(&body))
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
        let path = format!("ct/v1/get-proof-by-hash?hash={h}&tree_size={tree_size}");
        let body = self.f.get_ok(&path).await?;
        self.f.decode(&path, responses::parse_proof_by_hash(&body))
    }

    /// `get-entries` for `[start, end]` (inclusive, as in RFC 6962). The log may
    /// return fewer entries than asked; the caller asks again for the rest.
    /// `end < start`, or all 2^64 entries (`0..=u64::MAX`), is [`Error::Http`]
    /// without a status, before any request.
    pub async fn get_entries(&mut self, start: u64, end: u64) -> Result<Vec<RawEntry>, Error> {
        let path = format!("ct/v1/get-entries?start={start}&end={end}");
        if end < start {
            return Err(self.f.err(&path, None, "end before start"));
        }
        let Some(asked) = (end - start).checked_add(1) else {
            return Err(self
                .f
                .err(&path, None, "2^64 entries asked, more than a u64 counts"));
        };
        let span = tracing::debug_span!("ct_fetch_entries", log = %self.f.log, start, end);
        let body = self
            .f
            .get_ok(&path)
            .instrument(span)
            .await
            .map_err(|mut e| {
                if let Error::BodyTooLarge { entries, .. } = &mut e {
                    *entries = Some((start, end));
                }
                e
            })?;
        self.f
            .decode(&path, responses::parse_get_entries(&body, asked))
    }

    /// `get-roots`: the accepted roots, DER.
    pub async fn get_roots(&mut self) -> Result<Vec<Vec<u8>>, Error> {
        let path = "ct/v1/get-roots";
        let body = self.f.get_ok(path).await?;
        self.f.decode(path, responses::parse_get_roots(&body))
    }
}

/// A client for a static-ct-api log's monitoring prefix.
#[derive(Debug)]
pub struct StaticCtClient {
    f: Fetcher,
}

impl StaticCtClient {
    /// A client for the log named `log` with this monitoring prefix. Fails with
    /// [`Error::InvalidConfig`] for a URL that is not absolute http(s).
    pub fn new(log: &str, monitoring_url: &str, config: ClientConfig) -> Result<Self, Error> {
        Ok(Self {
            f: Fetcher::new(log, monitoring_url, config)?,
        })
    }

    client_setters!();

    /// The checkpoint (a signed note, verified by the caller).
    pub async fn checkpoint(&mut self) -> Result<Vec<u8>, Error> {
        self.f.get_ok("checkpoint").await
    }

    /// A tile of `width` entries as served, and whether it came with
    /// `Content-Encoding: gzip`. A partial tile (`width` < 256) can vanish once the
    /// full tile exists: a 404 for it is answered by fetching the full tile; the
    /// caller takes the prefix it needs.
    async fn tile(
        &mut self,
        level: Option<u8>,
        index: u64,
        width: usize,
    ) -> Result<(Vec<u8>, bool), Error> {
        let path = tile_path(level, index, width);
        let span = tracing::debug_span!("ct_fetch_tile", log = %self.f.log, tile = %path);
        let fetch = async {
            match self
                .f
                .get_encoded(&path, width < TILE_WIDTH)
                .await
                .map_err(|e| naming_tile(e, &path))?
            {
                Some(b) => Ok(b),
                None => {
                    let full = tile_path(level, index, TILE_WIDTH);
                    self.f
                        .get_encoded(&full, false)
                        .await
                        .map_err(|e| naming_tile(e, &full))?
                        .ok_or_else(|| self.f.err(&full, Some(404), "not found"))
                }
            }
        };
        fetch.instrument(span).await
    }

    /// The first `width` hashes of Merkle tile `index` at `level`.
    pub async fn hash_tile(
        &mut self,
        level: u8,
        index: u64,
        width: usize,
    ) -> Result<Vec<Hash>, Error> {
        let path = tile_path(Some(level), index, width);
        let (bytes, gzip) = self.tile(Some(level), index, width).await?;
        // Per tile kind: a hash tile's magic bytes are hash bytes, so only the
        // header says whether it is compressed.
        let mut hashes = self.f.decode(&path, decode_hash_tile(&bytes, gzip))?;
        if hashes.len() < width {
            return Err(self.f.err(
                &path,
                Some(200),
                format!("{} hashes, {width} needed", hashes.len()),
            ));
        }
        hashes.truncate(width);
        Ok(hashes)
    }

    /// Data tile `index` holding at least `width` entries (possibly more, when the
    /// partial tile had vanished); parse with [`crate::parse_data_tile`].
    pub async fn data_tile(&mut self, index: u64, width: usize) -> Result<Vec<u8>, Error> {
        let path = tile_path(None, index, width);
        let (body, _) = self.tile(None, index, width).await?;
        // A data tile starts with a timestamp, so its magic bytes decide: a tile
        // stored gzipped works with or without Content-Encoding.
        Ok(self.f.decode(&path, decode_tile(&body))?.into_owned())
    }

    /// An issuer certificate by its SHA-256 fingerprint, checked against it.
    pub async fn issuer(&mut self, fingerprint: &Hash) -> Result<Vec<u8>, Error> {
        let path = format!("issuer/{}", hex::encode(fingerprint));
        let body = self.f.get_ok(&path).await?;
        if sha256(&body) != *fingerprint {
            return Err(self
                .f
                .err(&path, Some(200), "body does not hash to the fingerprint"));
        }
        Ok(body)
    }

    /// Where errors about tile `path` point (for the monitor's tile checks).
    pub(crate) fn tile_error(&self, path: &str, reason: impl Into<String>) -> Error {
        self.f.err(path, Some(200), reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_delay_seconds_and_http_dates() {
        // 2015-10-21T07:28:00Z, RFC 9110's example date.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        // IMF-fixdate and the two obsolete forms a recipient must accept.
        for date in [
            "Wed, 21 Oct 2015 07:28:05 GMT",
            "Wednesday, 21-Oct-15 07:28:05 GMT",
            "Wed Oct 21 07:28:05 2015",
        ] {
            assert_eq!(
                retry_after(date, now),
                Some(Duration::from_secs(5)),
                "{date}"
            );
        }
        // A date that has passed asks for no wait.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Seconds too large for u64 saturate (the caller caps them).
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "+5", "1.5", "soon", "Wed, 21 Oct 2015 07:28:05"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn urls_shown_in_errors_carry_no_credentials() {
        let (base, shown) = base_url("https://user:secret@log.example/ct/").unwrap();
        assert_eq!(base, "https://user:secret@log.example/ct");
        assert_eq!(shown, "https://log.example/ct");
        let c = Rfc6962Client::new(
            "log",
            "https://user:secret@log.example/",
            ClientConfig::default(),
        )
        .unwrap();
        let e = c.f.err("ct/v1/get-sth", Some(500), "x").to_string();
        assert!(
            !e.contains("secret") && e.contains("https://log.example/ct/v1/get-sth"),
            "{e}"
        );
        for bad in [
            "log.example/ct",
            "ftp://log.example/",
            "",
            "https://log.example/?token=t",
        ] {
            assert!(matches!(
                Rfc6962Client::new("log", bad, ClientConfig::default()),
                Err(Error::InvalidConfig { field: "url", .. })
            ));
        }
    }
}

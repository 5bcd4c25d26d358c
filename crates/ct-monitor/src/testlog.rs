//! A loopback Certificate Transparency log for tests and demos (feature `test-log`,
//! never for production): a real Merkle tree over the 1,024 real entries of
//! Geomys' Navigli2025h2 log (vendored in the repository's
//! `crates/ct-monitor/tests/data`, ISC licence, and read from there when a log
//! starts: the published package does not carry them), with tree heads
//! signed by a P-256 key made with `ring` at start-up. It speaks RFC 6962
//! (`get-sth`, `get-sth-consistency`, `get-proof-by-hash`, `get-entries`,
//! `get-roots`) or static-ct-api (checkpoint, Merkle tiles, gzip data tiles,
//! partial tiles that vanish once the full tile exists), and can be told to
//! misbehave: fork, rewrite history, roll its head back, serve bad proofs,
//! rate-limit with `429`, serve an entry too large for one `get-entries` answer.
//!
//! Its Merkle code (roots, PATH, SUBPROOF) is a naive recursive RFC 6962
//! implementation, written apart from the verifier it is used to test.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use palisade_core_traits::{Clock, SystemClock};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

use crate::checkpoint::rfc6962_key_id;
use crate::entry::{SignedEntry, TILE_WIDTH, TimestampedEntry, parse_data_tile};
use crate::error::Error;
use crate::merkle::{Hash, sha256};
use crate::responses::parse_tile_path;
use crate::sth::{DigitallySigned, LogKey, SignedTreeHead};

/// The vendored data, in the repository this crate was built from.
fn data(rel: &str) -> Result<Vec<u8>, Error> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    std::fs::read(&path).map_err(|e| {
        bad_setup(format!(
            "{}: {e} (the test log's data is in the repository, not in the package)",
            path.display()
        ))
    })
}

/// Entries the test log can serve.
pub const ENTRIES: u64 = 1024;

/// Which protocol a test log speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 6962 under `/ct/v1/`.
    Rfc6962,
    /// static-ct-api at the root of the server.
    StaticCt,
}

/// A `Retry-After` value (RFC 9110 §10.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `delay-seconds`.
    Seconds(u64),
    /// An `HTTP-date` (IMF-fixdate).
    Date(SystemTime),
}

/// Ways to make the log misbehave or be awkward.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Most entries per `get-entries` answer (0: no cap).
    pub max_entries: usize,
    /// Answer the next `n` requests with `429` and this `Retry-After`.
    pub rate_limit: Option<(u32, RetryAfter)>,
    /// Flip a bit in every inclusion proof (`get-proof-by-hash`).
    pub bad_inclusion_proofs: bool,
    /// Flip a bit in every consistency proof (`get-sth-consistency`).
    pub bad_consistency_proofs: bool,
    /// Make `get-entries` answers holding entry `.0` larger by `.1` bytes, as a
    /// huge precertificate would (an extra JSON field; the entry is unchanged).
    pub large_entry: Option<(u64, usize)>,
    /// Serve another entry (the one before it; entry 1 for entry 0) in place of
    /// this one, in `get-entries` and data tiles, while the tree, its heads and
    /// its proofs stay right: a CDN or replica serving a wrong object.
    pub wrong_entry: Option<u64>,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// Path and query.
    pub path: String,
    /// When the server saw it.
    pub at: Instant,
}

struct Entry {
    rfc_leaf_input: Vec<u8>,
    rfc_extra_data: Vec<u8>,
    tile_leaf: Vec<u8>,
    rfc_hash: Hash,
    tile_hash: Hash,
}

struct Inner {
    protocol: Protocol,
    root_der: Vec<u8>,
    signer: EcdsaKeyPair,
    key: LogKey,
    origin: String,
    entries: Vec<Entry>,
    /// The leaf hashes the tree is built from (one may be rewritten).
    leaves: Vec<Hash>,
    size: u64,
    tiles_size: u64,
    /// Stamps the heads (the system clock unless a test sets another).
    clock: Arc<dyn Clock>,
    head: SignedTreeHead,
    faults: Faults,
    requests: Vec<Request>,
}

/// A running loopback log. Dropping it stops the server.
pub struct TestLog {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestLog").field("addr", &self.addr).finish()
    }
}

impl Drop for TestLog {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn u24(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
}

fn encode_entry(e: &TimestampedEntry<'_>, extensions: &[u8]) -> Vec<u8> {
    let mut out = e.timestamp.to_be_bytes().to_vec();
    match e.entry {
        SignedEntry::X509 { certificate } => {
            out.extend_from_slice(&[0, 0]);
            u24(&mut out, certificate);
        }
        SignedEntry::Precert {
            issuer_key_hash,
            tbs_certificate,
        } => {
            out.extend_from_slice(&[0, 1]);
            out.extend_from_slice(&issuer_key_hash);
            u24(&mut out, tbs_certificate);
        }
    }
    out.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    out.extend_from_slice(extensions);
    out
}

fn leaf(timestamped_entry: &[u8]) -> Hash {
    let mut v = vec![0u8, 0, 0];
    v.extend_from_slice(timestamped_entry);
    sha256(&v)
}

fn node(l: &Hash, r: &Hash) -> Hash {
    let mut v = vec![1u8];
    v.extend_from_slice(l);
    v.extend_from_slice(r);
    sha256(&v)
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH (RFC 6962 §2.1).
fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]).
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = split(n);
    let (mut p, sibling) = if m < k {
        (path(m, &leaves[..k]), root(&leaves[k..]))
    } else {
        (path(m - k, &leaves[k..]), root(&leaves[..k]))
    };
    p.push(sibling);
    p
}

/// SUBPROOF(m, D[n], b).
fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { vec![] } else { vec![root(leaves)] };
    }
    let k = split(n);
    let (mut p, sibling) = if m <= k {
        (subproof(m, &leaves[..k], b), root(&leaves[k..]))
    } else {
        (subproof(m - k, &leaves[k..], false), root(&leaves[..k]))
    };
    p.push(sibling);
    p
}

fn flip(mut proof: Vec<Hash>) -> Vec<Hash> {
    if let Some(h) = proof.first_mut() {
        h[31] ^= 1;
    }
    proof
}

fn bad_setup(e: impl std::fmt::Display) -> Error {
    Error::invalid_config("testlog", e.to_string())
}

impl Inner {
    /// The entry served at `index` (see [`Faults::wrong_entry`]).
    fn served(&self, index: usize) -> &Entry {
        match self.faults.wrong_entry {
            Some(w) if w == index as u64 => &self.entries[index.checked_sub(1).unwrap_or(1)],
            _ => &self.entries[index],
        }
    }

    fn sign(&mut self) -> Result<(), Error> {
        self.sign_size(self.size)
    }

    /// Signs a head of the first `size` leaves, whatever `self.size` serves.
    fn sign_size(&mut self, size: u64) -> Result<(), Error> {
        let mut sth = SignedTreeHead {
            tree_size: size,
            // Milliseconds, as RFC 6962 stamps heads; taken as is, so a test can
            // make the log stamp a head in the past or the future.
            timestamp: self.clock.now().as_unix_micros() / 1_000,
            root_hash: root(&self.leaves[..size as usize]),
            signature: DigitallySigned {
                hash_algorithm: 4,
                signature_algorithm: 3,
                signature: vec![],
            },
        };
        let sig = self
            .signer
            .sign(&SystemRandom::new(), &sth.signed_input())
            .map_err(bad_setup)?;
        sth.signature.signature = sig.as_ref().to_vec();
        self.head = sth;
        Ok(())
    }

    fn checkpoint(&self) -> String {
        let h = &self.head;
        let mut sig = rfc6962_key_id(&self.origin, self.key.log_id()).to_vec();
        sig.extend_from_slice(&h.timestamp.to_be_bytes());
        sig.extend_from_slice(&h.signature.to_tls());
        format!(
            "{}\n{}\n{}\n\n\u{2014} {} {}\n",
            self.origin,
            h.tree_size,
            STANDARD.encode(h.root_hash),
            self.origin,
            STANDARD.encode(sig)
        )
    }
}

fn json(body: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn status(code: StatusCode, why: &str) -> Response {
    (code, why.to_string()).into_response()
}

fn query(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            v.replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "=")
                .replace("%2b", "+")
                .replace("%2f", "/")
                .replace("%3d", "=")
        })
    })
}

fn num(uri: &Uri, name: &str) -> Option<u64> {
    query(uri, name)?.parse().ok()
}

fn b64_list(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, uri: Uri) -> Response {
    let mut st = lock(&inner);
    st.requests.push(Request {
        path: uri.to_string(),
        at: Instant::now(),
    });
    if let Some((n, after)) = st.faults.rate_limit
        && n > 0
    {
        st.faults.rate_limit = Some((n - 1, after));
        let value = match after {
            RetryAfter::Seconds(secs) => secs.to_string(),
            RetryAfter::Date(at) => httpdate::fmt_http_date(at),
        };
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, value)],
            "slow down",
        )
            .into_response();
    }
    match st.protocol {
        Protocol::Rfc6962 => rfc6962(&st, &uri),
        Protocol::StaticCt => static_ct(&st, uri.path()),
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn rfc6962(st: &Inner, uri: &Uri) -> Response {
    let size = st.size as usize;
    let leaves = &st.leaves[..size];
    match uri.path() {
        "/ct/v1/get-sth" => json(serde_json::json!({
            "tree_size": st.head.tree_size,
            "timestamp": st.head.timestamp,
            "sha256_root_hash": STANDARD.encode(st.head.root_hash),
            "tree_head_signature": STANDARD.encode(st.head.signature.to_tls()),
        })),
        "/ct/v1/get-sth-consistency" => {
            let (Some(first), Some(second)) = (num(uri, "first"), num(uri, "second")) else {
                return status(StatusCode::BAD_REQUEST, "first and second");
            };
            if first == 0 || first > second || second > st.size {
                return status(StatusCode::BAD_REQUEST, "sizes out of range");
            }
            let mut proof = subproof(first as usize, &st.leaves[..second as usize], true);
            if st.faults.bad_consistency_proofs {
                proof = flip(proof);
            }
            json(serde_json::json!({ "consistency": b64_list(&proof) }))
        }
        "/ct/v1/get-proof-by-hash" => {
            let hash = query(uri, "hash").and_then(|h| STANDARD.decode(h).ok());
            let (Some(hash), Some(tree_size)) = (hash, num(uri, "tree_size")) else {
                return status(StatusCode::BAD_REQUEST, "hash and tree_size");
            };
            if tree_size > st.size {
                return status(StatusCode::BAD_REQUEST, "tree_size beyond the tree");
            }
            let in_tree = &leaves[..tree_size as usize];
            let Some(index) = in_tree.iter().position(|l| l[..] == hash[..]) else {
                return status(StatusCode::NOT_FOUND, "no such leaf");
            };
            let mut proof = path(index, in_tree);
            if st.faults.bad_inclusion_proofs {
                proof = flip(proof);
            }
            json(serde_json::json!({ "leaf_index": index, "audit_path": b64_list(&proof) }))
        }
        "/ct/v1/get-entries" => {
            let (Some(start), Some(end)) = (num(uri, "start"), num(uri, "end")) else {
                return status(StatusCode::BAD_REQUEST, "start and end");
            };
            if start > end || start >= st.size {
                return status(StatusCode::BAD_REQUEST, "range out of the tree");
            }
            let mut end = end.min(st.size - 1);
            if st.faults.max_entries > 0 {
                end = end.min(start + st.faults.max_entries as u64 - 1);
            }
            let entries: Vec<serde_json::Value> = (start..=end)
                .map(|index| {
                    let e = st.served(index as usize);
                    let mut entry = serde_json::json!({
                        "leaf_input": STANDARD.encode(&e.rfc_leaf_input),
                        "extra_data": STANDARD.encode(&e.rfc_extra_data),
                    });
                    if let Some((large, bytes)) = st.faults.large_entry
                        && large == index
                    {
                        entry["padding"] = "A".repeat(bytes).into();
                    }
                    entry
                })
                .collect();
            json(serde_json::json!({ "entries": entries }))
        }
        "/ct/v1/get-roots" => {
            json(serde_json::json!({ "certificates": [STANDARD.encode(&st.root_der)] }))
        }
        _ => status(StatusCode::NOT_FOUND, "unknown endpoint"),
    }
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).unwrap_or_default()
}

fn static_ct(st: &Inner, path: &str) -> Response {
    if path == "/checkpoint" {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            st.checkpoint(),
        )
            .into_response();
    }
    if let Some(fingerprint) = path.strip_prefix("/issuer/") {
        // The one issuer certificate vendored (the Navigli issuers are not).
        return if fingerprint == hex::encode(sha256(&st.root_der)) {
            (StatusCode::OK, st.root_der.clone()).into_response()
        } else {
            status(StatusCode::NOT_FOUND, "no such issuer")
        };
    }
    let Some((level, index, width)) = path.strip_prefix('/').and_then(parse_tile_path) else {
        return status(StatusCode::NOT_FOUND, "unknown path");
    };
    let shift = 8 * u32::from(level.unwrap_or(0));
    let count = st.tiles_size.checked_shr(shift).unwrap_or(0);
    let start = index * TILE_WIDTH as u64;
    // Full tiles once complete; a partial tile only at its current width, so an
    // older partial tile has vanished.
    let served = if width == TILE_WIDTH {
        count >= start + TILE_WIDTH as u64
    } else {
        count == start + width as u64
    };
    if !served {
        return status(StatusCode::NOT_FOUND, "no such tile");
    }
    let (s, e) = (start as usize, start as usize + width);
    match level {
        None => {
            let mut raw = Vec::new();
            for i in s..e {
                raw.extend_from_slice(&st.served(i).tile_leaf);
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let body = gz
                .write_all(&raw)
                .and_then(|()| gz.finish())
                .unwrap_or_default();
            (StatusCode::OK, [(header::CONTENT_ENCODING, "gzip")], body).into_response()
        }
        Some(0) => {
            let body: Vec<u8> = st.leaves[s..e].concat();
            (StatusCode::OK, body).into_response()
        }
        Some(l) => {
            let span = 1usize << (8 * u32::from(l));
            let body: Vec<u8> = (s..e)
                .flat_map(|i| root(&st.leaves[i * span..(i + 1) * span]))
                .collect();
            (StatusCode::OK, body).into_response()
        }
    }
}

impl TestLog {
    /// Starts a log on `127.0.0.1` with its first `size` entries published.
    pub async fn start(protocol: Protocol, size: u64) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(bad_setup)?;
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
                .map_err(bad_setup)?;
        // SubjectPublicKeyInfo prefix for id-ecPublicKey / prime256v1, then the point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(signer.public_key().as_ref());
        let key = LogKey::from_spki_der(&spki)?;
        let root_der = pem_body(&String::from_utf8_lossy(&data("testlog/ca-cert.pem")?));
        let mut tiles = Vec::new();
        for n in ["000", "001", "002", "003"] {
            tiles.push(data(&format!("static-ct/navigli2025h2/tile/data/{n}"))?);
        }
        let mut entries = Vec::new();
        for tile in &tiles {
            for l in parse_data_tile(tile)? {
                let tile_entry = encode_entry(&l.entry, l.entry.extensions);
                let rfc_entry = encode_entry(&l.entry, &[]);
                let mut tile_leaf = tile_entry.clone();
                if let Some(pre) = l.pre_certificate {
                    u24(&mut tile_leaf, pre);
                }
                let fps: Vec<u8> = l.chain_fingerprints.concat();
                tile_leaf.extend_from_slice(&(fps.len() as u16).to_be_bytes());
                tile_leaf.extend_from_slice(&fps);
                let mut extra = Vec::new();
                if let Some(pre) = l.pre_certificate {
                    u24(&mut extra, pre);
                }
                extra.extend_from_slice(&[0, 0, 0]); // empty chain: no issuer certs vendored
                entries.push(Entry {
                    rfc_hash: leaf(&rfc_entry),
                    tile_hash: leaf(&tile_entry),
                    rfc_leaf_input: [&[0u8, 0][..], &rfc_entry].concat(),
                    rfc_extra_data: extra,
                    tile_leaf,
                });
            }
        }
        let leaves = entries
            .iter()
            .map(|e| match protocol {
                Protocol::Rfc6962 => e.rfc_hash,
                Protocol::StaticCt => e.tile_hash,
            })
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(bad_setup)?;
        let addr = listener.local_addr().map_err(bad_setup)?;
        let mut inner = Inner {
            protocol,
            root_der,
            signer,
            key,
            origin: format!("127.0.0.1:{}/testlog", addr.port()),
            entries,
            leaves,
            size: size.min(ENTRIES),
            tiles_size: size.min(ENTRIES),
            clock: Arc::new(SystemClock),
            head: SignedTreeHead {
                tree_size: 0,
                timestamp: 0,
                root_hash: [0; 32],
                signature: DigitallySigned {
                    hash_algorithm: 4,
                    signature_algorithm: 3,
                    signature: vec![],
                },
            },
            faults: Faults::default(),
            requests: Vec::new(),
        };
        inner.sign()?;
        let inner = Arc::new(Mutex::new(inner));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            inner,
            addr,
            server,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// The base URL: the RFC 6962 `url`, or the static-ct monitoring prefix.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The checkpoint origin (static-ct).
    pub fn origin(&self) -> String {
        self.lock().origin.clone()
    }

    /// The log's public key.
    pub fn key(&self) -> LogKey {
        self.lock().key.clone()
    }

    /// The protocol it speaks.
    pub fn protocol(&self) -> Protocol {
        self.lock().protocol
    }

    /// How a monitor should be configured for it.
    #[cfg(feature = "http")]
    pub fn log_config(&self) -> crate::LogConfig {
        match self.protocol() {
            Protocol::Rfc6962 => crate::LogConfig::rfc6962(&self.url(), self.key()),
            Protocol::StaticCt => {
                crate::LogConfig::static_ct(&self.url(), &self.origin(), self.key())
            }
        }
    }

    /// Publishes the first `size` entries (tiles and tree head) with a fresh head.
    pub fn set_size(&self, size: u64) -> Result<(), Error> {
        let mut st = self.lock();
        st.size = size.min(ENTRIES);
        st.tiles_size = st.size;
        st.sign()
    }

    /// Signs and serves a head of the first `size` entries (at most the current
    /// size), stamped by the log's clock, while entries, proofs and tiles still
    /// cover the current tree: a log that went back to a smaller tree (its signer
    /// restored from an old snapshot) and can still prove the larger one.
    pub fn roll_back_head(&self, size: u64) -> Result<(), Error> {
        let mut st = self.lock();
        let size = size.min(st.size);
        st.sign_size(size)
    }

    /// The clock that stamps the heads signed from now on (by
    /// [`TestLog::set_size`]); the system clock by default. Its reading is used as
    /// is, so a clock behind or ahead of the monitor's makes old or future heads.
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        self.lock().clock = clock;
    }

    /// Publishes tiles for `size` entries while the checkpoint stays behind
    /// (partial tiles of the checkpoint's size have vanished).
    pub fn set_tiles_size(&self, size: u64) {
        let mut st = self.lock();
        st.tiles_size = size.min(ENTRIES).max(st.size);
    }

    /// Rewrites leaf `index` of the tree (not the served entry); the next
    /// [`TestLog::set_size`] signs it: at the same size that is a fork, at a larger
    /// one an inconsistent history.
    pub fn rewrite_leaf(&self, index: usize) {
        if let Some(h) = self.lock().leaves.get_mut(index) {
            h[0] ^= 0xff;
        }
    }

    /// Changes the faults.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// The served tree head.
    pub fn head(&self) -> SignedTreeHead {
        self.lock().head.clone()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }
}

//! Request de-duplication.
//!
//! - **`Idempotency-Key`** on unsafe methods (`POST`, `PATCH`), following the IETF
//!   httpapi draft (draft-ietf-httpapi-idempotency-key-header): the key is bound to the
//!   client's identity (its authenticated subject, or its address) and to a fingerprint
//!   of the request (method, path, body). The first request runs; a retry with the same
//!   key and payload while it runs gets `409 Conflict`, after it replays the stored
//!   response (marked `Idempotent-Replayed: true`); the same key with another payload
//!   gets `422 Unprocessable Content`. A `5xx` or a `429` is not stored: the client may
//!   retry; nor a `405` (a method the route does not have is no request of its); nor is any answer but a `2xx` to a client known only by its address:
//!   storing its refusals would let anyone fill the store with made-up keys and junk
//!   bodies. A deviation from the draft (which says errors SHOULD be replayed too):
//!   such a retry runs again (for `/login`, one more password check, counted against
//!   the account like the first). A keyed `/login` spends the account's limit before
//!   its record is compared or replayed (`http::keyed_login_gate`): the `422` or replay
//!   answer would otherwise tell a guesser who shares the client's address and key
//!   whether a password was the stored one, faster than the limit allows.
//! - **Single flight** for identical concurrent safe requests (`GET`, `HEAD`, same
//!   identity, method and URI): a request identical to one whose handler is waiting
//!   (it did not answer in its first poll) waits for that answer instead of running.
//!   A request answered at once is never joined, and pays for no flight: nobody
//!   could have waited for it with profit.
//!
//! Memory is bounded: request bodies up to [`Config::max_body`] (else `413`), stored
//! responses up to the same size (larger ones are returned but not stored, and the key
//! is released), at most [`Config::max_bytes`] of stored responses in all (the oldest
//! go first) and a time to live.
//!
//! **Where the records live** ([`Store`]): in this instance's memory, or in Redis
//! (`--redis`) so a retry that lands on another instance is answered the same. In
//! Redis a record is one key, `<prefix>:<sha256(identity, key)>` (one key per record:
//! a cluster routes each on its own), claimed by a Lua script (`GET`, else `SET … PX
//! lease`) and, once answered, overwritten with the response for the time to live,
//! only if the claim is still the one this request made. A claim is a lease of
//! [`Config::lease`], not renewed: if the instance dies mid-request, the key is free
//! again when the lease ends (until then retries get `409`). A handler that outruns
//! the lease could run twice; the gateway's handlers take milliseconds, the lease is
//! 30 s. Redis unreachable: a request with a key gets `503` (fail closed: a retry that
//! cannot be checked must not run twice); one that cannot store its answer returns it
//! and leaves the lease to expire. The total size bound is Redis's (`maxmemory`); the
//! time to live and the per-record size bound hold. Single flight of reads stays per
//! instance (a local optimisation: it saves work, it promises nothing).

use std::collections::{HashMap, VecDeque, hash_map};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, digest, hmac};

use crate::http::{Answer, BoxedAnswer};
use crate::shared::{RedisConn, millis};
use palisade_ratelimit::AuthenticatedSubject;
use palisade_token_blacklist::redis;

/// The header a client sends.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The header on a replayed response.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Who is asking: the authenticated subject, or the client address. Put into the
/// request's extensions by an earlier layer; requests without it are not de-duplicated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity(pub String);

impl ClientIdentity {
    /// An authenticated subject.
    pub fn subject(subject: &str) -> Self {
        let mut s = String::with_capacity(4 + subject.len());
        s.push_str("sub ");
        s.push_str(subject);
        ClientIdentity(s)
    }

    /// A client address (requests with no subject).
    pub fn address(ip: std::net::IpAddr) -> Self {
        ClientIdentity(format!("ip {ip}"))
    }

    /// Whether this is an authenticated subject (not an address).
    fn is_subject(&self) -> bool {
        self.0.starts_with("sub ")
    }

    /// The request's identity: its authenticated subject, else its client address.
    fn of(request: &Request) -> Option<Self> {
        let ext = request.extensions();
        (ext.get::<AuthenticatedSubject>()
            .map(|s| Self::subject(&s.0)))
        .or_else(|| {
            ext.get::<crate::http::RequestFacts>()
                .map(|f| Self::address(f.ip))
        })
    }
}

/// What the layer did with a request (reported to the dashboard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A stored response was replayed.
    Replay,
    /// `409`: the first request with this key is still running.
    Conflict,
    /// `422`: the key was used with another payload.
    Mismatch,
    /// A request waited for an identical one in flight and got its response.
    Coalesced,
}

impl Outcome {
    /// Its name, as the dashboard shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Replay => "replay",
            Outcome::Conflict => "conflict",
            Outcome::Mismatch => "mismatch",
            Outcome::Coalesced => "coalesced",
        }
    }
}

/// Limits.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Largest request body read (and response stored).
    pub max_body: usize,
    /// Stored responses in all, in bytes (in memory; in Redis its `maxmemory` bounds them).
    pub max_bytes: usize,
    /// How long a stored response is replayed.
    pub ttl: Duration,
    /// How long a running claim holds in Redis if its instance never answers.
    pub lease: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body: 64 * 1024,
            max_bytes: 16 * 1024 * 1024,
            ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
        }
    }
}

/// A response as stored: status, the headers worth replaying, body.
#[derive(Debug, Clone)]
struct Stored {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Stored {
    fn size(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>()
            + 128
    }

    fn response(&self) -> Response {
        let mut r = Response::new(Body::from(self.body.clone()));
        *r.status_mut() = self.status;
        for (n, v) in &self.headers {
            r.headers_mut().append(n.clone(), v.clone());
        }
        r
    }
}

#[derive(Debug)]
enum Entry {
    Running {
        fingerprint: [u8; 32],
    },
    Done {
        fingerprint: [u8; 32],
        stored: Stored,
        at: Instant,
    },
}

type KeyId = (ClientIdentity, String);
/// Identical safe requests: same identity, method and URI.
type FlightId = (ClientIdentity, Method, String);

/// A request in flight that identical ones may join.
#[derive(Debug, Default)]
struct Flight {
    /// Unset while the leader runs; then its response, or `None` if it could not be
    /// shared (too large, or the leader went away).
    done: std::sync::OnceLock<Option<Stored>>,
    /// Wakes the followers once `done` is set.
    landed: tokio::sync::Notify,
}

impl Flight {
    fn land(&self, result: Option<Stored>) {
        let _ = self.done.set(result);
        self.landed.notify_waiters();
    }
}

#[derive(Debug, Default)]
struct Tables {
    keys: HashMap<KeyId, Entry>,
    /// Stored keys, oldest first, with their size.
    order: VecDeque<(KeyId, usize)>,
    bytes: usize,
    flights: HashMap<FlightId, Arc<Flight>>,
}

/// Hears what the layer did, and for whom.
type Report = dyn Fn(Outcome, &ClientIdentity) + Send + Sync;

/// Where `Idempotency-Key` records live.
pub enum Store {
    /// This instance's memory.
    Memory,
    /// Redis, shared by every instance on it: one key per record under `prefix`.
    Redis {
        /// The connection (a server or a cluster).
        conn: RedisConn,
        /// Key prefix, e.g. `palisade:gateway:idem`.
        prefix: String,
    },
}

/// What a key's record says to a new request.
enum Claim {
    /// Nothing was there: this request runs (it holds the claim).
    Mine(Held),
    /// Used with another payload.
    Mismatch,
    /// The first request is still running.
    Running,
    /// Answered: replay this.
    Done(Stored),
}

/// A claim this request holds until it stores its answer or lets go.
enum Held {
    Memory(KeyId),
    /// The Redis key and the claim's value there (stored over only if unchanged).
    Redis {
        key: String,
        claim: String,
        /// Seals the stored response ([`record_key`]).
        seal: [u8; 32],
    },
}

/// Stores the response (`ARGV[2]`, for `ARGV[3]` ms) or releases the key (`ARGV[2]`
/// empty), only if the key still holds this request's claim (`ARGV[1]`).
const FINISH_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1";

static FINISH: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(FINISH_LUA));
static CLAIM: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(CLAIM_LUA));

/// The record if there is one, else sets the claim `ARGV[1]` for `ARGV[2]` ms.
const CLAIM_LUA: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false";

/// The de-duplication state, shared by every request.
pub struct Idempotency {
    config: Config,
    tables: Mutex<Tables>,
    /// Joinable flights in the table (changed under its lock, read without it).
    flying: AtomicUsize,
    store: Store,
    report: Box<Report>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::json!({"title": status.canonical_reason(), "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
        .into_response()
}

/// The key's text: an RFC 8941 sf-string (`"…"`) as the draft defines it, or a bare
/// token for lenient clients; 1..=255 printable ASCII characters.
fn parse_key(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?.trim();
    let inner = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(s);
    let ok = (1..=255).contains(&inner.len())
        && inner
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\');
    ok.then(|| inner.to_owned())
}

const REPLAYED_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    header::CACHE_CONTROL,
    header::WWW_AUTHENTICATE,
];

impl Idempotency {
    /// New state keeping its records in `store`; `report` hears every replay,
    /// conflict, mismatch and coalesced request, with the client it was for.
    pub fn new(
        config: Config,
        store: Store,
        report: impl Fn(Outcome, &ClientIdentity) + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Idempotency {
            config,
            tables: Mutex::new(Tables::default()),
            flying: AtomicUsize::new(0),
            store,
            report: Box::new(report),
        })
    }

    /// What the record of `id` says to a request with fingerprint `fp`, claiming the
    /// key if it is free. `Err`: the shared store could not be asked.
    async fn claim(&self, id: KeyId, fp: [u8; 32]) -> Result<Claim, redis::RedisError> {
        let Store::Redis { conn, prefix } = &self.store else {
            let mut t = self.lock();
            self.expire(&mut t);
            return Ok(match t.keys.get(&id) {
                Some(Entry::Running { fingerprint }) | Some(Entry::Done { fingerprint, .. })
                    if *fingerprint != fp =>
                {
                    Claim::Mismatch
                }
                Some(Entry::Running { .. }) => Claim::Running,
                Some(Entry::Done { stored, .. }) => Claim::Done(stored.clone()),
                None => {
                    t.keys
                        .insert(id.clone(), Entry::Running { fingerprint: fp });
                    Claim::Mine(Held::Memory(id))
                }
            });
        };
        let key = redis_key(prefix, &id);
        let claim = serde_json::json!({"fp": hex::encode(fp), "claim": crate::http::random_id()})
            .to_string();
        let found: Option<String> = conn
            .invoke(CLAIM.key(&key).arg(&claim).arg(millis(self.config.lease)))
            .await?;
        let Some(found) = found else {
            let seal = record_key(&id);
            return Ok(Claim::Mine(Held::Redis { key, claim, seal }));
        };
        let Some(record) = decode(&found, &record_key(&id)) else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unreadable idempotency record",
            )));
        };
        Ok(match record {
            Record::Running(their) | Record::Done(their, _) if their != fp => Claim::Mismatch,
            Record::Running(_) => Claim::Running,
            Record::Done(_, stored) => Claim::Done(stored),
            // An answer stored in clear is no answer of ours to replay: only a write
            // to Redis makes one now (the previous version's had another fingerprint).
            Record::Unsealed => Claim::Mismatch,
        })
    }

    /// Stores the answer to a held claim (or, with `None`, lets the key go).
    async fn finish(&self, held: Held, fp: [u8; 32], stored: Option<Stored>) {
        match held {
            Held::Memory(id) => {
                let mut t = self.lock();
                match stored {
                    Some(stored) => self.store(&mut t, id, fp, stored),
                    None => {
                        t.keys.remove(&id);
                    }
                }
            }
            Held::Redis { key, claim, seal } => {
                let Store::Redis { conn, .. } = &self.store else {
                    return;
                };
                let record = stored
                    .and_then(|s| encode(fp, &s, &seal))
                    .unwrap_or_default();
                let done: Result<i64, _> = conn
                    .invoke(
                        FINISH
                            .key(&key)
                            .arg(&claim)
                            .arg(record)
                            .arg(millis(self.config.ttl)),
                    )
                    .await;
                match done {
                    Ok(1) => {}
                    Ok(_) => tracing::warn!("idempotency claim outlived by its lease; not stored"),
                    Err(e) => {
                        tracing::error!(error = %e, "idempotency record not written; its lease will expire");
                    }
                }
            }
        }
    }

    /// Lets a held claim go without waiting (a dropped request).
    fn release_now(&self, held: Held) {
        match held {
            Held::Memory(id) => {
                self.lock().keys.remove(&id);
            }
            Held::Redis { key, claim, .. } => {
                let (Store::Redis { conn, .. }, Ok(rt)) =
                    (&self.store, tokio::runtime::Handle::try_current())
                else {
                    return; // the lease ends it
                };
                let conn = conn.clone();
                rt.spawn(async move {
                    let _: Result<i64, _> = conn
                        .invoke(FINISH.key(&key).arg(&claim).arg("").arg(0))
                        .await;
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stored responses in memory, in bytes (for tests and metrics).
    pub fn stored_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn store(&self, t: &mut Tables, id: KeyId, fingerprint: [u8; 32], stored: Stored) {
        // The key is kept too (twice: in the table and in the order), and a client
        // chooses its length.
        let size = stored.size() + 2 * (id.0.0.len() + id.1.len());
        t.bytes += size;
        t.order.push_back((id.clone(), size));
        t.keys.insert(
            id,
            Entry::Done {
                fingerprint,
                stored,
                at: Instant::now(),
            },
        );
        // Oldest first, until the bound holds (running keys are never in `order`).
        while t.bytes > self.config.max_bytes {
            let Some((old, size)) = t.order.pop_front() else {
                break;
            };
            t.bytes -= size;
            t.keys.remove(&old);
        }
    }

    fn expire(&self, t: &mut Tables) {
        while let Some((id, size)) = t.order.front() {
            let expired = matches!(t.keys.get(id), Some(Entry::Done { at, .. }) if at.elapsed() >= self.config.ttl);
            if !expired {
                break;
            }
            let size = *size;
            if let Some((id, _)) = t.order.pop_front() {
                t.keys.remove(&id);
            }
            t.bytes -= size;
        }
    }
}

/// Buffers a response body up to `limit`: `Ok` the stored form; `Err` the response
/// to send as it is: too large to store (what was read, then the rest of the body,
/// nothing lost), or a body that failed.
async fn buffer(response: Response, limit: usize) -> Result<Stored, Response> {
    use futures_util::StreamExt;
    let (parts, body) = response.into_parts();
    let mut stream = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Err(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the response could not be buffered",
            ));
        };
        read.extend_from_slice(&chunk);
        if read.len() > limit {
            let head = futures_util::stream::once(std::future::ready(Ok(Bytes::from(read))));
            let body = Body::from_stream(head.chain(stream));
            return Err(Response::from_parts(parts, body));
        }
    }
    Ok(Stored {
        status: parts.status,
        headers: (parts.headers.iter())
            .filter(|(n, _)| REPLAYED_HEADERS.contains(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        body: Bytes::from(read),
    })
}

/// Derives the fingerprint's key (never the store's record name).
const FINGERPRINT_LABEL: &[u8] = b"palisade idempotency fingerprint\0";
/// Derives the key that seals a stored response (a login's holds its token).
const RECORD_LABEL: &[u8] = b"palisade idempotency record\0";

/// A key derived from the client identity and the Idempotency-Key under `label`: each
/// use has its own label, and none is the plain SHA-256 of the two, which names the
/// record.
fn derived(label: &[u8], (identity, key): (&ClientIdentity, &String)) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [label, identity.0.as_bytes(), &[0], key.as_bytes()] {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The key that seals the response stored for `id` on a shared store: a copy of the
/// store holds no usable response (a login's token) without the Idempotency-Key.
fn record_key((identity, key): &KeyId) -> [u8; 32] {
    derived(RECORD_LABEL, (identity, key))
}

/// The request's fingerprint: an HMAC of method, URI and body keyed by the client's
/// identity and Idempotency-Key, which no store keeps (a record is filed under their
/// SHA-256). A body holds secrets (a login's password): a plain hash kept 24 h on
/// Redis would let a copy of Redis test passwords at SHA-256 speed; this one is
/// useless without the key, which a client draws at random (a guessable key gives
/// that protection up).
fn fingerprint(method: &Method, uri: &str, body: &[u8], (identity, key): &KeyId) -> [u8; 32] {
    // A label of its own: HMAC hashes a key longer than a block, and the plain
    // SHA-256 of identity and key is the record's name in the store.
    let secret = derived(FINGERPRINT_LABEL, (identity, key));
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &secret));
    ctx.update(method.as_str().as_bytes());
    ctx.update(&[0]);
    ctx.update(uri.as_bytes());
    ctx.update(&[0]);
    ctx.update(body);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// The layer: [`Dedup`] over a service.
#[derive(Clone)]
pub struct DedupLayer(pub Arc<Idempotency>);

impl<S> tower::Layer<S> for DedupLayer {
    type Service = Dedup<S>;
    fn layer(&self, inner: S) -> Dedup<S> {
        Dedup {
            idem: self.0.clone(),
            inner,
        }
    }
}

/// De-duplication in front of a service (a tower service: requests it has nothing to
/// do with go straight to the inner service, with no future of its own).
#[derive(Clone)]
pub struct Dedup<S> {
    idem: Arc<Idempotency>,
    inner: S,
}

impl<S> tower::Service<Request> for Dedup<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = DedupFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method();
        let safe = method == Method::GET || method == Method::HEAD;
        let keyed = (method == Method::POST || method == Method::PATCH)
            && request.headers().contains_key(IDEMPOTENCY_KEY);
        let identity = if safe || keyed {
            ClientIdentity::of(&request)
        } else {
            None // PUT and DELETE are idempotent already; no key, nothing to do
        };
        let Some(identity) = identity else {
            return DedupFuture {
                kind: Kind::Pass {
                    fut: self.inner.call(request),
                },
            };
        };
        let role = if safe {
            match self.idem.flight_of(&identity, &request) {
                // The common case: nobody else asks the same. The service that polled
                // ready runs it here, with no future of our own to allocate; the
                // request becomes joinable only if its handler waits.
                None => {
                    let alone = Alone {
                        idem: self.idem.clone(),
                        identity,
                        method: request.method().clone(),
                        uri: request.uri().clone(),
                    };
                    return DedupFuture {
                        kind: Kind::Lead {
                            fut: self.inner.call(request),
                            alone: Some(alone),
                            land: None,
                            sharing: None,
                        },
                    };
                }
                Some(flight) => Ok((identity, flight)),
            }
        } else {
            Err(identity)
        };
        // The service that polled ready goes with the future.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let idem = self.idem.clone();
        DedupFuture {
            kind: Kind::Boxed {
                fut: Box::pin(async move {
                    Ok(match role {
                        Ok((who, flight)) => follow(idem, who, flight, request, inner).await,
                        Err(identity) => keyed_request(idem, identity, request, inner).await,
                    })
                }),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Dedup`]: the inner service's (nothing to do, or the leader of
    /// a flight, then sharing its response if anyone joined), or a boxed one (a
    /// follower, an `Idempotency-Key`).
    pub struct DedupFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = Projected]
    enum Kind<F> {
        Pass { #[pin] fut: F },
        Lead {
            #[pin] fut: F,
            // Not joinable yet: what its flight is made of.
            alone: Option<Alone>,
            // Joinable: its place in the table of flights.
            land: Option<Land>,
            sharing: Option<BoxedAnswer>,
        },
        Boxed { fut: BoxedAnswer },
    }
}

impl<F> std::future::Future for DedupFuture<F>
where
    F: std::future::Future<Output = Answer>,
{
    type Output = Answer;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Answer> {
        use std::task::Poll;
        match self.project().kind.project() {
            Projected::Pass { fut } => fut.poll(cx),
            Projected::Boxed { fut } => fut.as_mut().poll(cx),
            Projected::Lead {
                fut,
                alone,
                land,
                sharing,
            } => {
                if let Some(sharing) = sharing {
                    return sharing.as_mut().poll(cx);
                }
                let Poll::Ready(Ok(response)) = fut.poll(cx) else {
                    // The handler waits: identical requests may join it from now on.
                    if let Some(alone) = alone.take() {
                        *land = alone.take_off();
                    }
                    return Poll::Pending;
                };
                let Some(mut land) = land.take() else {
                    return Poll::Ready(Ok(response));
                };
                land.leave();
                // No longer joinable (clones are taken under the lock): nobody joined,
                // nothing to share, no copy to make.
                if Arc::strong_count(&land.flight) == 1 {
                    return Poll::Ready(Ok(response));
                }
                let mut share: BoxedAnswer = Box::pin(async move {
                    Ok(match buffer(response, land.idem.config.max_body).await {
                        Ok(stored) => {
                            let r = stored.response();
                            land.flight.land(Some(stored));
                            r
                        }
                        Err(r) => r, // `land` drops: the followers run themselves
                    })
                });
                let polled = share.as_mut().poll(cx);
                *sharing = Some(share);
                polled
            }
        }
    }
}

/// A leader's place in the table of flights: it leaves when the leader lands or goes
/// away; a leader that goes away or cannot share lets its followers run themselves.
struct Land {
    idem: Arc<Idempotency>,
    id: Option<FlightId>,
    flight: Arc<Flight>,
}

impl Land {
    fn leave(&mut self) {
        if let Some(id) = self.id.take() {
            let mut tables = self.idem.lock();
            if tables.flights.remove(&id).is_some() {
                self.idem.flying.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Land {
    fn drop(&mut self) {
        self.leave();
        // Out of the table: only followers that joined before hold the flight.
        if Arc::strong_count(&self.flight) > 1 && self.flight.done.get().is_none() {
            self.flight.land(None);
        }
    }
}

/// A leader whose handler has not waited yet. A request answered in its first poll
/// is never joinable: nobody could wait for it with profit, and it pays for no key,
/// lock or allocation of a flight.
struct Alone {
    idem: Arc<Idempotency>,
    identity: ClientIdentity,
    method: Method,
    uri: axum::http::Uri,
}

impl Alone {
    /// Makes the request joinable, unless an identical one became so since this one
    /// looked (both then run: single flight saves work, it promises nothing).
    fn take_off(self) -> Option<Land> {
        let id = Idempotency::flight_id(self.identity, self.method, &self.uri);
        let mut tables = self.idem.lock();
        let hash_map::Entry::Vacant(e) = tables.flights.entry(id) else {
            return None;
        };
        let id = e.key().clone();
        let flight = e.insert(Arc::default()).clone();
        self.idem.flying.fetch_add(1, Ordering::Relaxed);
        drop(tables);
        Some(Land {
            idem: self.idem,
            id: Some(id),
            flight,
        })
    }
}

impl Idempotency {
    /// The key of a request's flight (same identity, method and URI).
    fn flight_id(who: ClientIdentity, method: Method, uri: &axum::http::Uri) -> FlightId {
        let uri = match (uri.authority(), uri.path_and_query()) {
            (None, Some(pq)) => pq.as_str().to_owned(),
            _ => uri.to_string(),
        };
        (who, method, uri)
    }

    /// The joinable flight identical to `request`, if there is one. With none at all
    /// (the common case) it takes no lock and hashes nothing.
    fn flight_of(&self, identity: &ClientIdentity, request: &Request) -> Option<Arc<Flight>> {
        if self.flying.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let id = Self::flight_id(identity.clone(), request.method().clone(), request.uri());
        self.lock().flights.get(&id).cloned()
    }
}

/// Runs the inner service (ready) on `request`.
async fn run<S>(mut inner: S, request: Request) -> Response
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    let Ok(response) = inner.call(request).await;
    response
}

/// A `POST` or `PATCH` with an `Idempotency-Key`.
async fn keyed_request<S>(
    idem: Arc<Idempotency>,
    identity: ClientIdentity,
    request: Request,
    inner: S,
) -> Response
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    let method = request.method().clone();
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY).and_then(parse_key) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key must be 1 to 255 printable characters",
        );
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, idem.config.max_body).await else {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let id: KeyId = (identity, key);
    let fp = fingerprint(&method, &uri, &body, &id);
    let who = id.0.clone();
    let held = match idem.claim(id, fp).await {
        Ok(Claim::Mine(held)) => held,
        Ok(Claim::Mismatch) => {
            (idem.report)(Outcome::Mismatch, &who);
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used with another request",
            );
        }
        Ok(Claim::Running) => {
            (idem.report)(Outcome::Conflict, &who);
            return problem(
                StatusCode::CONFLICT,
                "a request with this Idempotency-Key is still being processed",
            );
        }
        Ok(Claim::Done(stored)) => {
            let mut r = stored.response();
            r.headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            (idem.report)(Outcome::Replay, &who);
            return r;
        }
        Err(e) => {
            // Fail closed: a retry that cannot be checked must not run twice.
            tracing::error!(error = %e, "idempotency store unavailable; refusing");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the Idempotency-Key cannot be checked now; retry later",
            );
        }
    };
    // Releases the key if the handler panics or the client goes away mid-request.
    let mut guard = Release {
        idem: &idem,
        held: Some(held),
    };
    let response = run(inner, Request::from_parts(parts, Body::from(body))).await;
    let held = guard
        .held
        .take()
        .unwrap_or_else(|| unreachable!("set above"));
    // Not stored: a server error, and a refusal for now (429), whose retry with the
    // same key must be tried again, not answered "too many" for a day. Nor, for a
    // client known only by its address, anything but a success: storing its
    // refusals would let anyone fill the store with made-up keys and junk bodies (a
    // success, a login, needs a password); its retry runs again.
    let status = response.status();
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        // A method the route does not have: no request of the resource's, and one
        // account could fill the store with made-up keys.
        || status == StatusCode::METHOD_NOT_ALLOWED
        || (!who.is_subject() && !status.is_success())
    {
        idem.finish(held, fp, None).await;
        return response;
    }
    match buffer(response, idem.config.max_body).await {
        Ok(stored) => {
            let r = stored.response();
            idem.finish(held, fp, Some(stored)).await;
            r
        }
        Err(r) => {
            idem.finish(held, fp, None).await;
            r
        }
    }
}

struct Release<'a> {
    idem: &'a Idempotency,
    held: Option<Held>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            self.idem.release_now(held);
        }
    }
}

/// The Redis key of a record: the identity and the key, hashed (bounded, and no
/// client text in key names).
fn redis_key(prefix: &str, (identity, key): &KeyId) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(identity.0.as_bytes());
    ctx.update(&[0]);
    ctx.update(key.as_bytes());
    format!("{prefix}:{}", hex::encode(ctx.finish()))
}

/// An answered record: the fingerprint and the response, hex for the bytes.
/// A record read from Redis.
enum Record {
    /// Claimed, not answered yet: the fingerprint.
    Running([u8; 32]),
    /// Answered: the fingerprint and the response, unsealed.
    Done([u8; 32], Stored),
    /// An answer in clear (never written by this version).
    Unsealed,
}

/// An answered record, its response sealed; `None` (nothing stored, the key let go)
/// if the OS gives no random nonce.
fn encode(fp: [u8; 32], s: &Stored, seal: &[u8; 32]) -> Option<String> {
    let headers: Vec<(&str, String)> = (s.headers.iter())
        .map(|(n, v)| (n.as_str(), hex::encode(v.as_bytes())))
        .collect();
    let response = serde_json::json!({
        "status": s.status.as_u16(),
        "headers": headers,
        "body": hex::encode(&s.body),
    })
    .to_string();
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, seal)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits AES-256")),
    );
    let mut nonce = [0u8; aead::NONCE_LEN];
    if SystemRandom::new().fill(&mut nonce).is_err() {
        tracing::error!("no random nonce: idempotency record not stored");
        return None;
    }
    let mut sealed = response.into_bytes();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(&fp),
        &mut sealed,
    )
    .unwrap_or_else(|_| unreachable!("a response fits AES-GCM"));
    let record = serde_json::json!({
        "fp": hex::encode(fp),
        "sealed": hex::encode([nonce.as_slice(), &sealed].concat()),
    });
    Some(record.to_string())
}

/// A record's fingerprint, and its response if it was answered (`None` for a claim);
/// `None` if it does not parse.
fn decode(record: &str, seal: &[u8; 32]) -> Option<Record> {
    let v: serde_json::Value = serde_json::from_str(record).ok()?;
    let fp: [u8; 32] = hex::decode(v["fp"].as_str()?).ok()?.try_into().ok()?;
    let Some(sealed) = v.get("sealed") else {
        return Some(if v.get("status").is_some() {
            Record::Unsealed
        } else {
            Record::Running(fp)
        });
    };
    let mut sealed = hex::decode(sealed.as_str()?).ok()?;
    if sealed.len() < aead::NONCE_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at_mut(aead::NONCE_LEN);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, seal).ok()?);
    let plain = key.open_in_place(nonce, aead::Aad::from(&fp), rest).ok()?;
    let v: serde_json::Value = serde_json::from_slice(plain).ok()?;
    let status = StatusCode::from_u16(u16::try_from(v.get("status")?.as_u64()?).ok()?).ok()?;
    let mut headers = Vec::new();
    for h in v["headers"].as_array()? {
        let name = HeaderName::from_bytes(h[0].as_str()?.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(&hex::decode(h[1].as_str()?).ok()?).ok()?;
        headers.push((name, value));
    }
    let body = Bytes::from(hex::decode(v["body"].as_str()?).ok()?);
    Some(Record::Done(
        fp,
        Stored {
            status,
            headers,
            body,
        },
    ))
}

/// Waits for the leader's response; if it cannot share (too large, gone), runs
/// `request` itself.
async fn follow<S>(
    idem: Arc<Idempotency>,
    who: ClientIdentity,
    flight: Arc<Flight>,
    request: Request,
    inner: S,
) -> Response
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    let landed = flight.landed.notified();
    tokio::pin!(landed);
    // Registered before looking: a landing after the look wakes us.
    landed.as_mut().enable();
    if flight.done.get().is_none() {
        landed.await;
    }
    if let Some(Some(stored)) = flight.done.get() {
        (idem.report)(Outcome::Coalesced, &who);
        return stored.response();
    }
    run(inner, request).await
}

/// The identity headers of a request are not part of the stored response; kept here
/// so a test can check no `Set-Cookie` is ever replayed to another client.
pub fn replayed_headers() -> &'static [HeaderName] {
    &REPLAYED_HEADERS
}

/// Whether a header map carries a replay marker.
pub fn is_replay(headers: &HeaderMap) -> bool {
    headers.get(REPLAYED).is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    struct Harness {
        app: Router,
        runs: Arc<AtomicUsize>,
        outcomes: Arc<Mutex<Vec<Outcome>>>,
        idem: Arc<Idempotency>,
    }

    fn harness(config: Config) -> Harness {
        harness_on(config, Store::Memory, Arc::new(AtomicUsize::new(0)))
    }

    /// An instance keeping its records in `store`, counting handler runs in `runs`
    /// (two instances on one Redis share the count).
    fn harness_on(config: Config, store: Store, runs: Arc<AtomicUsize>) -> Harness {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let seen = outcomes.clone();
        let idem = Idempotency::new(config, store, move |o, _| seen.lock().unwrap().push(o));
        let (r1, r2, r3, r4) = (runs.clone(), runs.clone(), runs.clone(), runs.clone());
        let r5 = runs.clone();
        let app = Router::new()
            .route(
                "/pay",
                post(move |body: Bytes| async move {
                    r1.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (StatusCode::CREATED, [(header::SET_COOKIE, "s=1")], body)
                }),
            )
            .route(
                "/fail",
                post(move || async move {
                    r2.fetch_add(1, Ordering::SeqCst);
                    StatusCode::SERVICE_UNAVAILABLE
                }),
            )
            .route(
                "/busy",
                post(move || async move {
                    r4.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")])
                }),
            )
            .route(
                "/report",
                get(move || async move {
                    r3.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    "the report"
                }),
            )
            .route(
                "/reject",
                post(move || async move {
                    r5.fetch_add(1, Ordering::SeqCst);
                    StatusCode::UNAUTHORIZED
                }),
            )
            .route("/now", get(|| async { "at once" }))
            .layer(DedupLayer(idem.clone()))
            .layer(axum::middleware::from_fn(
                |mut req: Request, next: axum::middleware::Next| async move {
                    let who = req
                        .headers()
                        .get("x-test-client")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("anon")
                        .to_owned();
                    // `ip:<address>`: a client known only by its address.
                    let ext = req.extensions_mut();
                    match who.strip_prefix("ip:") {
                        Some(ip) => {
                            ext.insert(crate::http::RequestFacts {
                                id: crate::http::RequestId("test".into()),
                                ip: ip.parse().unwrap(),
                            });
                        }
                        None => {
                            ext.insert(AuthenticatedSubject(who));
                        }
                    }
                    next.run(req).await
                },
            ));
        Harness {
            app,
            runs,
            outcomes,
            idem,
        }
    }

    fn post_req(path: &str, key: &str, client: &str, body: &'static str) -> Request {
        Request::post(path)
            .header("idempotency-key", key)
            .header("x-test-client", client)
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_storm_runs_the_handler_once() {
        let h = harness(Config::default());
        let mut tasks = Vec::new();
        for _ in 0..500 {
            let app = h.app.clone();
            tasks.push(tokio::spawn(async move {
                app.oneshot(post_req("/pay", "\"k-1\"", "alice", "{\"amount\":5}"))
                    .await
                    .unwrap()
                    .status()
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 1);
        assert!(
            statuses
                .iter()
                .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT)
        );
        // After it finished: a replay, marked, without the original's cookie.
        let r = h
            .app
            .clone()
            .oneshot(post_req("/pay", "k-1", "alice", "{\"amount\":5}"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert!(is_replay(r.headers()));
        assert!(r.headers().get(header::SET_COOKIE).is_none());
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"{\"amount\":5}");
        assert_eq!(h.runs.load(Ordering::SeqCst), 1);
        // The same key with another payload: 422. Another client's same key: its own.
        let r = h
            .app
            .clone()
            .oneshot(post_req("/pay", "k-1", "alice", "{\"amount\":500}"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let r = h
            .app
            .clone()
            .oneshot(post_req("/pay", "k-1", "mallory", "{\"amount\":5}"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert!(!is_replay(r.headers()));
        assert_eq!(h.runs.load(Ordering::SeqCst), 2);
        let o = h.outcomes.lock().unwrap();
        assert!(o.contains(&Outcome::Replay) && o.contains(&Outcome::Mismatch));
        assert_eq!(
            o.iter().filter(|x| **x == Outcome::Conflict).count(),
            statuses
                .iter()
                .filter(|s| **s == StatusCode::CONFLICT)
                .count()
        );
    }

    #[tokio::test]
    async fn server_errors_and_anonymous_refusals_are_not_stored_and_bad_keys_are_refused() {
        let h = harness(Config::default());
        for _ in 0..2 {
            let r = h
                .app
                .clone()
                .oneshot(post_req("/fail", "k", "a", ""))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 2);
        // Nor a 429: the retry after `Retry-After` runs again, and is not told
        // "too many" for the record's lifetime.
        for _ in 0..2 {
            let r = (h.app.clone())
                .oneshot(post_req("/busy", "k2", "a", ""))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(!is_replay(r.headers()));
            assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 4);
        // A refusal is stored for a subject (replayed), not for a client known only
        // by its address: junk keys from anyone must not fill the store.
        for _ in 0..2 {
            let r = (h.app.clone())
                .oneshot(post_req("/reject", "k3", "alice", ""))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 5);
        let stored = h.idem.stored_bytes();
        for _ in 0..2 {
            let r = (h.app.clone())
                .oneshot(post_req("/reject", "k3", "ip:192.0.2.1", ""))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert!(!is_replay(r.headers()));
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 7);
        assert_eq!(h.idem.stored_bytes(), stored);
        // Its successes are stored as anyone's.
        for _ in 0..2 {
            let r = (h.app.clone())
                .oneshot(post_req("/pay", "k4", "ip:192.0.2.1", "x"))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 8);
        for bad in ["", "\"\"", "has space", "\"quote\"inside\""] {
            let r = h
                .app
                .clone()
                .oneshot(post_req("/pay", bad, "a", ""))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let long = "k".repeat(256);
        let r = h
            .app
            .clone()
            .oneshot(post_req("/pay", &long, "a", ""))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn stored_responses_stay_within_their_bound() {
        let h = harness(Config {
            max_body: 1024,
            max_bytes: 4 * 1024,
            ttl: Duration::from_secs(60),
            ..Config::default()
        });
        // Each stored response is ~170 bytes: 60 of them pass the 4 KiB bound.
        for i in 0..60 {
            let r = h
                .app
                .clone()
                .oneshot(post_req("/pay", &format!("k{i}"), "a", "0123456789abcdef"))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            assert!(h.idem.stored_bytes() <= 4 * 1024);
        }
        // The newest is still replayed, the oldest was evicted (it runs again).
        let replay = |key: &'static str| {
            let app = h.app.clone();
            async move {
                let r = app
                    .oneshot(post_req("/pay", key, "a", "0123456789abcdef"))
                    .await
                    .unwrap();
                is_replay(r.headers())
            }
        };
        assert!(replay("k59").await);
        let before = h.runs.load(Ordering::SeqCst);
        assert!(!replay("k0").await);
        assert_eq!(h.runs.load(Ordering::SeqCst), before + 1);
        // A body over the limit is refused before the handler runs.
        let big: &'static str = Box::leak("x".repeat(2048).into_boxed_str());
        let r = h
            .app
            .clone()
            .oneshot(post_req("/pay", "big", "a", big))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// `GET /report` from client `bob`: identical each time.
    fn report_request() -> Request {
        Request::get("/report")
            .header("x-test-client", "bob")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_concurrent_reads_share_one_execution() {
        let h = harness(Config::default());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let app = h.app.clone();
            tasks.push(tokio::spawn(async move {
                let r = app.oneshot(report_request()).await.unwrap();
                axum::body::to_bytes(r.into_body(), 1024).await.unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(&t.await.unwrap()[..], b"the report");
        }
        let runs = h.runs.load(Ordering::SeqCst);
        let coalesced = (h.outcomes.lock().unwrap().iter())
            .filter(|o| **o == Outcome::Coalesced)
            .count();
        assert_eq!(runs + coalesced, 50);
        assert!(runs < 50, "no request was coalesced");
    }

    #[tokio::test]
    async fn only_a_handler_that_waits_can_be_joined() {
        let h = harness(Config::default());
        let flights = |h: &Harness| {
            let n = h.idem.lock().flights.len();
            assert_eq!(n, h.idem.flying.load(Ordering::SeqCst));
            n
        };
        // Answered in its first poll: never in the table.
        let now = Request::get("/now")
            .header("x-test-client", "bob")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&h, now).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"at once"[..]));
        assert_eq!(flights(&h), 0);
        // Waiting: joinable until it lands.
        let leader = tokio::spawn(h.app.clone().oneshot(report_request()));
        while h.runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(flights(&h), 1);
        let follower = tokio::spawn(h.app.clone().oneshot(report_request()));
        for r in [leader, follower] {
            let body = axum::body::to_bytes(r.await.unwrap().unwrap().into_body(), 1024);
            assert_eq!(&body.await.unwrap()[..], b"the report");
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 1);
        assert_eq!(*h.outcomes.lock().unwrap(), [Outcome::Coalesced]);
        assert_eq!(flights(&h), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_response_too_large_to_share_is_run_by_each_follower() {
        // "the report" is 10 bytes: over the bound, the leader shares nothing.
        let h = harness(Config {
            max_body: 4,
            ..Config::default()
        });
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let app = h.app.clone();
            tasks.push(tokio::spawn(async move {
                let r = app.oneshot(report_request()).await.unwrap();
                axum::body::to_bytes(r.into_body(), 1024).await.unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(&t.await.unwrap()[..], b"the report");
        }
        assert_eq!(h.runs.load(Ordering::SeqCst), 20);
        assert!(h.outcomes.lock().unwrap().is_empty());
        assert!(h.idem.lock().flights.is_empty());
    }

    #[tokio::test]
    async fn followers_of_a_leader_that_goes_away_run_themselves() {
        let h = harness(Config::default());
        let leader = tokio::spawn(h.app.clone().oneshot(report_request()));
        while h.runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let follower = tokio::spawn(h.app.clone().oneshot(report_request()));
        // Joined: the table, the leader and the follower hold the flight.
        while !(h.idem.lock().flights.values()).any(|f| Arc::strong_count(f) == 3) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        leader.abort();
        let r = tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("a follower waits forever for a leader that went away")
            .unwrap()
            .unwrap();
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"the report");
        assert_eq!(h.runs.load(Ordering::SeqCst), 2);
        assert!(h.outcomes.lock().unwrap().is_empty());
        assert!(h.idem.lock().flights.is_empty());
    }

    async fn on_redis(url: &str) -> Store {
        Store::Redis {
            conn: RedisConn::connect(
                &crate::shared::RedisAccess::new(vec![url.to_owned()], None, &[]).unwrap(),
            )
            .await
            .unwrap(),
            prefix: "test:idem".into(),
        }
    }

    async fn send(h: &Harness, req: Request) -> (StatusCode, bool, Bytes) {
        let r = h.app.clone().oneshot(req).await.unwrap();
        let (status, replay) = (r.status(), is_replay(r.headers()));
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, replay, body)
    }

    /// What Redis keeps of an answered request is of no use without the key: the
    /// response is sealed (a login's holds its token), and a replay still opens it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stored_response_is_sealed_on_redis() {
        let server = palisade_testkit::RedisServer::start();
        let runs = Arc::new(AtomicUsize::new(0));
        let h = harness_on(
            Config::default(),
            on_redis(&server.url()).await,
            runs.clone(),
        );
        let secret = "the-access-token-0123456789";
        let first = send(&h, post_req("/pay", "k-sealed", "alice", secret)).await;
        assert_eq!(
            (first.0, &first.2[..]),
            (StatusCode::CREATED, secret.as_bytes())
        );
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("test:idem:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        let record: String = redis::cmd("GET")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(record.contains("\"sealed\""), "{record}");
        for clear in [secret.as_bytes().to_vec(), hex::encode(secret).into_bytes()] {
            let clear = String::from_utf8(clear).unwrap();
            assert!(!record.contains(&clear), "{record}");
        }
        let again = send(&h, post_req("/pay", "k-sealed", "alice", secret)).await;
        assert_eq!(
            (again.0, again.1, &again.2[..]),
            (StatusCode::CREATED, true, secret.as_bytes())
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // An answer in clear, written by someone with access to Redis, is not replayed.
        let v: serde_json::Value = serde_json::from_str(&record).unwrap();
        let forged = serde_json::json!({
            "fp": v["fp"], "status": 200, "headers": [], "body": hex::encode("forged"),
        });
        let _: () = redis::cmd("SET")
            .arg(&keys[0])
            .arg(forged.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        let forged = send(&h, post_req("/pay", "k-sealed", "alice", secret)).await;
        assert_eq!(forged.0, StatusCode::UNPROCESSABLE_ENTITY);
    }

    /// Two instances on one redis-server: a retry storm spread over both runs the
    /// handler once, a retry on the other instance is replayed, another payload is
    /// refused, a 5xx is not stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_on_redis_share_their_records() {
        let server = palisade_testkit::RedisServer::start();
        let runs = Arc::new(AtomicUsize::new(0));
        let config = Config::default();
        let a = harness_on(config, on_redis(&server.url()).await, runs.clone());
        let b = harness_on(config, on_redis(&server.url()).await, runs.clone());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let app = if i % 2 == 0 { &a.app } else { &b.app }.clone();
            tasks.push(tokio::spawn(async move {
                let r = app
                    .oneshot(post_req("/pay", "k-1", "alice", "{\"amount\":5}"))
                    .await
                    .unwrap();
                (r.status(), is_replay(r.headers()))
            }));
        }
        let (mut first, mut other) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                (StatusCode::CREATED, false) => first += 1,
                (StatusCode::CONFLICT, false) | (StatusCode::CREATED, true) => other += 1,
                unexpected => panic!("unexpected {unexpected:?}"),
            }
        }
        assert_eq!((first, other), (1, 199));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        for h in [&a, &b] {
            let (status, replay, body) =
                send(h, post_req("/pay", "k-1", "alice", "{\"amount\":5}")).await;
            assert_eq!((status, replay), (StatusCode::CREATED, true));
            assert_eq!(&body[..], b"{\"amount\":5}");
        }
        let r = b
            .app
            .clone()
            .oneshot(post_req("/pay", "k-1", "alice", "{\"amount\":5}"))
            .await
            .unwrap();
        assert!(r.headers().get(header::SET_COOKIE).is_none());
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/octet-stream"
        );
        let (status, _, _) = send(&b, post_req("/pay", "k-1", "alice", "{\"amount\":6}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(b.outcomes.lock().unwrap().contains(&Outcome::Mismatch));
        // Another client's same key is its own.
        let (status, replay, _) =
            send(&b, post_req("/pay", "k-1", "mallory", "{\"amount\":5}")).await;
        assert_eq!((status, replay), (StatusCode::CREATED, false));
        // A 5xx is not stored: the retry on the other instance runs again.
        let fails = a.runs.load(Ordering::SeqCst);
        assert_eq!(
            send(&a, post_req("/fail", "f", "alice", "")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            send(&b, post_req("/fail", "f", "alice", "")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(a.runs.load(Ordering::SeqCst), fails + 2);
    }

    /// A copy of the store cannot test a login's password against its fingerprint.
    #[test]
    fn a_stored_fingerprint_is_useless_without_the_idempotency_key() {
        let body = br#"{"username":"alice","password":"hunter2"}"#;
        let plain = digest::digest(
            &digest::SHA256,
            &[b"POST\0/login\0".as_slice(), body].concat(),
        );
        let id = |who: &str, key: &str| (ClientIdentity::subject(who), key.to_owned());
        let fp = |id| fingerprint(&Method::POST, "/login", body, &id);
        assert_ne!(fp(id("alice", "k1")).as_slice(), plain.as_ref());
        // Another key or another client: another fingerprint of the same request.
        assert_ne!(fp(id("alice", "k1")), fp(id("alice", "k2")));
        assert_ne!(fp(id("alice", "k1")), fp(id("bob", "k1")));
        // A retry with the same key matches.
        assert_eq!(fp(id("alice", "k1")), fp(id("alice", "k1")));
        // The record's name does not give the key away, however long the key is (HMAC
        // hashes a key longer than a block: with identity and key as the HMAC key,
        // its SHA-256 was the name).
        let long = id("alice@example.com", &"0123456789abcdef".repeat(4));
        let name = redis_key("p", &long);
        let leaked = hex::decode(name.strip_prefix("p:").unwrap()).unwrap();
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &leaked));
        ctx.update(b"POST\0/login\0");
        ctx.update(body);
        assert_ne!(fp(long).as_slice(), ctx.sign().as_ref());
    }

    /// An instance that died holding a claim blocks retries (`409`) only for the lease.
    #[tokio::test]
    async fn a_dead_instances_claim_ends_with_its_lease() {
        let server = palisade_testkit::RedisServer::start();
        let config = Config {
            lease: Duration::from_secs(2),
            ..Config::default()
        };
        let runs = Arc::new(AtomicUsize::new(0));
        let dead = harness_on(config, on_redis(&server.url()).await, runs.clone());
        let b = harness_on(config, on_redis(&server.url()).await, runs.clone());
        // A claim left the way a crashed instance leaves it: taken, never finished.
        let id = (ClientIdentity::subject("alice"), "k-dead".to_owned());
        let fp = fingerprint(&Method::POST, "/pay", b"x", &id);
        assert!(matches!(
            dead.idem.claim(id, fp).await.unwrap(),
            Claim::Mine(_)
        ));
        assert_eq!(
            send(&b, post_req("/pay", "k-dead", "alice", "x")).await.0,
            StatusCode::CONFLICT
        );
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        // Retried until the lease is over (no timing asserted: only that it ends).
        let mut last = (StatusCode::CONFLICT, false, Bytes::new());
        for _ in 0..100 {
            last = send(&b, post_req("/pay", "k-dead", "alice", "x")).await;
            if last.0 != StatusCode::CONFLICT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!((last.0, last.1), (StatusCode::CREATED, false));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    /// Redis unreachable: a request with a key is refused `503` without running; one
    /// without a key still runs.
    #[tokio::test]
    async fn an_unreachable_store_fails_closed() {
        let mut server = palisade_testkit::RedisServer::start();
        let h = harness_on(
            Config::default(),
            on_redis(&server.url()).await,
            Arc::new(AtomicUsize::new(0)),
        );
        assert_eq!(
            send(&h, post_req("/pay", "k", "a", "x")).await.0,
            StatusCode::CREATED
        );
        server.stop();
        assert_eq!(
            send(&h, post_req("/pay", "k2", "a", "x")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(h.runs.load(Ordering::SeqCst), 1);
        let no_key = Request::post("/pay")
            .header("x-test-client", "a")
            .body(Body::from("x"))
            .unwrap();
        assert_eq!(send(&h, no_key).await.0, StatusCode::CREATED);
    }
}

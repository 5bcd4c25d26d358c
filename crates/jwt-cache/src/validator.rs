//! The caching validator: header check, kid lookup, signature by jsonwebtoken's
//! crypto (ML-DSA by aws-lc-rs), claims checked once (`claims`), time against a `Clock`, revocation on
//! every answer, single flight.

use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey};
use palisade_core_traits::{
    Clock, RevocationCheck, RevocationStatus, SystemClock, Timestamp, TokenIdentity,
};
use quick_cache::sync::GuardResult;
use serde::Deserialize;
use serde_json::Value;

use crate::ValidatedToken;
use crate::cache::{CacheKey, Entry, KeyRef, TokenCache};
use crate::claims;
use crate::error::{Error, label};
use crate::keys::{BoundKey, KeySet};
use crate::mldsa::{MlDsa, TokenAlgorithm};
use crate::policy::{Policy, media_type};
use crate::stats::{self, Counters, Stats};
use crate::telemetry;

/// Default longest token accepted at all.
pub const DEFAULT_MAX_TOKEN_BYTES: NonZeroUsize = NonZeroUsize::new(64 * 1024).expect("non-zero");

/// Epochs are unique in the process, so validators sharing a cache never share one.
static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

struct KeyState {
    epoch: u64,
    keys: KeySet,
}

/// Validates JWTs against a fixed [`Policy`] and a replaceable [`KeySet`], caching
/// successes in an optional shared [`TokenCache`].
///
/// A hit is answered only if the entry was stored under the same token bytes, the
/// same policy fingerprint and the current key-set epoch, and only after `exp`,
/// `nbf`, `reject_tokens_expiring_in_less_than` and the revocation check pass again
/// at the current time of the validator's [`Clock`].
pub struct Validator {
    policy: Policy,
    fingerprint: [u8; 32],
    keys: RwLock<Arc<KeyState>>,
    epoch: AtomicU64,
    cache: Option<Arc<TokenCache>>,
    clock: Arc<dyn Clock>,
    revocation: Option<Arc<dyn RevocationCheck>>,
    allow_unknown_revocation: bool,
    max_token_bytes: usize,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("policy", &self.policy)
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .field("cache", &self.cache)
            .field("revocation", &self.revocation)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Validator`]: every setter is infallible, [`build`](Self::build)
/// checks them all.
#[must_use]
pub struct ValidatorBuilder {
    policy: Option<Policy>,
    keys: KeySet,
    cache: Option<Arc<TokenCache>>,
    clock: Arc<dyn Clock>,
    revocation: Option<Arc<dyn RevocationCheck>>,
    allow_unknown_revocation: bool,
    max_token_bytes: NonZeroUsize,
}

impl ValidatorBuilder {
    /// The policy every token must satisfy (required).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The initial key set (default empty: every token is refused with
    /// [`Error::UnknownKid`] until [`Validator::set_keys`]).
    pub fn keys(mut self, keys: KeySet) -> Self {
        self.keys = keys;
        self
    }

    /// Caches successes in `cache` (which other validators may share). Without
    /// one, every validation is a full one.
    pub fn cache(mut self, cache: Arc<TokenCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Reads time from `clock` (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Consults `check` through [`RevocationCheck::check_local`] on every hit and
    /// every miss. No local answer, or `Unknown`, refuses the token
    /// ([`Error::RevocationUnknown`]) unless [`Self::allow_unknown_revocation`].
    pub fn revocation(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(check);
        self
    }

    /// Fail open: accept a token whose revocation status is unknown. Off by default.
    pub fn allow_unknown_revocation(mut self, allow: bool) -> Self {
        self.allow_unknown_revocation = allow;
        self
    }

    /// Refuse longer tokens before parsing them (default 64 KiB).
    pub fn max_token_bytes(mut self, max: NonZeroUsize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// The validator. Fails with [`Error::InvalidConfig`] if no policy was given.
    pub fn build(self) -> Result<Validator, Error> {
        let policy = self.policy.ok_or_else(|| {
            Error::config(
                "policy",
                "a validator needs a policy (ValidatorBuilder::policy)",
            )
        })?;
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::SeqCst);
        Ok(Validator {
            fingerprint: policy.fingerprint(),
            policy,
            keys: RwLock::new(Arc::new(KeyState {
                epoch,
                keys: self.keys,
            })),
            epoch: AtomicU64::new(epoch),
            cache: self.cache,
            clock: self.clock,
            revocation: self.revocation,
            allow_unknown_revocation: self.allow_unknown_revocation,
            max_token_bytes: self.max_token_bytes.get(),
            counters: Counters::default(),
        })
    }
}

/// The header fields we read; everything else (`jku`, `x5u`, `jwk`, `x5c`, …) is
/// ignored on purpose: keys come from the key set only.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// `Some` whenever the member is present, even as `null` (RFC 7515 §4.1.11:
    /// a present `crit` must be a non-empty array; we understand none).
    #[serde(default, deserialize_with = "present")]
    crit: Option<Value>,
    /// RFC 7797: only the default (`true` or absent) is accepted, as in jsonwebtoken;
    /// `Some` whenever present, so `null` is refused too.
    #[serde(default, deserialize_with = "present")]
    b64: Option<Value>,
}

/// A header member that is present, whatever its value: serde's plain `Option`
/// would read `null` as absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What the shared front of `validate` found.
enum Lookup<'a> {
    /// Answered (a hit, a refusal, or an uncacheable token).
    Done(Result<Arc<ValidatedToken>, Error>),
    /// Not in the cache: validate under single flight.
    Miss(&'a TokenCache, u64),
}

/// A verification outcome before revocation and caching.
struct Verified {
    token: Arc<ValidatedToken>,
}

impl Validator {
    /// A builder: a policy is required; no keys, no cache, the system clock, no
    /// revocation check, tokens up to [`DEFAULT_MAX_TOKEN_BYTES`].
    pub fn builder() -> ValidatorBuilder {
        ValidatorBuilder {
            policy: None,
            keys: KeySet::new(),
            cache: None,
            clock: Arc::new(SystemClock),
            revocation: None,
            allow_unknown_revocation: false,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The cache, if any.
    pub fn cache(&self) -> Option<&Arc<TokenCache>> {
        self.cache.as_ref()
    }

    /// Replaces the key set. The epoch changes, so no entry cached under the old
    /// keys is ever served again (they age out of the cache).
    pub fn set_keys(&self, keys: KeySet) {
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.keys.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(KeyState { epoch, keys });
        // Published under the write lock: a miss that read the old state carries
        // the old epoch and a hit that reads the new epoch finds no old entry.
        self.epoch.store(epoch, Ordering::SeqCst);
        tracing::info!(
            epoch,
            "jwt key set replaced; older cache entries are unreachable"
        );
    }

    /// A copy of the current key set (to edit and pass to [`Self::set_keys`]).
    pub fn keys(&self) -> KeySet {
        self.key_state().keys.clone()
    }

    /// The current key-set epoch (process-unique).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let ev = self.cache.as_ref().map_or(0, |c| c.evictions.get());
        stats::snapshot(&self.counters, ev)
    }

    fn key_state(&self) -> Arc<KeyState> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Validates `token` (the compact JWS, without `Bearer `), from the cache when it
    /// can. Concurrent calls with the same uncached token verify it once; the others
    /// wait (blocking the thread for about one signature check) and share the result.
    pub fn validate(&self, token: impl AsRef<[u8]>) -> Result<Arc<ValidatedToken>, Error> {
        let r = self.validate_inner(token.as_ref());
        self.counters.outcome(&r);
        r
    }

    /// Validates without reading or writing the cache (the reference the cache is
    /// tested against; also what a miss does).
    pub fn validate_uncached(&self, token: impl AsRef<[u8]>) -> Result<Arc<ValidatedToken>, Error> {
        let token = token.as_ref();
        let r = self.check_len(token).and_then(|()| {
            let now = self.clock.now();
            let v = self.verify(token, &self.key_state().keys, now)?;
            self.check_revocation(&v.token)?;
            Ok(v.token)
        });
        self.counters.outcome(&r);
        r
    }

    fn check_len(&self, token: &[u8]) -> Result<(), Error> {
        if token.len() > self.max_token_bytes {
            return Err(Error::TooLarge {
                len: token.len(),
                max: self.max_token_bytes,
            });
        }
        Ok(())
    }

    /// Like [`Self::validate`], for async code: a caller that finds another task
    /// validating the same uncached token awaits that result instead of blocking its
    /// thread. Same cache, same single flight (sync and async callers share it).
    pub async fn validate_async(
        &self,
        token: impl AsRef<[u8]>,
    ) -> Result<Arc<ValidatedToken>, Error> {
        let token = token.as_ref();
        let r = async {
            let (cache, epoch) = match self.lookup(token)? {
                Lookup::Done(r) => return r,
                Lookup::Miss(cache, epoch) => (cache, epoch),
            };
            let kref = self.key_ref(epoch, token);
            let owned = self.owned_key(epoch, token);
            loop {
                match cache.store.get_value_or_guard_async(&owned).await {
                    Ok(entry) => {
                        if let Some(r) = self.serve(cache, &kref, &entry, true) {
                            return r;
                        }
                    }
                    Err(guard) => {
                        return self.lead(cache, epoch, token, |e| {
                            let _ = guard.insert(e);
                        });
                    }
                }
            }
        }
        .await;
        self.counters.outcome(&r);
        r
    }

    /// The answer if it needs no single-flight wait: a hit, a refusal before the
    /// cache, or an uncacheable token; `None` for a miss (then `validate_async`).
    /// Counted like `validate`. Lets the tower layer keep its per-request future
    /// small: the miss path's future is boxed only when there is a miss.
    #[cfg(feature = "tower")]
    pub(crate) fn validate_without_waiting(
        &self,
        token: &[u8],
    ) -> Option<Result<Arc<ValidatedToken>, Error>> {
        let r = match self.lookup(token) {
            Ok(Lookup::Miss(..)) => return None,
            Ok(Lookup::Done(r)) => r,
            Err(e) => Err(e),
        };
        self.counters.outcome(&r);
        Some(r)
    }

    fn key_ref<'a>(&'a self, epoch: u64, token: &'a [u8]) -> KeyRef<'a> {
        KeyRef {
            epoch,
            policy: &self.fingerprint,
            token,
        }
    }

    fn owned_key(&self, epoch: u64, token: &[u8]) -> CacheKey {
        CacheKey {
            epoch,
            policy: self.fingerprint,
            token: token.into(),
        }
    }

    /// The part shared by the sync and async paths: length, uncacheable tokens,
    /// and the allocation-free hit.
    fn lookup(&self, token: &[u8]) -> Result<Lookup<'_>, Error> {
        self.check_len(token)?;
        let cache = match &self.cache {
            Some(c) if token.len() <= c.config.max_cached_token_bytes => c,
            _ => {
                let now = self.clock.now();
                let v = self.verify(token, &self.key_state().keys, now)?;
                self.counters.not_cached.add(1);
                self.check_revocation(&v.token)?;
                return Ok(Lookup::Done(Ok(v.token)));
            }
        };
        let epoch = self.epoch.load(Ordering::SeqCst);
        match self.cache_answer(cache, epoch, token) {
            Some(r) => Ok(Lookup::Done(r)),
            None => Ok(Lookup::Miss(cache, epoch)),
        }
    }

    /// What the cache answers for `token` (a hit, or a held token now expired or
    /// revoked); `None` if it holds no usable entry.
    fn cache_answer(
        &self,
        cache: &TokenCache,
        epoch: u64,
        token: &[u8],
    ) -> Option<Result<Arc<ValidatedToken>, Error>> {
        let kref = self.key_ref(epoch, token);
        let entry = cache.store.get(&kref)?;
        self.serve(cache, &kref, &entry, false)
    }

    /// The answer for a token the cache holds, counted like `validate`; `None` (and
    /// nothing counted) otherwise. Only tokens that validated hold an entry, so the
    /// tower layer asks here before it checks a bearer token's syntax: a held token
    /// passed it already.
    #[cfg(feature = "tower")]
    pub(crate) fn cached(&self, token: &[u8]) -> Option<Result<Arc<ValidatedToken>, Error>> {
        let cache = self.cache.as_ref()?;
        if token.len() > cache.config.max_cached_token_bytes {
            return None;
        }
        let r = self.cache_answer(cache, self.epoch.load(Ordering::SeqCst), token)?;
        self.counters.outcome(&r);
        Some(r)
    }

    fn validate_inner(&self, token: &[u8]) -> Result<Arc<ValidatedToken>, Error> {
        let (cache, epoch) = match self.lookup(token)? {
            Lookup::Done(r) => return r,
            Lookup::Miss(cache, epoch) => (cache, epoch),
        };
        let kref = self.key_ref(epoch, token);
        let owned = self.owned_key(epoch, token);
        loop {
            match cache.store.get_value_or_guard(&owned, None) {
                GuardResult::Value(entry) => {
                    if let Some(r) = self.serve(cache, &kref, &entry, true) {
                        return r;
                    }
                    // Stale: `serve` removed it; take the guard next round.
                }
                GuardResult::Guard(guard) => {
                    return self.lead(cache, epoch, token, |e| {
                        let _ = guard.insert(e);
                    });
                }
                GuardResult::Timeout => {
                    // Unreachable without a timeout; validate on our own to be safe.
                    return self.lead(cache, u64::MAX, token, drop);
                }
            }
        }
    }

    /// The single-flight leader: validates and, if still current, inserts. A failure
    /// inserts nothing (the guard is dropped and the next waiter validates).
    fn lead(
        &self,
        cache: &TokenCache,
        epoch: u64,
        token: &[u8],
        insert: impl FnOnce(Entry),
    ) -> Result<Arc<ValidatedToken>, Error> {
        let generation = cache.generation.load(Ordering::SeqCst);
        let state = self.key_state();
        let now = self.clock.now();
        let v = self.verify(token, &state.keys, now)?;
        self.check_revocation(&v.token)?;
        let cache_until = now.saturating_add(cache.config.max_ttl).min(
            v.token
                .expires_at
                .map_or(Timestamp::MAX, Timestamp::from_unix_secs),
        );
        let fresh = state.epoch == epoch
            && cache.generation.load(Ordering::SeqCst) == generation
            && cache_until > now;
        if fresh {
            insert(Entry {
                token: v.token.clone(),
                cache_until,
            });
            telemetry::cache_size(cache);
            tracing::debug!(
                alg = ?v.token.algorithm,
                ttl_secs = cache_until.saturating_duration_since(now).as_secs(),
                "jwt validated and cached"
            );
        } else {
            self.counters.not_cached.add(1);
            // Why not: a key change or invalidation raced with this miss, or the
            // token expires within the second.
            tracing::debug!(
                key_set_changed = state.epoch != epoch,
                "jwt validated, not cached"
            );
        }
        Ok(v.token)
    }

    /// Answers from an entry, re-checking time and revocation; `None` if the entry
    /// outlived its cache lifetime (removed; the caller validates afresh).
    fn serve(
        &self,
        cache: &TokenCache,
        kref: &KeyRef<'_>,
        entry: &Entry,
        shared: bool,
    ) -> Option<Result<Arc<ValidatedToken>, Error>> {
        let now = self.clock.now();
        if now >= entry.cache_until {
            cache.store.remove(kref);
            telemetry::cache_size(cache);
            tracing::trace!("jwt cache entry outlived its lifetime; validating afresh");
            return None;
        }
        if let Err(e) = self.check_time(&entry.token, now) {
            cache.store.remove(kref);
            telemetry::cache_size(cache);
            return Some(Err(e));
        }
        if let Err(e) = self.check_revocation(&entry.token) {
            return Some(Err(e));
        }
        self.counters.hit(shared);
        tracing::trace!(shared, "jwt cache hit");
        Some(Ok(entry.token.clone()))
    }

    fn check_revocation(&self, token: &ValidatedToken) -> Result<(), Error> {
        let Some(check) = &self.revocation else {
            return Ok(());
        };
        let answer = check.check_local(&token.identity);
        telemetry::revocation(match answer {
            Some(RevocationStatus::NotRevoked) => "not_revoked",
            Some(RevocationStatus::Revoked) => "revoked",
            Some(RevocationStatus::Unknown) => "unknown",
            None => "no_local_answer",
        });
        match answer {
            Some(RevocationStatus::NotRevoked) => Ok(()),
            Some(RevocationStatus::Revoked) => Err(Error::Revoked),
            Some(RevocationStatus::Unknown) | None if self.allow_unknown_revocation => Ok(()),
            Some(RevocationStatus::Unknown) | None => Err(Error::RevocationUnknown),
        }
    }

    /// `exp`, `nbf` and `reject_tokens_expiring_in_less_than` at `now` (whole seconds).
    fn check_time(&self, token: &ValidatedToken, now: Timestamp) -> Result<(), Error> {
        let now = i128::from(now.as_unix_secs());
        let leeway = i128::from(self.policy.leeway_secs);
        if let Some(exp) = token.expires_at {
            let reject = i128::from(self.policy.reject_expiring_in_less_than_secs);
            // RFC 7519 §4.1.4: valid only *before* exp (jsonwebtoken also accepts
            // the second of exp itself; we do not).
            if i128::from(exp) - reject <= now - leeway {
                return Err(Error::Expired);
            }
        }
        if self.policy.validate_nbf
            && let Some(nbf) = token.not_before
            && i128::from(nbf) > now + leeway
        {
            return Err(Error::NotYetValid);
        }
        // A per-user revocation refuses tokens issued up to its second: a token
        // claiming a later `iat` than the clock allows would escape it.
        if let Some(iat) = token.identity.issued_at
            && i128::from(iat) > now + leeway
        {
            return Err(Error::IssuedInFuture);
        }
        Ok(())
    }

    /// The header's `alg` if the policy allows it: an ML-DSA name, or one of
    /// jsonwebtoken's.
    fn allowed_alg(&self, name: &str) -> Result<TokenAlgorithm, Error> {
        let alg = match MlDsa::from_name(name) {
            Some(m) => self
                .policy
                .allows_ml_dsa(m)
                .then_some(TokenAlgorithm::MlDsa(m)),
            None => Algorithm::from_str(name)
                .ok()
                .filter(|a| self.policy.allows(*a))
                .map(TokenAlgorithm::Jose),
        };
        alg.ok_or_else(|| Error::AlgorithmNotAllowed { alg: label(name) })
    }

    /// The full validation of a miss: everything except revocation.
    fn verify(&self, token: &[u8], keys: &KeySet, now: Timestamp) -> Result<Verified, Error> {
        self.counters.miss();
        let mut parts = token.split(|b| *b == b'.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed("not three dot-separated parts"));
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|_| Error::Malformed("header is not base64url"))?;
        let header: RawHeader = serde_json::from_slice(&header_json)
            .map_err(|_| Error::Malformed("header is not a JSON object with a string alg"))?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(Error::AlgNone);
        }
        if header.crit.is_some() {
            return Err(Error::UnsupportedCrit);
        }
        if header.b64.as_ref().is_some_and(|b| *b != Value::Bool(true)) {
            return Err(Error::Malformed("unencoded payload (b64) is not supported"));
        }
        let alg = self.allowed_alg(&header.alg)?;
        if let Some(want) = &self.policy.typ {
            match &header.typ {
                Some(t) if media_type(t).eq_ignore_ascii_case(media_type(want)) => {}
                _ => return Err(Error::WrongType),
            }
        }
        let kid = header.kid.ok_or(Error::MissingKid)?;
        if keys.is_empty() {
            return Err(Error::NoKeys);
        }
        let key = keys
            .get(&kid)
            .ok_or_else(|| Error::UnknownKid { kid: label(&kid) })?;
        if key.alg() != alg {
            return Err(Error::KeyAlgorithmMismatch {
                kid: label(&kid),
                key_alg: key.alg(),
                token_alg: alg,
            });
        }
        // The header and payload are parsed once, by us; the signature goes to
        // jsonwebtoken's aws-lc-rs verifier for the key's algorithm (a key of another
        // family is refused there), or to aws-lc-rs's ML-DSA, which jsonwebtoken lacks.
        let message = &token[..h.len() + 1 + p.len()];
        match key {
            BoundKey::Jose { alg, key } => verify_signature(message, s, key, *alg)
                .map_err(|e| map_jwt_error(e.kind(), &kid))?,
            BoundKey::MlDsa(key) => key.verify(message, s)?,
        }
        let claims = claims::parse(p)?;
        // Time claims first, so a bad one is named as such (not as a missing claim).
        let expires_at = claims::numeric_claim(&claims, "exp")?;
        let not_before = claims::numeric_claim(&claims, "nbf")?;
        let issued_at = claims::numeric_claim(&claims, "iat")?;
        claims::check(&claims, &self.policy)?;
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let mut identity = TokenIdentity::new(string("iss").unwrap_or_default());
        identity.subject = string("sub");
        identity.jti = string("jti");
        identity.issued_at = issued_at;
        identity.expires_at = expires_at;
        let mut token = ValidatedToken {
            algorithm: alg,
            key_id: kid,
            claims,
            identity,
            expires_at,
            not_before,
            heap_bytes: 0,
        };
        token.heap_bytes = token.measure();
        self.check_time(&token, now)?;
        Ok(Verified {
            token: Arc::new(token),
        })
    }
}

/// The crypto provider every signature is checked with, named here rather than taken
/// from jsonwebtoken's process default: that default is chosen from jsonwebtoken's
/// features and is missing (and `jsonwebtoken::crypto::verify` panics) when anything in
/// the build also enables `rust_crypto`. Ours is always aws-lc-rs, whatever else is on.
const PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;

/// `jsonwebtoken::crypto::verify` with [`PROVIDER`]: `Ok` only for a valid signature.
fn verify_signature(
    message: &[u8],
    signature_b64: &[u8],
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<(), jsonwebtoken::errors::Error> {
    let verifier = (PROVIDER.verifier_factory)(&alg, key)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(jsonwebtoken::errors::Error::from)?;
    verifier
        .verify(message, &signature)
        .map_err(|_| ErrorKind::InvalidSignature.into())
}

fn map_jwt_error(kind: &ErrorKind, kid: &str) -> Error {
    match kind {
        ErrorKind::InvalidSignature => Error::BadSignature,
        ErrorKind::InvalidAudience => Error::WrongAudience,
        ErrorKind::InvalidIssuer => Error::WrongIssuer,
        ErrorKind::InvalidSubject => Error::WrongSubject,
        ErrorKind::ExpiredSignature => Error::Expired,
        ErrorKind::ImmatureSignature => Error::NotYetValid,
        ErrorKind::MissingRequiredClaim(c) => Error::MissingClaim(label(c)),
        ErrorKind::InvalidClaimFormat(c) => Error::MalformedClaim(label(c)),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => Error::AlgorithmNotAllowed {
            alg: "\"?\"".to_owned(),
        },
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Provider(_) => Error::KeyRejected { kid: label(kid) },
        ErrorKind::Base64(_) => Error::Malformed("a part is not base64url"),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => Error::Malformed("payload is not a JSON object"),
        _ => Error::Malformed("rejected by the JWS decoder"),
    }
}

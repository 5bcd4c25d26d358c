//! The revocation model, without I/O: what is revoked, for how long, and the check.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use palisade_core_traits::{Clock, RevocationStatus, Timestamp, TokenIdentity};

use crate::Error;
use crate::obs::Counters;

/// Longest accepted `iss`, `sub` or `jti`, in bytes.
pub const MAX_ID_LEN: usize = 512;

/// How revocations are kept. Every instance sharing a store must use the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    leeway: Duration,
    skew: Duration,
    max_token_lifetime: Duration,
    capacity: NonZeroUsize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            leeway: Duration::from_secs(60),
            skew: Duration::from_secs(5),
            max_token_lifetime: Duration::from_secs(24 * 3600),
            capacity: NonZeroUsize::new(1_000_000).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

impl Config {
    /// The validators' `exp` leeway (default 60 s, jsonwebtoken's default).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Allowed clock skew between instances (default 5 s): entries outlive `exp +
    /// leeway` by it, and a watermark given `T` covers `iat <= T + skew` (an issuer
    /// whose clock runs ahead stamps a token minted before `T` that much later). Set it
    /// to the validators' `iat` leeway.
    pub fn skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// The longest `exp − iat` any accepted issuer mints (default 24 h): how long a
    /// watermark must live.
    pub fn max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = lifetime;
        self
    }

    /// Bound on live entries (tokens plus watermarks) held locally (default 1,000,000).
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Checked once, by the builders' `build()` / `connect()`.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_token_lifetime.is_zero() {
            return Err(Error::config(
                "max_token_lifetime",
                "must be above zero: watermarks live that long",
            ));
        }
        // Bounds that keep lifetimes' sums far from overflow.
        const DAY: Duration = Duration::from_secs(24 * 3600);
        for (field, d, max, what) in [
            ("leeway", self.leeway, DAY, "24 h"),
            ("skew", self.skew, DAY, "24 h"),
            (
                "max_token_lifetime",
                self.max_token_lifetime,
                DAY * 3650,
                "10 years",
            ),
        ] {
            if d > max {
                return Err(Error::config(field, format!("must be at most {what}")));
            }
        }
        Ok(())
    }

    /// When a per-token entry may go: `exp + leeway + skew`.
    fn token_expiry(&self, exp_secs: u64) -> Timestamp {
        Timestamp::from_unix_secs(exp_secs).saturating_add(self.leeway + self.skew)
    }

    /// When a watermark may go: the last token it covers (stamped at or before
    /// `max(now, covered)`) expires `max_token_lifetime` later, plus leeway and skew.
    fn mark_expiry(&self, now: Timestamp, covered: Timestamp) -> Timestamp {
        now.max(covered)
            .saturating_add(self.max_token_lifetime + self.leeway + self.skew)
    }
}

/// Which tokens a watermark covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// One user of one issuer.
    User { issuer: Box<str>, subject: Box<str> },
    /// Every token of one issuer.
    Issuer { issuer: Box<str> },
    /// Every token.
    Global,
}

impl Scope {
    /// For logs and metric labels.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Scope::User { .. } => "user",
            Scope::Issuer { .. } => "issuer",
            Scope::Global => "global",
        }
    }
}

/// One revocation as stored and sent between instances. `expires` is when it may
/// be forgotten (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// `(iss, jti)` is revoked; `subject` only places the Redis key (hash tag).
    Token {
        issuer: Box<str>,
        subject: Box<str>,
        jti: Box<str>,
        expires_ms: u64,
    },
    /// Tokens of `scope` with `iat <= secs` are revoked.
    Mark {
        scope: Scope,
        secs: u64,
        expires_ms: u64,
    },
}

impl Record {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn expires_ms(&self) -> u64 {
        match self {
            Record::Token { expires_ms, .. } | Record::Mark { expires_ms, .. } => *expires_ms,
        }
    }

    /// Whether this record (read under `other`'s key) revokes at least what `other`
    /// does, for at least as long: same kind, watermark and expiry no lower.
    #[cfg(feature = "redis")]
    pub(crate) fn covers(&self, other: &Record) -> bool {
        match (self, other) {
            (Record::Token { expires_ms: a, .. }, Record::Token { expires_ms: b, .. }) => a >= b,
            (
                Record::Mark {
                    secs: a,
                    expires_ms: ae,
                    ..
                },
                Record::Mark {
                    secs: b,
                    expires_ms: be,
                    ..
                },
            ) => a >= b && ae >= be,
            _ => false,
        }
    }
}

pub(crate) fn check_id(field: &'static str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidIdentifier {
            field,
            reason: "is empty".into(),
        });
    }
    if value.len() > MAX_ID_LEN {
        return Err(Error::InvalidIdentifier {
            field,
            reason: format!("is {} bytes, limit {MAX_ID_LEN}", value.len()),
        });
    }
    Ok(())
}

fn ms(t: Timestamp) -> u64 {
    t.as_unix_nanos() / 1_000_000
}

impl Config {
    /// The record for revoking one token, or `None` if it is past its lifetime
    /// already (every validator refuses it anyway).
    pub(crate) fn token_record(
        &self,
        token: &TokenIdentity,
        now: Timestamp,
    ) -> Result<Option<Record>, Error> {
        check_id("iss", &token.issuer)?;
        let jti = token
            .jti
            .as_deref()
            .ok_or(Error::MissingClaim { claim: "jti" })?;
        check_id("jti", jti)?;
        let exp = token
            .expires_at
            .ok_or(Error::MissingClaim { claim: "exp" })?;
        // The subject only places the Redis key (hash tag), and the wire format
        // carries an empty one: a token with `"sub": ""` (which validators accept)
        // is revoked like one without `sub`, not refused.
        let subject = match token.subject.as_deref() {
            None | Some("") => "",
            Some(s) => {
                check_id("sub", s)?;
                s
            }
        };
        let expires = self.token_expiry(exp);
        if expires <= now {
            return Ok(None);
        }
        Ok(Some(Record::Token {
            issuer: token.issuer.as_str().into(),
            subject: subject.into(),
            jti: jti.into(),
            expires_ms: ms(expires).max(1),
        }))
    }

    /// The record for a watermark "issued at or before `t`", moved `skew` later (whole
    /// seconds, floor): an issuer whose clock runs ahead stamps a token it minted
    /// before `t` with an `iat` up to `skew` past it, and validators accept that `iat`.
    pub(crate) fn mark_record(
        &self,
        scope: Scope,
        t: Timestamp,
        now: Timestamp,
    ) -> Result<Record, Error> {
        match &scope {
            Scope::User { issuer, subject } => {
                check_id("iss", issuer)?;
                check_id("sub", subject)?;
            }
            Scope::Issuer { issuer } => check_id("iss", issuer)?,
            Scope::Global => {}
        }
        // The last token covered is stamped `skew` past `t`: the lifetime counts from
        // there, and keeps its own `skew` margin for the instances' clocks.
        let covered = t.saturating_add(self.skew);
        Ok(Record::Mark {
            scope,
            secs: covered.as_unix_secs(),
            expires_ms: ms(self.mark_expiry(now, covered)),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    secs: u64,
    expires_ms: u64,
}

impl Mark {
    fn merge(&mut self, secs: u64, expires_ms: u64) {
        self.secs = self.secs.max(secs);
        self.expires_ms = self.expires_ms.max(expires_ms);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("records", &self.len)
            .field("global", &self.global.is_some())
            .finish_non_exhaustive()
    }
}

/// A revoked jti's (expiry ms, subject for the Redis key).
type TokenEntry = (u64, Box<str>);

/// The revocations held in memory. Lookups by `&str`, no allocation on a check.
/// `Debug` shows how many, never whose: issuers, subjects and token ids stay out of
/// logs.
#[derive(Default)]
pub(crate) struct Store {
    /// iss → jti → (expiry ms, subject for the Redis key).
    tokens: HashMap<Box<str>, HashMap<Box<str>, TokenEntry>>,
    /// iss → sub → mark.
    users: HashMap<Box<str>, HashMap<Box<str>, Mark>>,
    issuers: HashMap<Box<str>, Mark>,
    global: Option<Mark>,
    len: usize,
}

impl Store {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The answer for `token`, from memory. An entry present is a revocation (the
    /// sweep removes entries only after their lifetime, when validators refuse the
    /// token anyway).
    pub(crate) fn check(&self, token: &TokenIdentity) -> RevocationStatus {
        let iss = token.issuer.as_str();
        if let Some(jti) = token.jti.as_deref()
            && self.tokens.get(iss).is_some_and(|m| m.contains_key(jti))
        {
            return RevocationStatus::Revoked;
        }
        let mut mark: Option<u64> = self.global.map(|m| m.secs);
        let mut merge = |m: Option<&Mark>| {
            if let Some(m) = m {
                mark = Some(mark.map_or(m.secs, |x| x.max(m.secs)));
            }
        };
        merge(self.issuers.get(iss));
        if let Some(sub) = token.subject.as_deref() {
            merge(self.users.get(iss).and_then(|m| m.get(sub)));
        }
        match (mark, token.issued_at) {
            // Whole seconds: a token minted in the watermark's second is revoked.
            (Some(m), Some(iat)) if iat <= m => RevocationStatus::Revoked,
            // A watermark applies and the token does not say when it was issued:
            // it cannot prove it is newer, so it is refused.
            (Some(_), None) => RevocationStatus::Revoked,
            _ => RevocationStatus::NotRevoked,
        }
    }

    /// Adds (or widens) a revocation. Returns whether it changed anything.
    pub(crate) fn apply(&mut self, record: &Record, capacity: usize) -> Result<bool, Error> {
        let full = self.len >= capacity;
        match record {
            Record::Token {
                issuer,
                subject,
                jti,
                expires_ms,
            } => {
                let m = self.tokens.entry(issuer.clone()).or_default();
                if let Some(e) = m.get_mut(jti) {
                    let changed = *expires_ms > e.0;
                    e.0 = e.0.max(*expires_ms);
                    return Ok(changed);
                }
                if full {
                    return Err(Error::Full { capacity });
                }
                m.insert(jti.clone(), (*expires_ms, subject.clone()));
            }
            Record::Mark {
                scope,
                secs,
                expires_ms,
            } => {
                let slot = match scope {
                    Scope::Global => &mut self.global,
                    Scope::Issuer { issuer } => {
                        if let Some(m) = self.issuers.get_mut(issuer) {
                            return Ok(merge_changed(m, *secs, *expires_ms));
                        }
                        if full {
                            return Err(Error::Full { capacity });
                        }
                        self.issuers.insert(
                            issuer.clone(),
                            Mark {
                                secs: *secs,
                                expires_ms: *expires_ms,
                            },
                        );
                        self.len += 1;
                        return Ok(true);
                    }
                    Scope::User { issuer, subject } => {
                        let m = self.users.entry(issuer.clone()).or_default();
                        if let Some(m) = m.get_mut(subject) {
                            return Ok(merge_changed(m, *secs, *expires_ms));
                        }
                        if full {
                            return Err(Error::Full { capacity });
                        }
                        m.insert(
                            subject.clone(),
                            Mark {
                                secs: *secs,
                                expires_ms: *expires_ms,
                            },
                        );
                        self.len += 1;
                        return Ok(true);
                    }
                };
                if let Some(m) = slot {
                    return Ok(merge_changed(m, *secs, *expires_ms));
                }
                if full {
                    return Err(Error::Full { capacity });
                }
                *slot = Some(Mark {
                    secs: *secs,
                    expires_ms: *expires_ms,
                });
            }
        }
        self.len += 1;
        Ok(true)
    }

    /// Removes every entry whose lifetime ended at or before `now_ms`; returns how many.
    pub(crate) fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.len;
        let mut len = 0;
        self.tokens.retain(|_, m| {
            m.retain(|_, e| e.0 > now_ms);
            len += m.len();
            !m.is_empty()
        });
        self.users.retain(|_, m| {
            m.retain(|_, e| e.expires_ms > now_ms);
            len += m.len();
            !m.is_empty()
        });
        self.issuers.retain(|_, e| e.expires_ms > now_ms);
        len += self.issuers.len();
        if self.global.is_some_and(|g| g.expires_ms <= now_ms) {
            self.global = None;
        }
        len += usize::from(self.global.is_some());
        self.len = len;
        before - len
    }

    /// Every live record (for re-writing to a store that lost them).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.len);
        for (iss, m) in &self.tokens {
            for (jti, (expires_ms, subject)) in m {
                out.push(Record::Token {
                    issuer: iss.clone(),
                    subject: subject.clone(),
                    jti: jti.clone(),
                    expires_ms: *expires_ms,
                });
            }
        }
        let mark = |scope, m: &Mark| Record::Mark {
            scope,
            secs: m.secs,
            expires_ms: m.expires_ms,
        };
        for (iss, m) in &self.users {
            for (sub, v) in m {
                let scope = Scope::User {
                    issuer: iss.clone(),
                    subject: sub.clone(),
                };
                out.push(mark(scope, v));
            }
        }
        for (iss, v) in &self.issuers {
            out.push(mark(
                Scope::Issuer {
                    issuer: iss.clone(),
                },
                v,
            ));
        }
        if let Some(g) = &self.global {
            out.push(mark(Scope::Global, g));
        }
        out
    }
}

fn merge_changed(m: &mut Mark, secs: u64, expires_ms: u64) -> bool {
    let changed = secs > m.secs || expires_ms > m.expires_ms;
    m.merge(secs, expires_ms);
    changed
}

/// How many applies between amortised sweeps.
const SWEEP_EVERY: u64 = 1024;

/// A store behind a lock, with its config, clock and counters: the in-memory
/// blacklist, and the replica inside the Redis one.
#[derive(Debug)]
pub(crate) struct Local {
    store: RwLock<Store>,
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) stats: Counters,
    applies: AtomicU64,
}

impl Local {
    pub(crate) fn new(config: Config, clock: Arc<dyn Clock>) -> Result<Local, Error> {
        config.validate()?;
        Ok(Local {
            store: RwLock::new(Store::default()),
            config,
            clock,
            stats: Counters::new(),
            applies: AtomicU64::new(0),
        })
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The local answer, not counted (the caller counts its final answer).
    pub(crate) fn lookup(&self, token: &TokenIdentity) -> RevocationStatus {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .check(token)
    }

    /// Applies a record, sweeping first if full (and every [`SWEEP_EVERY`] applies).
    pub(crate) fn apply(&self, record: &Record) -> Result<bool, Error> {
        let now_ms = ms(self.now());
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        let n = self.applies.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 || store.len() >= self.config.capacity.get() {
            self.stats.swept(store.sweep(now_ms));
        }
        let changed = store.apply(record, self.config.capacity.get());
        self.stats.entries(store.len());
        changed
    }

    pub(crate) fn sweep(&self) -> usize {
        let now_ms = ms(self.now());
        let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
        let swept = store.sweep(now_ms);
        self.stats.swept(swept);
        self.stats.entries(store.len());
        swept
    }

    pub(crate) fn len(&self) -> usize {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn records(&self) -> Vec<Record> {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .records()
    }
}

//! The gateway's shared state: every crate, wired once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use palisade_core_traits::{
    Clock, Error as CoreError, IpBlocker, RevocationCheck, SessionTerminator, StepUpRequirer,
    TokenRevoker, TrustedProxies, async_trait, normalize_user_id,
};
use palisade_device_fp::{FingerprintKey, InMemoryDeviceStore, TrustPolicy};
use palisade_hsm_keys::{JwsAlgorithm, KeyRing, KeyStore, Pin, Pkcs11Store, SoftStore};
use palisade_jwt_cache::{Algorithm, JwtAuth, KeySet, Policy, TokenCache, Validator};
use palisade_ratelimit::{
    FailurePolicy, HttpKey, KeySource, KeyedLimiter, Quota, RateLimitLayer, RateLimitPolicy,
    RedisLimiter, nz,
};
use palisade_threat_score::{MaxMindLookup, ThreatScorer};
use palisade_token_blacklist::{MemoryBlacklist, RedisBlacklist};
use ring::rand::{SecureRandom, SystemRandom};

use crate::admin::Generation;
use crate::config::Config;
use crate::dashboard::Dashboard;
use crate::idempotency::{self, Idempotency};
use crate::intel::Intel;
use crate::response::Bus;
use crate::shared::{Fleet, Limit, RedisAccess, RedisConn, millis};
use crate::users::Users;
use palisade_token_blacklist::redis;

/// How far instances' clocks may differ: the jwt-cache leeway for `exp`, `nbf`, `iat`.
const CLOCK_SKEW_SECS: u64 = 5;

/// The blacklist's settings: a watermark covers tokens stamped up to
/// [`CLOCK_SKEW_SECS`] past its time (an instance whose clock runs ahead, as far as
/// the validator's leeway accepts, stamps a later `iat` on a token it minted before
/// the revocation). The price: a login within those seconds after a revocation gets
/// a token that is already revoked, and logs in again.
fn revocation_config() -> palisade_token_blacklist::Config {
    palisade_token_blacklist::Config::default().skew(Duration::from_secs(CLOCK_SKEW_SECS))
}

/// Lifetime of issued access tokens.
pub const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a step-up challenge may be answered, and how many codes it accepts.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// How long the last accepted TOTP step is remembered: a code passes for 3 steps
/// (drift), plus 2 for the clocks of Redis and of the instances to differ.
const TOTP_REPLAY_WINDOW: Duration = Duration::from_secs(5 * 30);
/// Wrong codes before a challenge is spent.
pub const CHALLENGE_ATTEMPTS: u32 = 3;
/// The audience of issued tokens.
pub const AUDIENCE: &str = "palisade-gateway";
/// The per-address limit's name (in `RateLimit-Policy`, on the dashboard and the bus).
pub const IP_POLICY: &str = "ip";
/// The per-subject limit's name on `/api`.
pub const SUBJECT_POLICY: &str = "api-subject";

/// A pending step-up: the user whose password was accepted and where from, tries left.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Normalized user id.
    pub user: String,
    /// The client address that started it (the code must come from the same place).
    pub ip: IpAddr,
    /// Wrong codes left.
    pub attempts_left: u32,
    /// The user's sessions as the login that opened it found them: a code that
    /// passes after they were ended gets no token or session.
    pub began: Generation,
}

/// Step-up requirements set by playbooks, and pending challenges: in this instance's
/// memory, or in Redis (`--redis`) so a requirement set on one instance applies to a
/// login on another and a challenge opened on one can be answered on another.
#[derive(Debug)]
pub struct StepUps {
    clock: Arc<dyn Clock>,
    store: StepUpStore,
    rng: SystemRandom,
}

enum StepUpStore {
    Memory {
        /// user → monotonic deadline of "the next login must step up".
        required: Mutex<HashMap<String, Duration>>,
        /// challenge id → challenge and its monotonic deadline.
        challenges: Mutex<HashMap<String, (Challenge, Duration)>>,
        /// user → the TOTP step of the last code accepted.
        totp_steps: Mutex<HashMap<String, u64>>,
    },
    /// One key per requirement (`…:required:<user>`, expiring with it) and per
    /// challenge (`…:challenge:<id>`, a hash, expiring after [`CHALLENGE_TTL`]);
    /// attempts are spent by a script, so two instances cannot both spend the last.
    /// The last TOTP step accepted per user is `…:totp:<user>`, raised by a script.
    Redis { conn: RedisConn, prefix: String },
}

impl std::fmt::Debug for StepUpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepUpStore::Memory { .. } => "Memory",
            StepUpStore::Redis { .. } => "Redis",
        })
    }
}

/// Pending challenges kept at once in memory (a flood of correct passwords cannot
/// grow memory; in Redis their lifetime bounds them).
const MAX_CHALLENGES: usize = 10_000;

/// Extends a requirement to `ARGV[1]` ms from now (never shortens one).
const REQUIRE_LUA: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1";
/// Opens a challenge: user, address, attempts, lifetime in ms.
const OPEN_LUA: &str = r"
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'ip', ARGV[2], 'left', ARGV[3], 'began', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1";
/// Spends one attempt if `ARGV[1]` is the address that opened the challenge:
/// `{user, ip, left, began}` after it, or nil if unknown, spent or from elsewhere.
const ATTEMPT_LUA: &str = r"
local v = redis.call('HMGET', KEYS[1], 'user', 'ip', 'left', 'began')
if not v[1] or not v[3] or v[2] ~= ARGV[1] then return false end
local left = tonumber(v[3])
if left <= 0 then redis.call('DEL', KEYS[1]) return false end
redis.call('HINCRBY', KEYS[1], 'left', -1)
return {v[1], v[2], tostring(left - 1), v[4] or '0'}";

/// Raises the user's last accepted TOTP step to `ARGV[1]`: 1 if it was lower (the
/// code passes), 0 if not (used already). Kept as long as a code can be replayed.
const TOTP_STEP_LUA: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if last >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1";

static TOTP_STEP: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(TOTP_STEP_LUA));
static REQUIRE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(REQUIRE_LUA));
static OPEN: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(OPEN_LUA));
static ATTEMPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ATTEMPT_LUA));

impl StepUps {
    fn new(clock: Arc<dyn Clock>, redis: Option<(RedisConn, String)>) -> Self {
        let store = match redis {
            None => StepUpStore::Memory {
                required: Mutex::new(HashMap::new()),
                challenges: Mutex::new(HashMap::new()),
                totp_steps: Mutex::new(HashMap::new()),
            },
            Some((conn, prefix)) => StepUpStore::Redis { conn, prefix },
        };
        StepUps {
            clock,
            store,
            rng: SystemRandom::new(),
        }
    }

    /// Whether the user's next login must step up. Redis unreachable: yes (fail
    /// closed: a wrong "no" lets a guessed password in without the second factor).
    pub async fn required(&self, user: &str) -> bool {
        let user = normalize_user_id(user);
        match &self.store {
            StepUpStore::Memory { required, .. } => {
                let now = self.clock.monotonic();
                let mut r = required.lock().unwrap_or_else(|e| e.into_inner());
                r.retain(|_, until| *until > now);
                r.contains_key(user.as_ref())
            }
            StepUpStore::Redis { conn, prefix } => conn
                .query(redis::cmd("EXISTS").arg(format!("{prefix}:required:{user}")))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "step-up store unavailable; requiring a step-up");
                    true
                }),
        }
    }

    /// Opens a challenge; returns its id. `Err`: Redis could not be written.
    pub async fn open(
        &self,
        user: &str,
        ip: IpAddr,
        began: Generation,
    ) -> Result<String, redis::RedisError> {
        let mut id = [0u8; 16];
        self.rng
            .fill(&mut id)
            .unwrap_or_else(|_| unreachable!("the OS random source failed"));
        let id = hex::encode(id);
        let challenge = Challenge {
            user: normalize_user_id(user).into_owned(),
            ip,
            attempts_left: CHALLENGE_ATTEMPTS,
            began,
        };
        match &self.store {
            StepUpStore::Memory { challenges, .. } => {
                let now = self.clock.monotonic();
                let mut c = challenges.lock().unwrap_or_else(|e| e.into_inner());
                c.retain(|_, (_, until)| *until > now);
                if c.len() >= MAX_CHALLENGES
                    && let Some(k) = (c.iter())
                        .min_by_key(|(_, (_, until))| *until)
                        .map(|(k, _)| k.clone())
                {
                    c.remove(&k);
                }
                c.insert(id.clone(), (challenge, now + CHALLENGE_TTL));
            }
            StepUpStore::Redis { conn, prefix } => {
                let _: i64 = conn
                    .invoke(
                        OPEN.key(format!("{prefix}:challenge:{id}"))
                            .arg(&challenge.user)
                            .arg(ip.to_string())
                            .arg(CHALLENGE_ATTEMPTS)
                            .arg(millis(CHALLENGE_TTL))
                            .arg(began.ended),
                    )
                    .await?;
            }
        }
        Ok(id)
    }

    /// The live challenge `id` answered from `ip`, spending one attempt; `None` if
    /// unknown, expired, spent or opened from another address (whose attempts are not
    /// spent: a leaked id cannot use up the user's tries). `Err`: Redis could not be
    /// asked.
    pub async fn attempt(
        &self,
        id: &str,
        ip: IpAddr,
    ) -> Result<Option<Challenge>, redis::RedisError> {
        match &self.store {
            StepUpStore::Memory { challenges, .. } => {
                let now = self.clock.monotonic();
                let mut c = challenges.lock().unwrap_or_else(|e| e.into_inner());
                let Some((ch, until)) = c.get_mut(id) else {
                    return Ok(None);
                };
                if *until <= now || ch.attempts_left == 0 {
                    c.remove(id);
                    return Ok(None);
                }
                if ch.ip != ip {
                    return Ok(None);
                }
                ch.attempts_left -= 1;
                Ok(Some(ch.clone()))
            }
            StepUpStore::Redis { conn, prefix } => {
                // Ids are ours (hex); anything else names no challenge.
                if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Ok(None);
                }
                let found: Option<(String, String, u32, u64)> = conn
                    .invoke(
                        ATTEMPT
                            .key(format!("{prefix}:challenge:{id}"))
                            .arg(ip.to_string()),
                    )
                    .await?;
                let Some((user, ip, attempts_left, ended)) = found else {
                    return Ok(None);
                };
                let ip = ip.parse().map_err(|_| {
                    redis::RedisError::from((redis::ErrorKind::Parse, "unreadable challenge"))
                })?;
                Ok(Some(Challenge {
                    user,
                    ip,
                    attempts_left,
                    // Sessions on Redis count ends on Redis alone (no base).
                    began: Generation { base: 0, ended },
                }))
            }
        }
    }

    /// Spends TOTP `step` for `user`: `true` if no code of this step or a later one
    /// was accepted before, on any instance sharing the store (RFC 6238 §5.2: a code
    /// seen over a shoulder, or sent twice at once, passes once). `Err`: Redis could
    /// not be asked (the caller refuses the code).
    pub async fn spend_totp_step(&self, user: &str, step: u64) -> Result<bool, redis::RedisError> {
        let user = normalize_user_id(user);
        match &self.store {
            StepUpStore::Memory { totp_steps, .. } => {
                let mut used = totp_steps.lock().unwrap_or_else(|e| e.into_inner());
                let last = used.entry(user.into_owned()).or_insert(0);
                if *last >= step {
                    return Ok(false);
                }
                *last = step;
                Ok(true)
            }
            StepUpStore::Redis { conn, prefix } => {
                let fresh: i64 = conn
                    .invoke(
                        TOTP_STEP
                            .key(format!("{prefix}:totp:{user}"))
                            .arg(step)
                            .arg(TOTP_REPLAY_WINDOW.as_secs()),
                    )
                    .await?;
                Ok(fresh == 1)
            }
        }
    }

    /// Closes a challenge (answered). `Err`: Redis could not be written (the
    /// challenge would stay answerable: the caller must not go on).
    pub async fn close(&self, id: &str) -> Result<(), redis::RedisError> {
        match &self.store {
            StepUpStore::Memory { challenges, .. } => {
                challenges
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(id);
                Ok(())
            }
            StepUpStore::Redis { conn, prefix } => {
                conn.query(redis::cmd("DEL").arg(format!("{prefix}:challenge:{id}")))
                    .await
            }
        }
    }
}

#[async_trait]
impl StepUpRequirer for StepUps {
    async fn require_step_up(
        &self,
        user_id: &str,
        valid_for: Duration,
        _reason: &str,
    ) -> Result<(), CoreError> {
        let user = normalize_user_id(user_id);
        match &self.store {
            StepUpStore::Memory { required, .. } => {
                let until = self.clock.monotonic() + valid_for;
                let mut r = required.lock().unwrap_or_else(|e| e.into_inner());
                let entry = r.entry(user.into_owned()).or_default();
                *entry = (*entry).max(until);
                Ok(())
            }
            StepUpStore::Redis { conn, prefix } => {
                let _: i64 = conn
                    .invoke(
                        REQUIRE
                            .key(format!("{prefix}:required:{user}"))
                            .arg(millis(valid_for)),
                    )
                    .await
                    .map_err(|e| CoreError::Unavailable {
                        backend: "redis",
                        source: Box::new(e),
                    })?;
                Ok(())
            }
        }
    }
}

/// Ends a user's sessions: the gateway's sessions are its tokens, so this revokes
/// every token issued to the user until now, and ends the user's operator sessions
/// (the dashboard's cookies) on this instance.
#[derive(Debug)]
pub struct Sessions {
    revoker: Arc<dyn TokenRevoker>,
    issuer: String,
    clock: Arc<dyn Clock>,
    /// The dashboard's sessions.
    pub operators: Arc<crate::admin::Sessions>,
}

#[async_trait]
impl SessionTerminator for Sessions {
    async fn terminate_sessions(
        &self,
        user_id: &str,
        _reason: &str,
    ) -> Result<Option<u64>, CoreError> {
        let user = normalize_user_id(user_id);
        // Counted as an end before the tokens are revoked: a login that reads the
        // count unchanged after minting its token minted it before the revocation,
        // which covers it (`Gateway::issue_unless_ended`).
        let operator_sessions = self.operators.end_user(&user).await;
        self.revoker
            .revoke_user(&self.issuer, &user, self.clock.now())
            .await?;
        operator_sessions.map_err(|e| CoreError::Unavailable {
            backend: "redis",
            source: Box::new(e),
        })?;
        Ok(None) // the tokens it revoked are not counted
    }
}

/// Everything a request handler needs.
pub struct Gateway {
    /// The configuration it started with.
    pub config: Config,
    /// Time for every decision.
    pub clock: Arc<dyn Clock>,
    /// Accounts.
    pub users: Arc<Users>,
    /// The operators' view.
    pub dashboard: Arc<Dashboard>,
    /// Where security events go.
    pub bus: Bus,
    /// Login risk.
    pub scorer: Arc<ThreatScorer>,
    /// GeoIP for the dashboard's map and the scorer.
    pub geo: Arc<MaxMindLookup>,
    /// Device trust per user.
    pub devices: Arc<InMemoryDeviceStore>,
    /// The key device fingerprints are tagged with.
    pub fingerprint_key: Arc<FingerprintKey>,
    /// Threat-intelligence deny lists.
    pub intel: Option<Arc<Intel>>,
    /// De-duplication of unsafe requests.
    pub idempotency: Arc<Idempotency>,
    /// The proxies in front of the gateway.
    pub proxies: TrustedProxies,
    /// Per-address limit (every request): what playbooks block through.
    pub ip_limit: Limit<HttpKey>,
    /// The per-address limit as ratelimit's layer (every request).
    pub ip_layer: RateLimitLayer<Limit<HttpKey>>,
    /// How many refusals the dashboard's feed shows.
    pub refusal_feed: crate::http::RefusalFeed,
    /// Per-account limit on logins.
    pub account_limit: Limit<String>,
    /// The per-subject limit on `/api`, as ratelimit's layer.
    pub subject_layer: RateLimitLayer<Limit<HttpKey>>,
    /// Bearer tokens on `/api` and `/logout` (jwt-cache's layer over `validator`).
    pub auth: JwtAuth,
    /// Revocations (in memory, or token-blacklist's Redis store).
    pub blacklist: Arc<dyn TokenRevoker>,
    /// The revocation store's local replica, when instances share Redis.
    pub revocation_replica: Option<Arc<RedisBlacklist>>,
    /// The fleet's verification keys, when instances share Redis.
    pub fleet: Option<Arc<Fleet>>,
    /// Where the fleet correlates incidents, when instances share Redis.
    pub incident_ids: Option<crate::incident::FleetIds>,
    /// Who in the fleet carries out each playbook action, when instances share Redis.
    pub action_claims: Option<crate::response::ActionClaims>,
    /// How the instance reaches Redis (`--redis`, `--redis-ca`).
    pub redis: Option<RedisAccess>,
    /// The peer regions (`--peer-region`): relays from them, and their keys.
    pub regions: Option<Arc<crate::regions::Regions>>,
    /// What `/.well-known/jwks.json` serves: this ring's keys, and the fleet's.
    pub published_keys: arc_swap::ArcSwap<serde_json::Value>,
    /// Token validation (cache, revocation).
    pub validator: Arc<Validator>,
    /// Signing keys.
    pub keys: Arc<KeyRing<Arc<dyn KeyStore>>>,
    /// Step-up requirements and challenges.
    pub step_ups: Arc<StepUps>,
    /// Session termination for playbooks.
    pub sessions: Arc<Sessions>,
    /// The Certificate Transparency monitor's per-log health, once it runs.
    pub ct: std::sync::OnceLock<Arc<crate::ct::CtStatus>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What can go wrong at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A part refused its configuration; the message names it.
    #[error("{part}: {message}")]
    Part {
        /// Which part.
        part: &'static str,
        /// What it said.
        message: String,
    },
}

/// Names `part` as the source of an error (`map_err(part("redis"))`). The message
/// carries the error's causes too: a crate's error often names only its class
/// ("redis failed"), and the operator needs the cause (a timeout, a refused
/// connection).
pub(crate) fn part<E>(part: &'static str) -> impl FnOnce(E) -> StartError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |e| {
        let e: Box<dyn std::error::Error + Send + Sync> = e.into();
        let mut message = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        StartError::Part { part, message }
    }
}

/// The Redis key prefix of everything the gateway keeps there.
pub(crate) const REDIS_PREFIX: &str = "palisade:gateway";
/// How long a rate-limit check waits for Redis (then its failure policy answers).
const LIMIT_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a revocation or a resync read waits for Redis.
const REVOCATION_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the fleet's keys are written and read.
pub const FLEET_REFRESH: Duration = Duration::from_secs(2);

/// Sign-ins per account, on `/login` and `/dashboard/login` together: a burst of 5,
/// one back every 12 s.
pub const ACCOUNT_QUOTA: (NonZeroU32, NonZeroU32, Duration) =
    (nz!(5), nz!(5), Duration::from_secs(60));

/// One limit, in memory or shared on Redis (`name` is its policy and key prefix).
async fn limit<K: palisade_ratelimit::Key>(
    redis: Option<&RedisAccess>,
    clock: &Arc<dyn Clock>,
    name: &str,
    (burst, rate, period): (NonZeroU32, NonZeroU32, Duration),
    failure: FailurePolicy,
) -> Result<(Limit<K>, Quota), StartError> {
    let quota = Quota::new(burst, rate, period).map_err(part("ratelimit"))?;
    let Some(access) = redis else {
        let limiter = KeyedLimiter::with_clock(quota, clock.clone());
        return Ok((Limit::Memory(Arc::new(limiter)), quota));
    };
    let builder = RedisLimiter::builder(vec![
        palisade_ratelimit::Policy::new(name, quota).map_err(part("ratelimit"))?,
    ])
    .prefix(&format!("{REDIS_PREFIX}:limit:{name}"))
    .failure_policy(failure)
    .timeout(LIMIT_TIMEOUT)
    .clock(clock.clone());
    let limiter = match access.urls.as_slice() {
        [one] => {
            let client = access.client(one).map_err(part("redis"))?;
            builder.connect_client(client).await
        }
        _ => {
            let conn = access.cluster(LIMIT_TIMEOUT).await.map_err(part("redis"))?;
            builder.connect_cluster_connection(conn).await
        }
    }
    .map_err(part("redis"))?;
    Ok((Limit::Redis(Arc::new(limiter)), quota))
}

/// `--redis` and `--redis-ca` (read here: a CA that cannot be read stops the start).
fn redis_access(
    config: &Config,
    peers: &[crate::regions::PeerSpec],
) -> Result<Option<RedisAccess>, StartError> {
    if config.redis.is_empty() {
        return Ok(None);
    }
    let ca = match &config.redis_ca {
        None => None,
        Some(path) => Some(std::fs::read(path).map_err(|e| StartError::Part {
            part: "redis",
            message: format!("--redis-ca {}: {e}", path.display()),
        })?),
    };
    let peer_urls: Vec<&str> = peers.iter().map(|p| p.url.as_str()).collect();
    RedisAccess::new(config.redis.clone(), ca, &peer_urls)
        .map(Some)
        .map_err(|message| StartError::Part {
            part: "redis",
            message,
        })
}

/// `rate` a second with bursts of twice as many (saturating).
fn per_second_burst_twice(rate: NonZeroU32) -> (NonZeroU32, NonZeroU32, Duration) {
    (rate.saturating_mul(nz!(2)), rate, Duration::from_secs(1))
}

/// `limit` as a layer policy named `name`, keyed by `key`.
fn layer(
    name: &str,
    (limit, quota): (Limit<HttpKey>, Quota),
    key: KeySource,
) -> Result<RateLimitLayer<Limit<HttpKey>>, StartError> {
    let policy = RateLimitPolicy::new(name, &quota, Arc::new(limit), key);
    RateLimitLayer::new(vec![policy.map_err(part("ratelimit"))?]).map_err(part("ratelimit"))
}

/// MaxMind's test databases, built in: the binary runs wherever it is copied (a
/// container image, `cargo install`) without files beside it.
const TEST_CITY_DB: &[u8] = include_bytes!("../data/geoip/GeoLite2-City-Test.mmdb");
const TEST_ASN_DB: &[u8] = include_bytes!("../data/geoip/GeoLite2-ASN-Test.mmdb");

/// The configured GeoIP database files, each defaulting to the built-in test database.
fn geo_lookup(config: &Config) -> Result<MaxMindLookup, palisade_threat_score::Error> {
    let read = |what, path: &Option<std::path::PathBuf>, built_in: &[u8]| {
        path.as_ref()
            .map_or_else(|| Ok(built_in.to_vec()), |p| MaxMindLookup::read(what, p))
    };
    MaxMindLookup::from_bytes(
        Some(read("city", &config.geoip_city, TEST_CITY_DB)?),
        Some(read("asn", &config.geoip_asn, TEST_ASN_DB)?),
    )
}

impl Gateway {
    /// Wires every crate for `config`, in memory.
    ///
    /// With `config.redis`, limits, blocks, revocations and verification keys are shared
    /// through Redis (one URL: a server; several: a cluster's nodes).
    pub async fn build(
        mut config: Config,
        clock: Arc<dyn Clock>,
        bus: Bus,
    ) -> Result<Gateway, StartError> {
        let dashboard = Arc::new(Dashboard::default());
        let users = Arc::new(Users::demo());
        let geo = Arc::new(geo_lookup(&config).map_err(part("geoip"))?);
        let scorer = Arc::new(
            ThreatScorer::builder()
                .clock(clock.clone())
                .geo(geo.clone())
                .build()
                .map_err(part("threat-score"))?,
        );
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| part("device-fp")("no random source"))?;
        let fingerprint_key = Arc::new(FingerprintKey::new(&secret).map_err(part("device-fp"))?);
        let devices = Arc::new(
            InMemoryDeviceStore::builder()
                .max_devices_per_user(
                    std::num::NonZeroUsize::new(8).unwrap_or(std::num::NonZeroUsize::MIN),
                )
                .policy(TrustPolicy::default())
                .clock(clock.clone())
                .build()
                .map_err(part("device-fp"))?,
        );
        let intel = if config.intel.is_empty() {
            None
        } else {
            Some(
                Intel::open(
                    config.intel.clone(),
                    Some(config.state_dir.join("intel-decisions.json")),
                )
                .map_err(part("intel"))?,
            )
        };
        let mut trusted = config.trusted_proxies.clone();
        if config.demo {
            // The demo scenario speaks from loopback and names its clients.
            trusted.push(palisade_core_traits::IpNetwork::host(IpAddr::from([
                127, 0, 0, 1,
            ])));
        }
        let proxies = if trusted.is_empty() {
            TrustedProxies::none()
        } else {
            TrustedProxies::networks(trusted)
        };
        // The limits read the gateway's clock: tests drive them with a ManualClock.
        // Redis down: addresses and API subjects pass (availability; every other check
        // still runs), login attempts per account are refused (no guessing while the
        // shared count is away).
        let peers = crate::regions::parse(&config.peer_regions, &config.region, &config.redis)?;
        let access = redis_access(&config, &peers)?;
        let redis = access.as_ref();
        let ip_limit = limit(
            redis,
            &clock,
            IP_POLICY,
            per_second_burst_twice(config.ip_rate),
            FailurePolicy::Open,
        )
        .await?;
        let ip_layer = layer(
            IP_POLICY,
            ip_limit.clone(),
            KeySource::ClientIp(proxies.clone()),
        )?;
        let (account_limit, _) = limit(
            redis,
            &clock,
            "login-account",
            ACCOUNT_QUOTA,
            FailurePolicy::Closed,
        )
        .await?;
        let subject_limit = limit(
            redis,
            &clock,
            SUBJECT_POLICY,
            per_second_burst_twice(config.subject_rate),
            FailurePolicy::Open,
        )
        .await?;
        let subject_layer = layer(SUBJECT_POLICY, subject_limit, KeySource::Subject)?;
        let mut revocation_replica = None;
        let (blacklist, revocation): (Arc<dyn TokenRevoker>, Arc<dyn RevocationCheck>) = match redis
        {
            None => {
                let b = Arc::new(
                    MemoryBlacklist::builder()
                        .config(revocation_config())
                        .clock(clock.clone())
                        .build()
                        .map_err(part("token-blacklist"))?,
                );
                (b.clone(), b)
            }
            Some(access) => {
                let mut builder = RedisBlacklist::builder()
                    .config(revocation_config())
                    .prefix(&format!("{REDIS_PREFIX}:revoked"))
                    .timeout(REVOCATION_TIMEOUT)
                    .clock(clock.clone());
                for peer in &peers {
                    builder = builder.relayed_from(&peer.name);
                }
                let b = Arc::new(
                    match access.urls.as_slice() {
                        [one] => {
                            let client = access.client(one).map_err(part("redis"))?;
                            builder.connect_client(client).await
                        }
                        many => {
                            // Every URL names a primary: the resync scans each.
                            let primaries = many
                                .iter()
                                .map(|u| access.client(u))
                                .collect::<Result<Vec<_>, _>>()
                                .map_err(part("redis"))?;
                            let conn = access
                                .cluster(REVOCATION_TIMEOUT)
                                .await
                                .map_err(part("redis"))?;
                            builder.connect_cluster_connection(conn, primaries).await
                        }
                    }
                    .map_err(part("redis"))?,
                );
                revocation_replica = Some(b.clone());
                (b.clone(), b)
            }
        };
        // One connection for the fleet's keys, idempotency records and step-ups.
        let conn = match redis {
            None => None,
            Some(access) => Some(RedisConn::connect(access).await.map_err(part("redis"))?),
        };
        let idem_store = match &conn {
            None => idempotency::Store::Memory,
            Some(conn) => idempotency::Store::Redis {
                conn: conn.clone(),
                prefix: format!("{REDIS_PREFIX}:idem"),
            },
        };
        let (dash, when) = (dashboard.clone(), clock.clone());
        let idempotency =
            Idempotency::new(idempotency::Config::default(), idem_store, move |o, who| {
                dash.publish(crate::activity::Activity::new(
                    when.now(),
                    crate::activity::Origin::default(),
                    crate::activity::What::Idempotency {
                        outcome: o.as_str().to_owned(),
                        client: who.0.clone(),
                    },
                ));
            });
        let incident_ids = (conn.as_ref()).map(|c| {
            crate::incident::FleetIds::new(c.clone(), &format!("{REDIS_PREFIX}:incident"))
        });
        let fleet = match &conn {
            None => None,
            Some(conn) => {
                let instance = format!("{}-{}", config.region, crate::http::random_id());
                Some(Arc::new(Fleet::new(
                    conn.clone(),
                    &format!("{REDIS_PREFIX}:jwks"),
                    &instance,
                    TOKEN_TTL + Duration::from_secs(60),
                )))
            }
        };
        let action_claims = (conn.as_ref())
            .zip(fleet.as_ref())
            .zip(incident_ids.as_ref())
            .map(|((c, f), ids)| {
                crate::response::ActionClaims::new(
                    c.clone(),
                    &format!("{REDIS_PREFIX}:playbooks"),
                    f.instance(),
                    ids.backoff(),
                )
            });
        let regions = match (redis, config.redis.as_slice()) {
            (Some(access), [_]) if !peers.is_empty() => Some(Arc::new(
                crate::regions::Regions::start(peers, access.clone())?,
            )),
            _ => None,
        };
        // Keys in the HSM survive a restart, and so does the ring that names them
        // (a state file beside the other state); software keys live and die with
        // the process.
        let (store, state_file): (Arc<dyn KeyStore>, _) =
            match (&config.pkcs11_module, &config.pkcs11_uri) {
                (Some(module), Some(uri)) => {
                    // Moved into the store's zeroized `Pin`: the configuration the
                    // gateway keeps holds no copy.
                    let pin = config.pkcs11_pin.take().ok_or_else(|| {
                        part("pkcs11")(
                            "--pkcs11-pin (PALISADE_PKCS11_PIN) is required with --pkcs11",
                        )
                    })?;
                    let store = Pkcs11Store::builder()
                        .module(module)
                        .token(uri.as_str())
                        .pin(Pin::new(pin))
                        .build()
                        .map_err(part("pkcs11"))?;
                    let file = config
                        .state_dir
                        .join(format!("keyring-{}.json", config.key_name));
                    (Arc::new(store), Some(file))
                }
                _ => (Arc::new(SoftStore::new()), None),
            };
        let mut ring = KeyRing::builder(store)
            .name(config.key_name.as_str())
            .algorithm(JwsAlgorithm::ES256)
            .max_token_lifetime(TOKEN_TTL)
            .clock(clock.clone());
        if let Some(file) = state_file {
            ring = ring.state_file(file);
        }
        let keys = Arc::new(ring.build().map_err(part("hsm-keys"))?);
        if keys.active().is_none() {
            keys.rotate().map_err(part("hsm-keys"))?;
        }
        let key_set =
            KeySet::from_jwks(&serde_json::to_vec(&keys.jwks()).map_err(part("hsm-keys"))?)
                .map_err(part("jwt-cache"))?;
        let policy = Policy::builder()
            .algorithms(&[Algorithm::ES256])
            .issuers(&[config.issuer.as_str()])
            .audiences(&[AUDIENCE])
            .required_claims(&["sub", "jti", "exp", "iat"])
            // Instances' clocks differ a little: a token minted by one (its `iat`) is
            // accepted at once by another.
            .leeway_secs(CLOCK_SKEW_SECS)
            .build()
            .map_err(part("jwt-cache"))?;
        let validator = Arc::new(
            Validator::builder()
                .policy(policy)
                .keys(key_set)
                .cache(TokenCache::builder().build().map_err(part("jwt-cache"))?)
                .clock(clock.clone())
                .revocation(revocation)
                .build()
                .map_err(part("jwt-cache"))?,
        );
        let auth = JwtAuth::builder()
            .validator(validator.clone())
            .realm("palisade")
            .build()
            .map_err(part("jwt-cache"))?;
        let operators = Arc::new(match &conn {
            Some(c) => crate::admin::Sessions::shared(clock.clone(), c.clone(), REDIS_PREFIX),
            None => crate::admin::Sessions::new(clock.clone()),
        });
        let step_ups = Arc::new(StepUps::new(
            clock.clone(),
            conn.map(|c| (c, format!("{REDIS_PREFIX}:stepup"))),
        ));
        let sessions = Arc::new(Sessions {
            revoker: blacklist.clone(),
            issuer: config.issuer.clone(),
            clock: clock.clone(),
            operators,
        });
        Ok(Gateway {
            config,
            clock,
            users,
            dashboard,
            bus,
            scorer,
            geo,
            devices,
            fingerprint_key,
            intel,
            idempotency,
            proxies,
            ip_limit: ip_limit.0,
            ip_layer,
            refusal_feed: crate::http::RefusalFeed::new(),
            account_limit,
            subject_layer,
            auth,
            blacklist,
            revocation_replica,
            fleet,
            incident_ids,
            action_claims,
            redis: access.clone(),
            regions,
            published_keys: arc_swap::ArcSwap::from_pointee(serde_json::Value::Null),
            validator,
            keys,
            step_ups,
            sessions,
            ct: std::sync::OnceLock::new(),
        })
    }

    /// Shows every key of the ring on the dashboard (after start and each rotation).
    pub fn publish_keys(&self) {
        for k in self.keys.keys() {
            let status = match k.state {
                palisade_hsm_keys::KeyState::Pending => "pending",
                palisade_hsm_keys::KeyState::Active => "active (signing)",
                palisade_hsm_keys::KeyState::Retiring { .. } => "published (verifying only)",
                _ => "retired",
            };
            self.dashboard.publish(crate::activity::Activity::new(
                self.clock.now(),
                crate::activity::Origin::default(),
                crate::activity::What::Key {
                    kid: k.info.kid().to_owned(),
                    alg: k.info.algorithm.to_string(),
                    status: status.into(),
                },
            ));
        }
    }

    /// Rotates the signing key: a new key signs, the old one stays published for the
    /// overlap (every token it signed can still be verified), keys past it are retired;
    /// the validator's key set follows the JWKS. In a fleet the new key is published
    /// first and signs only after every instance had time to read it.
    pub async fn rotate_keys(&self) -> Result<(), StartError> {
        let next = self.keys.prepare().map_err(part("hsm-keys"))?;
        if self.fleet.is_some() {
            self.refresh_keys().await?;
            tokio::time::sleep(FLEET_REFRESH * 3).await;
        }
        self.keys
            .activate(next.key.version)
            .map_err(part("hsm-keys"))?;
        self.keys.retire_due().map_err(part("hsm-keys"))?;
        self.refresh_keys().await?;
        self.publish_keys();
        Ok(())
    }

    /// Sets the verification keys (this ring's, and in a fleet every instance's, after
    /// writing this ring's there, and every peer region's) on the validator and the
    /// JWKS route. A fleet that cannot be read keeps the keys it had: tokens of other
    /// instances keep verifying with what was last known, this instance's own keys
    /// always do.
    pub async fn refresh_keys(&self) -> Result<(), StartError> {
        let own: Vec<serde_json::Value> = serde_json::to_value(self.keys.jwks())
            .map_err(part("hsm-keys"))?["keys"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut all = own.clone();
        if let Some(fleet) = &self.fleet {
            let now = self.clock.now().as_unix_secs();
            fleet.publish(&own, now).await.map_err(part("redis"))?;
            all.extend(fleet.read(now).await.map_err(part("redis"))?);
        }
        if let Some(regions) = &self.regions {
            all.extend(regions.keys(self.clock.now().as_unix_secs()).await);
        }
        let mut keys = crate::shared::union_by_kid(all);
        // In one order whatever order the fleet's keys were read in, so an unchanged
        // set is seen as such.
        keys.sort_by(|a, b| a["kid"].as_str().cmp(&b["kid"].as_str()));
        let jwks = serde_json::json!({ "keys": keys });
        // New keys empty the validator's cache (a new epoch): only when they differ,
        // or a fleet would verify every token again after each refresh.
        if **self.published_keys.load() == jwks {
            return Ok(());
        }
        let set = KeySet::from_jwks(jwks.to_string().as_bytes()).map_err(part("jwt-cache"))?;
        self.validator.set_keys(set);
        self.published_keys.store(Arc::new(jwks));
        Ok(())
    }

    /// Builds the lazily compiled parts (the User-Agent regexes) before the first login
    /// needs them.
    pub fn warm_up(&self) {
        let ctx = palisade_core_traits::RequestContext::new(
            IpAddr::from([192, 0, 2, 1]),
            self.clock.now(),
        )
        .with_user("warm-up")
        .with_header(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        );
        let inputs = palisade_device_fp::FingerprintInputs::from_request(&ctx);
        let _ = palisade_device_fp::DeviceFingerprint::compute(&self.fingerprint_key, &inputs);
        let _ = self.scorer.score(&ctx);
    }

    /// The playbooks' executor, wired to this gateway's crates.
    pub fn executor(&self) -> Result<palisade_playbooks::Executor, StartError> {
        let blocker: Arc<dyn IpBlocker> = self.ip_limit.blocker();
        let mut executor = palisade_playbooks::Executor::builder()
            .ip_blocker(blocker)
            .token_revoker(self.blacklist.clone())
            .step_up(self.step_ups.clone())
            .sessions(self.sessions.clone());
        if let Some(url) = &self.config.webhook {
            // The URL is often the credential: errors name the setting, never the URL.
            let notifier = palisade_playbooks::HttpNotifier::webhook(url.as_str())
                .source(format!("palisade-gateway/{}", self.config.region))
                .clock(self.clock.clone())
                .build()
                .map_err(part("webhook"))?;
            executor = executor.notifier(Arc::new(notifier));
        }
        executor.build().map_err(part("playbooks"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use palisade_core_traits::{ManualClock, Timestamp};
    use palisade_threat_score::GeoLookup;

    /// A start error names the part and the causes: the crates' errors name only
    /// their class ("redis failed"), which told an operator nothing.
    #[test]
    fn a_start_error_carries_its_causes() {
        let timed_out = palisade_ratelimit::redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer",
        ));
        let StartError::Part {
            part: named,
            message,
        } = part("redis")(palisade_ratelimit::Error::from(timed_out));
        assert_eq!(named, "redis");
        assert!(message.starts_with("redis failed: "), "{message}");
        assert!(message.contains("no answer"), "{message}");
        let StartError::Part { message, .. } = part("config")("plain words");
        assert_eq!(message, "plain words");
    }

    /// Without database files the built-in MaxMind test databases answer (facts from
    /// shared/testdata/MANIFEST.md, read with python's maxminddb); a file that is
    /// not there stops the start with its path, never falls back.
    #[test]
    fn geoip_defaults_to_the_built_in_test_databases() {
        let built_in = geo_lookup(&Config::try_parse_from(["palisade-gateway"]).unwrap());
        let london = built_in.unwrap().lookup(IpAddr::from([81, 2, 69, 142]));
        assert_eq!(london.country.as_deref(), Some("GB"));
        let (lat, lon) = london.location.unwrap();
        assert!((lat - 51.5142).abs() < 1e-4 && (lon + 0.0931).abs() < 1e-4);
        let built_in = geo_lookup(&Config::try_parse_from(["palisade-gateway"]).unwrap());
        assert_eq!(
            built_in.unwrap().lookup(IpAddr::from([1, 128, 0, 0])).asn,
            Some(1221)
        );
        for flag in ["--geoip-city", "--geoip-asn"] {
            let config =
                Config::try_parse_from(["palisade-gateway", flag, "/nonexistent/geo.mmdb"]);
            let error = geo_lookup(&config.unwrap()).unwrap_err().to_string();
            assert!(error.contains("/nonexistent/geo.mmdb"), "{flag}: {error}");
        }
    }

    /// Concurrent answers to one challenge, spread over two stores: exactly
    /// [`CHALLENGE_ATTEMPTS`] are let through, each with its own count of tries left.
    async fn attempts_are_spent_once(a: Arc<StepUps>, b: Arc<StepUps>) {
        let carol = IpAddr::from([192, 0, 2, 7]);
        let id = a.open("Carol", carol, Generation::default()).await.unwrap();
        // From another address: refused, and no attempt spent.
        for s in [&a, &b] {
            for _ in 0..CHALLENGE_ATTEMPTS + 1 {
                let elsewhere = s.attempt(&id, IpAddr::from([192, 0, 2, 8])).await;
                assert!(elsewhere.unwrap().is_none());
            }
        }
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (s, id) = (if i % 2 == 0 { &a } else { &b }.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                s.attempt(&id, IpAddr::from([192, 0, 2, 7])).await.unwrap()
            }));
        }
        let mut left = Vec::new();
        for t in tasks {
            if let Some(ch) = t.await.unwrap() {
                assert_eq!(
                    (ch.user.as_str(), ch.ip),
                    ("carol", IpAddr::from([192, 0, 2, 7]))
                );
                left.push(ch.attempts_left);
            }
        }
        left.sort_unstable();
        assert_eq!(left, (0..CHALLENGE_ATTEMPTS).collect::<Vec<_>>());
        let from_owner = b.attempt(&id, IpAddr::from([192, 0, 2, 7])).await;
        assert!(from_owner.unwrap().is_none());
    }

    /// A TOTP step passes once across two stores, even sent to both at once; a later
    /// step passes, an earlier one no longer does; users are apart.
    async fn totp_steps_are_spent_once(a: Arc<StepUps>, b: Arc<StepUps>) {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = if i % 2 == 0 { &a } else { &b }.clone();
            tasks.push(tokio::spawn(async move {
                s.spend_totp_step("Carol", 60_000_001).await.unwrap()
            }));
        }
        let mut passed = 0;
        for t in tasks {
            passed += usize::from(t.await.unwrap());
        }
        assert_eq!(passed, 1);
        assert!(!b.spend_totp_step("carol", 60_000_000).await.unwrap());
        assert!(a.spend_totp_step("carol", 60_000_002).await.unwrap());
        assert!(!b.spend_totp_step("CAROL", 60_000_002).await.unwrap());
        assert!(b.spend_totp_step("dave", 60_000_001).await.unwrap());
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_on_redis_spend_attempts_and_totp_steps_once() {
        let server = palisade_testkit::RedisServer::start();
        let on_redis = || async {
            let conn = RedisConn::connect(
                &crate::shared::RedisAccess::new(vec![server.url()], None, &[]).unwrap(),
            )
            .await
            .unwrap();
            Arc::new(StepUps::new(clock(), Some((conn, "test:stepup".into()))))
        };
        attempts_are_spent_once(on_redis().await, on_redis().await).await;
        totp_steps_are_spent_once(on_redis().await, on_redis().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_instance_in_memory_spends_attempts_and_totp_steps_once() {
        let s = Arc::new(StepUps::new(clock(), None));
        attempts_are_spent_once(s.clone(), s.clone()).await;
        totp_steps_are_spent_once(s.clone(), s).await;
    }
}

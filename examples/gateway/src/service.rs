//! The gateway's shared state: every crate, wired once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core_traits::{
    Clock, Error as CoreError, IpBlocker, RevocationCheck, SessionTerminator, StepUpRequirer,
    TokenRevoker, TrustedProxies, async_trait, normalize_user_id,
};
use palisade_device_fp::{FingerprintKey, InMemoryDeviceStore, TrustPolicy};
use palisade_hsm_keys::{JwsAlgorithm, KeyRing, SoftStore};
use palisade_jwt_cache::{Algorithm, KeySet, Policy, TokenCache, Validator};
use palisade_ratelimit::{KeyedLimiter, Quota};
use palisade_threat_score::{MaxMindLookup, ThreatScorer};
use palisade_token_blacklist::MemoryBlacklist;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::Config;
use crate::dashboard::Dashboard;
use crate::idempotency::{self, Idempotency};
use crate::intel::Intel;
use crate::response::Bus;
use crate::users::Users;

/// Lifetime of issued access tokens.
pub const TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a step-up challenge may be answered, and how many codes it accepts.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// Wrong codes before a challenge is spent.
pub const CHALLENGE_ATTEMPTS: u32 = 3;
/// The audience of issued tokens.
pub const AUDIENCE: &str = "palisade-gateway";

/// A pending step-up: the user whose password was accepted, until when, tries left.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Normalized user id.
    pub user: String,
    /// The client address that started it (the code must come from the same place).
    pub ip: IpAddr,
    /// Monotonic deadline.
    pub until: Duration,
    /// Wrong codes left.
    pub attempts_left: u32,
}

/// Step-up requirements set by playbooks, and pending challenges.
#[derive(Debug)]
pub struct StepUps {
    clock: Arc<dyn Clock>,
    /// user → monotonic deadline of "the next login must step up".
    required: Mutex<HashMap<String, Duration>>,
    /// challenge id → challenge.
    challenges: Mutex<HashMap<String, Challenge>>,
    rng: SystemRandom,
}

/// Pending challenges kept at once (a flood of correct passwords cannot grow memory).
const MAX_CHALLENGES: usize = 10_000;

impl StepUps {
    fn new(clock: Arc<dyn Clock>) -> Self {
        StepUps {
            clock,
            required: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
        }
    }

    /// Whether the user's next login must step up.
    pub fn required(&self, user: &str) -> bool {
        let now = self.clock.monotonic();
        let mut r = self.required.lock().unwrap_or_else(|e| e.into_inner());
        r.retain(|_, until| *until > now);
        r.contains_key(normalize_user_id(user).as_ref())
    }

    /// Opens a challenge; returns its id.
    pub fn open(&self, user: &str, ip: IpAddr) -> String {
        let mut id = [0u8; 16];
        self.rng
            .fill(&mut id)
            .unwrap_or_else(|_| unreachable!("the OS random source failed"));
        let id = hex::encode(id);
        let now = self.clock.monotonic();
        let mut c = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|_, ch| ch.until > now);
        if c.len() >= MAX_CHALLENGES
            && let Some(k) = (c.iter())
                .min_by_key(|(_, ch)| ch.until)
                .map(|(k, _)| k.clone())
        {
            c.remove(&k);
        }
        c.insert(
            id.clone(),
            Challenge {
                user: normalize_user_id(user).into_owned(),
                ip,
                until: now + CHALLENGE_TTL,
                attempts_left: CHALLENGE_ATTEMPTS,
            },
        );
        id
    }

    /// The live challenge `id`, spending one attempt; `None` if unknown, expired or spent.
    pub fn attempt(&self, id: &str) -> Option<Challenge> {
        let now = self.clock.monotonic();
        let mut c = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        let ch = c.get_mut(id)?;
        if ch.until <= now || ch.attempts_left == 0 {
            c.remove(id);
            return None;
        }
        ch.attempts_left -= 1;
        Some(ch.clone())
    }

    /// Closes a challenge (answered).
    pub fn close(&self, id: &str) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
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
        let until = self.clock.monotonic() + valid_for;
        let mut r = self.required.lock().unwrap_or_else(|e| e.into_inner());
        let entry = r
            .entry(normalize_user_id(user_id).into_owned())
            .or_default();
        *entry = (*entry).max(until);
        Ok(())
    }
}

/// Ends a user's sessions: the gateway's sessions are its tokens, so this revokes
/// every token issued to the user until now.
#[derive(Debug)]
pub struct Sessions {
    revoker: Arc<dyn TokenRevoker>,
    issuer: String,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl SessionTerminator for Sessions {
    async fn terminate_sessions(
        &self,
        user_id: &str,
        _reason: &str,
    ) -> Result<Option<u64>, CoreError> {
        let user = normalize_user_id(user_id);
        self.revoker
            .revoke_user(&self.issuer, &user, self.clock.now())
            .await?;
        Ok(None)
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
    /// Per-address limit (every request).
    pub ip_limit: Limiter<IpAddr>,
    /// Per-account limit on logins.
    pub account_limit: Limiter<String>,
    /// Per-subject limit on `/api`.
    pub subject_limit: Limiter<String>,
    /// Revocations.
    pub blacklist: Arc<MemoryBlacklist>,
    /// Token validation (cache, revocation).
    pub validator: Arc<Validator>,
    /// Signing keys.
    pub keys: Arc<KeyRing<SoftStore>>,
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

fn part<E: std::fmt::Display>(part: &'static str) -> impl FnOnce(E) -> StartError {
    move |e| StartError::Part {
        part,
        message: e.to_string(),
    }
}

type Limiter<K> = Arc<KeyedLimiter<K, Arc<dyn Clock>>>;

fn limiter<K: palisade_ratelimit::Key>(
    clock: &Arc<dyn Clock>,
    burst: u32,
    rate: u32,
    period: Duration,
) -> Result<Limiter<K>, StartError> {
    Quota::new(burst, rate, period)
        .map(|q| Arc::new(KeyedLimiter::with_clock(q, clock.clone())))
        .map_err(part("ratelimit"))
}

impl Gateway {
    /// Wires every crate for `config`, in memory.
    pub fn build(config: Config, clock: Arc<dyn Clock>, bus: Bus) -> Result<Gateway, StartError> {
        // Refused rather than ignored: an operator who asked for shared state or an HSM
        // and silently got neither would run instances that disagree.
        if !config.redis.is_empty() {
            return Err(part("redis")(
                "--redis is not wired into the gateway yet: limits, revocations and blocks \
                 are per instance (docs/gateway.md, \"Not built yet\")",
            ));
        }
        if config.pkcs11_uri.is_some() {
            return Err(part("pkcs11")(
                "--pkcs11 is not wired into the gateway yet: keys are software keys \
                 (docs/gateway.md, \"Not built yet\")",
            ));
        }
        let dashboard = Arc::new(Dashboard::default());
        let users = Arc::new(Users::demo());
        let geo = Arc::new(
            MaxMindLookup::open(Some(&config.geoip_city), Some(&config.geoip_asn))
                .map_err(part("geoip"))?,
        );
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
            Some(Intel::open(config.intel.clone()).map_err(part("intel"))?)
        };
        let (dash, when) = (dashboard.clone(), clock.clone());
        let idempotency = Idempotency::new(idempotency::Config::default(), move |o, who| {
            dash.publish(crate::activity::Activity::new(
                when.now(),
                crate::activity::Origin::default(),
                crate::activity::What::Idempotency {
                    outcome: o.as_str().to_owned(),
                    client: who.0.clone(),
                },
            ));
        });
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
        let ip_limit = limiter(&clock, 60, 30, Duration::from_secs(1))?;
        let account_limit = limiter(&clock, 5, 5, Duration::from_secs(60))?;
        let subject_limit = limiter(&clock, 100, 50, Duration::from_secs(1))?;
        let blacklist = Arc::new(
            MemoryBlacklist::builder()
                .clock(clock.clone())
                .build()
                .map_err(part("token-blacklist"))?,
        );
        let keys = Arc::new(
            KeyRing::builder(SoftStore::new())
                .name("gateway")
                .algorithm(JwsAlgorithm::ES256)
                .max_token_lifetime(TOKEN_TTL)
                .clock(clock.clone())
                .build()
                .map_err(part("hsm-keys"))?,
        );
        keys.rotate().map_err(part("hsm-keys"))?;
        let key_set =
            KeySet::from_jwks(&serde_json::to_vec(&keys.jwks()).map_err(part("hsm-keys"))?)
                .map_err(part("jwt-cache"))?;
        let policy = Policy::builder()
            .algorithms(&[Algorithm::ES256])
            .issuers(&[config.issuer.as_str()])
            .audiences(&[AUDIENCE])
            .required_claims(&["sub", "jti", "exp", "iat"])
            .build()
            .map_err(part("jwt-cache"))?;
        let revocation: Arc<dyn RevocationCheck> = blacklist.clone();
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
        let step_ups = Arc::new(StepUps::new(clock.clone()));
        let sessions = Arc::new(Sessions {
            revoker: blacklist.clone(),
            issuer: config.issuer.clone(),
            clock: clock.clone(),
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
            ip_limit,
            account_limit,
            subject_limit,
            blacklist,
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
    /// the validator's key set follows the JWKS.
    pub fn rotate_keys(&self) -> Result<(), StartError> {
        self.keys.rotate().map_err(part("hsm-keys"))?;
        self.keys.retire_due().map_err(part("hsm-keys"))?;
        let jwks = serde_json::to_vec(&self.keys.jwks()).map_err(part("hsm-keys"))?;
        self.validator
            .set_keys(KeySet::from_jwks(&jwks).map_err(part("jwt-cache"))?);
        self.publish_keys();
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
        let blocker: Arc<dyn IpBlocker> = self.ip_limit.clone();
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

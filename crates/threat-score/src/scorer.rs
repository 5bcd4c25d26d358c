//! The scorer: preparing an attempt from a request context, scoring, recording,
//! events and counters. Shared by reference: every method takes `&self`.

use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use palisade_core_traits::{
    Clock, EventId, EventKind, EvidenceBasis, LoginOutcome, RequestContext, Score, SecurityEvent,
    Severity, Subject, Timestamp, canonical_ip, client_net, normalize_user_id,
};
use siphasher::sip::SipHasher13;

use crate::config::Config;
use crate::freeman::{Entry, Fix, LEVELS, Model, entry_secs, typical};
use crate::hst::HalfSpaceTrees;
use crate::signals::{DeviceSignal, GeoLookup, Signals};
use crate::sync::{read, write};
use crate::ua::UaParser;
use crate::velocity::{FailureSource, HeavyHitter, SourceKind, Sources, Velocity};
use crate::verdict::{Contribution, Signal, ThreatScore, Verdict};
use crate::{EVENT_SOURCE, ThreatScorerBuilder};

/// The scorer: histories, counters and configuration.
///
/// Every method takes `&self`: hold it in an `Arc<ThreatScorer>` and call it from any
/// task. Per-user state is sharded by user and behind read–write locks, the global
/// counts sharded by value, the velocity counters atomic, the behavioural detector
/// behind its own lock (written only by a recorded success). Build it with
/// [`ThreatScorer::builder`].
pub struct ThreatScorer {
    pub(crate) config: Config,
    pub(crate) key: (u64, u64),
    pub(crate) model: Model,
    pub(crate) velocity: Velocity,
    pub(crate) ua: Arc<dyn UaParser>,
    pub(crate) geo: Option<Arc<dyn GeoLookup>>,
    pub(crate) device: Option<Arc<dyn DeviceSignal>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) behaviour: Option<RwLock<HalfSpaceTrees>>,
    pub(crate) evicted: AtomicU64,
}

impl fmt::Debug for ThreatScorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreatScorer")
            .field("users", &self.model.users())
            .field("logins", &self.model.total())
            .finish_non_exhaustive()
    }
}

/// Counters of a scorer, from [`ThreatScorer::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Users with a retained history.
    pub users: usize,
    /// Retained successful logins over all users.
    pub logins: u64,
    /// Bytes accounted against the memory budget (histories, per-user overhead,
    /// global value counts), over all shards.
    pub memory_bytes: usize,
    /// The budget ([`Config::memory_budget_bytes`]).
    pub memory_budget_bytes: usize,
    /// Bytes of the fixed-size velocity counters and heavy-hitter slots (not part of
    /// the budget).
    pub velocity_memory_bytes: usize,
    /// Users forgotten to hold the memory budget since the scorer was built.
    pub evicted_users: u64,
}

/// Great-circle distance in km.
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371.0 * h.sqrt().clamp(0.0, 1.0).asin()
}

/// An attempt as the scorer uses it: canonical keys, hashed values, resolved signals.
struct Prepared {
    asn: Option<u32>,
    /// The client's network as the velocity counters key it (`client_net`).
    net: IpAddr,
    user: u64,
    values: [u64; LEVELS],
    sources: Sources,
    location: Option<(f64, f64)>,
    device: Option<f64>,
}

fn risk_share(r: f64) -> f64 {
    // Evidence weight of a risk under noisy-OR: −ln(1 − r), finite, precise for tiny r.
    -(-r.clamp(0.0, 1.0 - 1e-12)).ln_1p()
}

/// The user id of a context as written (empty when the context names nobody).
fn user_of(ctx: &RequestContext) -> &str {
    ctx.user_id.as_deref().unwrap_or("")
}

impl ThreatScorer {
    /// A builder with the default configuration, the system clock, the built-in UA
    /// parser and no geo lookup or device signal.
    pub fn builder() -> ThreatScorerBuilder {
        ThreatScorerBuilder::default()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters: users, retained logins, accounted memory, evictions.
    pub fn stats(&self) -> Stats {
        Stats {
            users: self.model.users(),
            logins: self.model.total(),
            memory_bytes: self.model.memory_bytes(),
            memory_budget_bytes: self.config.memory_budget_bytes,
            velocity_memory_bytes: self.velocity.memory_bytes(),
            evicted_users: self.evicted.load(Relaxed),
        }
    }

    pub(crate) fn hash(&self, tag: u8, bytes: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u8(tag);
        h.write(bytes);
        match h.finish() {
            0 => 1,
            x => x,
        }
    }

    fn prepare(&self, ctx: &RequestContext, signals: &Signals) -> Prepared {
        // Keys are canonical: a dual-stack listener's `::ffff:a.b.c.d` is `a.b.c.d`, and
        // `Admin` is `admin` (core-traits' rules, shared by every crate).
        let ip = canonical_ip(ctx.peer_ip);
        let looked_up;
        let geo = match &signals.geo {
            Some(g) => g,
            None => {
                looked_up = self.geo.as_ref().map(|g| g.lookup(ip)).unwrap_or_default();
                &looked_up
            }
        };
        let user_agent = ctx.user_agent().unwrap_or("");
        let ua = self.ua.parse(user_agent);
        let octets = |a: IpAddr| match a {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        // The velocity counters key a client as the family does (core-traits'
        // `client_net`, as ratelimit and playbooks): an IPv6 address as its /64, one
        // that carries an IPv4 client (6to4, Teredo, NAT64) as that IPv4 address. An
        // attacker rotating addresses inside a /64 is one source.
        let net = client_net(ip);
        let prefix = match net {
            IpAddr::V4(v4) => self.hash(8, &v4.octets()[..3]),
            IpAddr::V6(v6) => self.hash(9, &v6.octets()[..8]),
        };
        let asn = geo.asn.map_or(0, |n| self.hash(1, &n.to_be_bytes()));
        let country = geo
            .country
            .as_ref()
            .filter(|c| !c.is_empty())
            .map_or(0, |c| self.hash(2, c.to_ascii_uppercase().as_bytes()));
        let ip_hash = self.hash(0, &octets(ip));
        let values = [
            ip_hash,
            asn,
            country,
            self.hash(3, user_agent.as_bytes()),
            self.hash(4, ua.browser.as_bytes()),
            self.hash(5, ua.os.as_bytes()),
            self.hash(6, ua.device.as_bytes()),
        ];
        let user_id = normalize_user_id(user_of(ctx));
        let user = self.hash(7, user_id.as_bytes());
        let location = geo.location.filter(|(la, lo)| {
            la.is_finite() && lo.is_finite() && la.abs() <= 90.0 && lo.abs() <= 180.0
        });
        let device = signals
            .device_familiarity
            .or_else(|| (self.device.as_ref()).and_then(|d| d.familiarity(&user_id, ctx)))
            .filter(|f| f.is_finite())
            .map(|f| f.clamp(0.0, 1.0));
        Prepared {
            asn: geo.asn,
            net,
            user,
            values,
            sources: Sources {
                user,
                // An IPv4 client is its own network: its hash is already made.
                ip: if net == ip {
                    ip_hash
                } else {
                    self.hash(0, &octets(net))
                },
                prefix,
                asn,
            },
            location,
            device,
        }
    }

    fn now_secs(&self) -> u64 {
        self.clock.now().as_unix_secs()
    }

    /// Scores the attempt of `ctx` (peer address, user id, `User-Agent` header) with
    /// nothing beside it: geo facts from the scorer's [`GeoLookup`], device familiarity
    /// from its [`DeviceSignal`], no behavioural features. Read-only: call
    /// [`record`](Self::record) with the outcome. Time is the scorer's clock, not
    /// `ctx.timestamp`.
    pub fn score(&self, ctx: &RequestContext) -> ThreatScore {
        self.score_with(ctx, &Signals::default())
    }

    /// Scores the attempt of `ctx` with what the caller knows beside it.
    pub fn score_with(&self, ctx: &RequestContext, signals: &Signals) -> ThreatScore {
        let p = self.prepare(ctx, signals);
        let now = self.now_secs();
        let cfg = &self.config;
        let mut parts: Vec<(Signal, f64, f64, String)> = Vec::with_capacity(8); // signal, risk, weight, reason
        let (mut freeman, fix) = {
            let shard = read(self.model.shard(p.user));
            match shard.get(&p.user) {
                Some(u) => {
                    let mut f = self.model.score_history(&u.history, &p.values);
                    if let (Some(f), Some(s)) = (&mut f, &cfg.user_scale) {
                        f.typical = typical(&u.history, s.window.get(), s.min_samples.get());
                    }
                    (f, u.fix)
                }
                None => (None, None),
            }
        };
        let history = freeman.map_or(0, |f| f.history);
        match &mut freeman {
            Some(f) => {
                let global = cfg.calibration.map(f.raw);
                let (r, scale) = match (f.typical, &cfg.user_scale) {
                    (Some(m), Some(u)) => {
                        let x = f.raw / m;
                        let r = u.calibration.map(x);
                        (
                            r,
                            format!(
                                "; on this user's scale: S is {x:.2}× this user's usual, \
                                 risk {r:.2} (the global scale would give {global:.2})"
                            ),
                        )
                    }
                    _ => (global, String::new()),
                };
                let w = risk_share(r);
                let logs = [
                    (Signal::IpFamiliarity, f.ip.factor, f.ip.never_seen),
                    (Signal::UserAgentFamiliarity, f.ua.factor, f.ua.never_seen),
                    (Signal::LoginRarity, f.user_factor, false),
                ];
                let positive: f64 = logs.iter().map(|(_, x, _)| x.ln().max(0.0)).sum();
                // The largest factor carries the risk when none is above 1 (familiar login).
                let largest = logs.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
                for (signal, factor, never) in logs {
                    let l = factor.ln().max(0.0);
                    let part = if positive > 0.0 {
                        w * l / positive
                    } else if factor == largest {
                        w
                    } else {
                        0.0
                    };
                    if part > 0.0 || (positive == 0.0 && factor == largest) {
                        let reason = match (signal, never) {
                            (Signal::LoginRarity, _) => {
                                format!("user has {} logins; factor {factor:.3}", f.history)
                            }
                            (_, true) => format!("never seen for this user (factor {factor:.3})"),
                            _ => format!("familiarity factor {factor:.3} (below 1 is familiar)"),
                        } + &scale;
                        parts.push((signal, r, part, reason));
                        if positive == 0.0 {
                            break;
                        }
                    }
                }
            }
            None => {
                let r = cfg.no_history_risk;
                parts.push((
                    Signal::NoHistory,
                    r,
                    risk_share(r),
                    "no successful login to compare with".to_owned(),
                ));
            }
        }
        let v = self.velocity.risk(now, p.sources, &cfg.velocity);
        for (signal, r, reason) in [
            (
                Signal::BruteForce,
                v.brute_force,
                format!(
                    "{} failed logins on this username in a window",
                    v.user_failures
                ),
            ),
            (
                Signal::CredentialStuffing,
                v.stuffing,
                format!(
                    "failed logins in a window: {} from this IP, {} from its prefix, {} \
                     from its ASN",
                    v.ip_failures, v.prefix_failures, v.asn_failures
                ),
            ),
            (
                Signal::PasswordSpray,
                v.spray,
                format!(
                    "usernames failed in a window: {} from this IP, {} from its prefix",
                    v.ip_distinct_users, v.prefix_distinct_users
                ),
            ),
        ] {
            if r > 0.0 {
                parts.push((signal, r, risk_share(r), reason));
            }
        }
        if let (Some(here), Some(fix)) = (p.location, fix) {
            let km = haversine_km((f64::from(fix.lat), f64::from(fix.lon)), here);
            if km >= cfg.travel_min_km && km.is_finite() {
                let hours = now.saturating_sub(fix.at_secs) as f64 / 3600.0;
                let speed = if hours > 0.0 {
                    km / hours
                } else {
                    f64::INFINITY
                };
                let x = speed / cfg.travel_speed_kmh;
                let r = if x.is_finite() {
                    1.0 - (-x).exp2()
                } else {
                    1.0
                };
                parts.push((
                    Signal::ImpossibleTravel,
                    r,
                    risk_share(r),
                    format!("{km:.0} km from the last login in {hours:.2} h"),
                ));
            }
        }
        if let Some(f) = p.device {
            let r = cfg.new_device_risk * (1.0 - f);
            if r > 0.0 {
                parts.push((
                    Signal::NewDevice,
                    r,
                    risk_share(r),
                    format!("device familiarity {f:.2}"),
                ));
            }
        }
        if let (Some(b), Some(h)) = (&cfg.behaviour, &self.behaviour)
            && !signals.numeric.is_empty()
        {
            let a = read(h).score(&signals.numeric);
            let r = b.weight * ((a - b.floor) / (1.0 - b.floor)).clamp(0.0, 1.0);
            if r > 0.0 {
                parts.push((
                    Signal::BehaviourAnomaly,
                    r,
                    risk_share(r),
                    format!("request features anomaly score {a:.2} (Half-Space Trees)"),
                ));
            }
        }
        // Noisy-OR: score = 1 − Π(1 − r_i) = 1 − exp(−Σ w_i).
        let total: f64 = parts.iter().map(|x| x.2).sum();
        let username_only: f64 = parts
            .iter()
            .filter(|x| x.0 == Signal::BruteForce)
            .map(|x| x.2)
            .sum();
        let score = if total.is_finite() {
            (1.0 - (-total).exp()).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let mut contributions: Vec<Contribution> = parts
            .into_iter()
            .map(|(signal, risk, w, reason)| Contribution {
                signal,
                risk,
                share: if total > 0.0 && total.is_finite() {
                    w / total
                } else {
                    0.0
                },
                reason,
            })
            .collect();
        contributions.sort_by(|a, b| b.share.total_cmp(&a.share));
        let confidence = (history as f64 / cfg.min_history.get() as f64).min(1.0);
        let mut verdict = cfg.thresholds.verdict(score);
        // Failures on a username can come from anyone, anywhere: on their own they
        // step the next login up, never block it, or failing logins on an account
        // would lock its owner out.
        if verdict == Verdict::Block
            && username_only > 0.0
            && cfg
                .thresholds
                .verdict(1.0 - (-(total - username_only)).exp())
                != Verdict::Block
        {
            verdict = Verdict::StepUp;
            if let Some(c) = contributions
                .iter_mut()
                .find(|c| c.signal == Signal::BruteForce)
            {
                c.reason
                    .push_str("; failures on the username alone step a login up, never block it");
            }
        }
        crate::telemetry::scored(
            verdict,
            contributions.first().map_or("none", |c| c.signal.name()),
        );
        // No user id, address or reason text in the fields: only the decision.
        tracing::debug!(
            ?verdict,
            score,
            confidence,
            top = contributions.first().map_or("none", |c| c.signal.name()),
            user_scale = freeman.is_some_and(|f| f.typical.is_some()),
            "threat-score: scored"
        );
        ThreatScore {
            score,
            confidence,
            verdict,
            contributions,
            freeman,
            velocity: v,
        }
    }

    /// Records the outcome of the attempt of `ctx`, taken from `ctx.login`. Only a
    /// completed login (`Success`, or `StepUpSuccess` after a step-up) teaches the
    /// user's history and the behavioural detector; every outcome feeds the velocity
    /// counters.
    ///
    /// A context without a login outcome is refused with [`Error::NoLoginOutcome`]
    /// (nothing is recorded): a caller that forgot to set it would otherwise never
    /// train the model, or count failures as nothing, without noticing.
    ///
    /// [`Error::NoLoginOutcome`]: crate::Error::NoLoginOutcome
    pub fn record(&self, ctx: &RequestContext, signals: &Signals) -> Result<(), crate::Error> {
        let Some(outcome) = ctx.login else {
            tracing::warn!("threat-score: record refused, the context has no login outcome");
            crate::telemetry::recorded("refused");
            return Err(crate::Error::NoLoginOutcome);
        };
        let p = self.prepare(ctx, signals);
        let now = self.now_secs();
        let success = matches!(outcome, LoginOutcome::Success | LoginOutcome::StepUpSuccess);
        self.velocity.record(now, p.sources, success);
        crate::telemetry::recorded(if success { "success" } else { "failure" });
        if !success {
            let mut sources = vec![FailureSource::Ip(p.net), FailureSource::prefix_of(p.net)];
            sources.extend(p.asn.map(FailureSource::Asn));
            self.velocity.record_failure_sources(now, &sources);
            return Ok(());
        }
        if let Some(h) = &self.behaviour
            && !signals.numeric.is_empty()
        {
            write(h).learn(&signals.numeric);
        }
        {
            // The user's score and history change together, under the shard's lock.
            let mut shard = write(self.model.shard(p.user));
            // The login's own score, kept for the per-user scale.
            let raw = match self.config.user_scale {
                Some(_) => shard
                    .get(&p.user)
                    .and_then(|u| self.model.score_history(&u.history, &p.values))
                    // Clamped so f32 neither overflows to infinity nor underflows to 0.
                    .map_or(f32::NAN, |f| {
                        (f.raw as f32).clamp(f32::MIN_POSITIVE, f32::MAX)
                    }),
                None => f32::NAN,
            };
            let entry = Entry {
                at_secs: entry_secs(now),
                values: p.values,
                raw,
            };
            self.model.learn_in(
                &mut shard,
                p.user,
                entry,
                self.config.history_cap.get(),
                self.config.history_max_age_secs,
            );
            if let (Some((lat, lon)), Some(u)) = (p.location, shard.get_mut(&p.user)) {
                u.fix = Some(Fix {
                    at_secs: now,
                    lat: lat as f32,
                    lon: lon as f32,
                });
            }
        }
        let evicted = self.model.evict(p.user, self.config.memory_budget_bytes);
        crate::telemetry::memory(evicted, self.model.users(), self.model.memory_bytes());
        if evicted > 0 {
            self.evicted.fetch_add(evicted, Relaxed);
            tracing::debug!(
                evicted,
                memory_bytes = self.model.memory_bytes(),
                budget = self.config.memory_budget_bytes,
                "threat-score: least recently active users forgotten to hold the memory budget"
            );
        }
        Ok(())
    }

    /// The `n` sources of `kind` (IPs, /24 or /64 prefixes, ASNs) with the most failed
    /// logins in window `window` (an index into [`WINDOWS`](crate::WINDOWS): 0 = 1 min,
    /// 1 = 10 min, 2 = 1 h), largest first, from fixed-size Space-Saving summaries:
    /// counts never under-estimate, and [`HeavyHitter::error`] bounds the over-estimate.
    pub fn top_failing_sources(
        &self,
        window: usize,
        kind: SourceKind,
        n: usize,
    ) -> Vec<HeavyHitter> {
        self.velocity.top_failing(window, self.now_secs(), kind, n)
    }

    /// Forgets a user (account deletion, erasure request); `user` is normalized.
    pub fn forget_user(&self, user: &str) {
        let u = self.hash(7, normalize_user_id(user).as_bytes());
        self.model.forget(u);
    }

    /// A security event for a verdict above allow, `None` for allow.
    ///
    /// `ctx.login`, what became of the attempt, decides what the event may justify
    /// ([`SecurityEvent::basis`]): when the primary credential was accepted (`Success`,
    /// `StepUpSuccess`, `StepUpFailure`) the evidence is tied to an authenticated
    /// session, [`EvidenceBasis::Authenticated`], and a playbook may end the account's
    /// sessions; a `Failure`, or no outcome, is anyone's attempt on a username,
    /// [`EvidenceBasis::Unauthenticated`]: it may step up the next login and notify,
    /// never log the owner out. The evidence holds the outcome (`none` without one),
    /// the canonical address, the verdict, the confidence and every contribution.
    pub fn event(&self, ctx: &RequestContext, score: &ThreatScore) -> Option<SecurityEvent> {
        let severity = match score.verdict {
            Verdict::Allow => return None,
            Verdict::Monitor => Severity::Low,
            Verdict::StepUp => Severity::Medium,
            Verdict::Block => Severity::High,
        };
        let top = score
            .contributions
            .first()
            .map_or(Signal::IpFamiliarity, |c| c.signal);
        let now: Timestamp = self.clock.now();
        let user_id = normalize_user_id(user_of(ctx));
        let id = format!(
            "threat-score-{:016x}-{}",
            self.hash(10, user_id.as_bytes()),
            now.as_unix_nanos()
        );
        let id = EventId::new(id).ok()?;
        let ip = canonical_ip(ctx.peer_ip);
        let kind = top.event_kind();
        // A brute force, stuffing or spray is the source's doing when the address's own
        // failures carry it: the event is then about the address (what a response may
        // block), the targeted account goes in the evidence. A username's failures
        // from elsewhere, or a prefix's or an ASN's, are not this address's doing (it
        // may be the owner's): such an event, and every other, is about the account.
        let v = &score.velocity;
        let about_source = match kind {
            EventKind::BruteForce => v.ip_brute_force >= 0.5,
            EventKind::CredentialStuffing => v.ip_stuffing >= 0.5,
            EventKind::PasswordSpray => v.ip_spray >= 0.5,
            _ => false,
        };
        let subject = if user_id.is_empty() || about_source {
            Subject::ip(ip)
        } else {
            Subject::user(&user_id)
        };
        let basis = match ctx.login {
            // The password was accepted.
            Some(
                LoginOutcome::Success | LoginOutcome::StepUpSuccess | LoginOutcome::StepUpFailure,
            ) => EvidenceBasis::Authenticated,
            // A failure, no outcome, or an unknown future outcome: the weaker evidence.
            _ => EvidenceBasis::Unauthenticated,
        };
        crate::telemetry::event(score.verdict, basis.may_act_on_account());
        let outcome = ctx
            .login
            .map_or_else(|| "none".to_owned(), |o| format!("{o:?}").to_lowercase());
        let mut ev = SecurityEvent::new(id, now, kind, severity, subject, EVENT_SOURCE)
            .with_basis(basis)
            .with_evidence("ip", ip.to_string())
            .with_evidence("outcome", outcome)
            .with_evidence("verdict", format!("{:?}", score.verdict).to_lowercase())
            .with_evidence("confidence", format!("{:.2}", score.confidence));
        if !user_id.is_empty() {
            ev = ev.with_evidence("user", user_id.into_owned());
        }
        if let Ok(s) = Score::new(score.score) {
            ev = ev.with_score(s);
        }
        for c in &score.contributions {
            ev = ev.with_evidence(
                c.signal.name(),
                format!("share {:.2}: {}", c.share, c.reason),
            );
        }
        Some(ev)
    }
}

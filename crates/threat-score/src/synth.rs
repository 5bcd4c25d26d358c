//! A seeded synthetic login generator for evaluation, in the spirit of the RBA data set
//! (Wiefling et al.): users with home and mobile networks, dynamic IPs, one to three
//! devices, browser upgrades and occasional travel; and the three attacker models of
//! Wiefling et al.:
//!
//! - **naive**: has the password only; any country, any network, a common user agent;
//! - **VPN**: also knows the victim's country and logs in through a VPN/hosting network
//!   there, with a common user agent;
//! - **targeted**: also knows the victim's exact user agent string (phished or seen),
//!   and uses a network in the victim's country that is not one of the victim's.
//!
//! It is synthetic: real populations are messier (shared NATs, CGNAT, corporate VPNs,
//! privacy browsers). Use it to compare settings, not as a promise for your users.

use std::net::{IpAddr, Ipv4Addr};

use palisade_core_traits::{RequestContext, Timestamp};

use crate::{GeoInfo, Signals};

/// Who made an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The account owner.
    Legit,
    /// Password only.
    Naive,
    /// Password and the victim's country.
    Vpn,
    /// Password, the victim's country and exact user agent.
    Targeted,
    /// A login from an address the data set flags as a known attacker's (RBA CSV).
    AttackIp,
    /// A login the service's incident response confirmed as account takeover (RBA CSV).
    Takeover,
}

/// One generated attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthLogin {
    /// Seconds since the start of the simulation.
    pub at_secs: u64,
    /// The attempt: user, peer address and `User-Agent` header (its timestamp is
    /// `at_secs` after the Unix epoch; the evaluation's clock decides, not it).
    pub ctx: RequestContext,
    /// What the service knows beside it: the geo facts (and, in an evaluation with a
    /// device cookie, the device familiarity).
    pub signals: Signals,
    /// Who made it.
    pub actor: Actor,
    /// For the owner: how many successful logins the user had before this one.
    pub prior_logins: u32,
    /// For the owner: which of the user's devices (browser profiles) was used; `None`
    /// for attackers. Lets an evaluation model a known-device cookie.
    pub device: Option<u8>,
}

/// Generator settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthConfig {
    /// RNG seed.
    pub seed: u64,
    /// Number of users.
    pub users: u32,
    /// Simulated days.
    pub days: u32,
    /// Attacks per attacker type.
    pub attacks: u32,
    /// Share of an owner's logins from their mobile network, each from a fresh address
    /// (carrier NAT pools): a never-seen IP in a known ASN.
    pub mobile_share: f64,
    /// Chance that the home address changed since the previous home login (dynamic IP
    /// renewal): a never-seen IP in the home ASN.
    pub address_renewal: f64,
}

impl SynthConfig {
    /// The defaults' habits with this seed and size: 20 % mobile logins, 5 % home
    /// address renewals.
    pub const fn new(seed: u64, users: u32, days: u32, attacks: u32) -> Self {
        SynthConfig {
            seed,
            users,
            days,
            attacks,
            mobile_share: 0.2,
            address_renewal: 0.05,
        }
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig::new(1, 1_000, 120, 1_000)
    }
}

/// splitmix64.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

const COUNTRIES: [&str; 10] = ["DE", "US", "FR", "GB", "NO", "BR", "IN", "JP", "PL", "NL"];
const ISPS_PER_COUNTRY: u32 = 6;
const MOBILE_PER_COUNTRY: u32 = 3;
const HOSTING_PER_COUNTRY: u32 = 4;

fn isp_asn(country: usize, i: u32) -> u32 {
    10_000 + country as u32 * 100 + i
}
fn mobile_asn(country: usize, i: u32) -> u32 {
    20_000 + country as u32 * 100 + i
}
fn hosting_asn(country: usize, i: u32) -> u32 {
    30_000 + country as u32 * 100 + i
}

/// An address inside an ASN's (made-up) space: 10.x.y.z, one /16 per ASN.
fn ip_in(asn: u32, host: u32) -> IpAddr {
    let net = asn % 65_536;
    IpAddr::V4(Ipv4Addr::new(
        (net >> 8) as u8 | 0x40,
        net as u8,
        (host >> 8) as u8,
        host as u8,
    ))
}

fn geo(asn: u32, country: usize) -> GeoInfo {
    GeoInfo {
        asn: Some(asn),
        country: Some(COUNTRIES[country].to_owned()),
        location: None,
    }
}

const OSES: [&str; 5] = [
    "Windows NT 10.0; Win64; x64",
    "Macintosh; Intel Mac OS X 10_15_7",
    "X11; Linux x86_64",
    "iPhone; CPU iPhone OS 17_1 like Mac OS X",
    "Linux; Android 14; Pixel 8",
];

fn ua(os: usize, browser: usize, version: u32) -> String {
    let o = OSES[os % OSES.len()];
    match browser % 3 {
        0 => format!(
            "Mozilla/5.0 ({o}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{version}.0.0.0 Safari/537.36"
        ),
        1 => format!("Mozilla/5.0 ({o}; rv:{version}.0) Gecko/20100101 Firefox/{version}.0"),
        _ => format!(
            "Mozilla/5.0 ({o}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{}.1 Safari/605.1.15",
            version / 7
        ),
    }
}

struct Device {
    os: usize,
    browser: usize,
    version: u32,
}

struct User {
    country: usize,
    isp: u32,
    mobile: u32,
    home_host: u32,
    devices: Vec<Device>,
    rate: f64,
}

/// Generates the stream, ordered by time. Attacks are spread over the last half of the
/// period, against users with at least 20 prior logins.
pub fn generate(cfg: &SynthConfig) -> Vec<SynthLogin> {
    let mut rng = Rng::new(cfg.seed);
    let users: Vec<User> = (0..cfg.users)
        .map(|_| {
            // Skewed country mix: most users in the first few countries.
            let country = ((rng.unit().powi(2)) * COUNTRIES.len() as f64) as usize;
            let n_dev = 1 + rng.below(3) as usize;
            User {
                country,
                isp: isp_asn(country, rng.below(u64::from(ISPS_PER_COUNTRY)) as u32),
                mobile: mobile_asn(country, rng.below(u64::from(MOBILE_PER_COUNTRY)) as u32),
                home_host: rng.below(65_536) as u32,
                devices: (0..n_dev)
                    .map(|_| Device {
                        os: rng.below(OSES.len() as u64) as usize,
                        browser: rng.below(3) as usize,
                        version: 110 + rng.below(10) as u32,
                    })
                    .collect(),
                // Logins per day: log-uniform between one a week and three a day.
                rate: (1.0f64 / 7.0) * (21.0f64).powf(rng.unit()),
            }
        })
        .collect();
    let mut users = users;
    let mut out = Vec::new();
    let mut counts = vec![0u32; users.len()];
    for day in 0..cfg.days {
        for (id, u) in users.iter_mut().enumerate() {
            let mut n = 0;
            let mut r = u.rate;
            while r > 0.0 {
                if rng.unit() < r.min(1.0) {
                    n += 1;
                }
                r -= 1.0;
            }
            for _ in 0..n {
                let at = u64::from(day) * 86_400 + rng.below(86_400);
                // Browsers update about every 40 days.
                for d in &mut u.devices {
                    if rng.chance(1.0 / (40.0 * u.rate.max(0.2))) {
                        d.version += 1;
                    }
                }
                let dev_index = rng.below(u.devices.len() as u64) as usize;
                let dev = &u.devices[dev_index];
                let (asn, country, host) = if rng.chance(0.02) {
                    // Travel: a hotel or roaming network abroad.
                    let c = rng.below(COUNTRIES.len() as u64) as usize;
                    (
                        isp_asn(c, rng.below(u64::from(ISPS_PER_COUNTRY)) as u32),
                        c,
                        rng.below(65_536) as u32,
                    )
                } else if rng.chance(cfg.mobile_share) {
                    (u.mobile, u.country, rng.below(65_536) as u32)
                } else {
                    if rng.chance(cfg.address_renewal) {
                        u.home_host = rng.below(65_536) as u32; // dynamic IP renewal
                    }
                    (u.isp, u.country, u.home_host)
                };
                let (ctx, signals) = attempt(
                    format!("user{id}"),
                    ip_in(asn, host),
                    ua(dev.os, dev.browser, dev.version),
                    geo(asn, country),
                    at,
                );
                out.push(SynthLogin {
                    at_secs: at,
                    ctx,
                    signals,
                    actor: Actor::Legit,
                    prior_logins: 0,
                    device: Some(dev_index as u8),
                });
            }
        }
    }
    out.sort_by_key(|l| l.at_secs);
    // Prior login counts, in time order.
    for l in &mut out {
        let id: usize = user_index(&l.ctx);
        l.prior_logins = counts[id];
        counts[id] += 1;
    }
    let mut per_user: Vec<Vec<usize>> = vec![Vec::new(); users.len()];
    for (i, l) in out.iter().enumerate() {
        let id: usize = user_index(&l.ctx);
        per_user[id].push(i);
    }
    // Attacks: against users with at least 20 logins before the attack time.
    let start = u64::from(cfg.days) * 86_400 / 2;
    let end = u64::from(cfg.days) * 86_400;
    let mut attacks = Vec::new();
    for actor in [Actor::Naive, Actor::Vpn, Actor::Targeted] {
        let mut made = 0;
        let mut tries = 0;
        while made < cfg.attacks && tries < cfg.attacks * 100 {
            tries += 1;
            let at = start + rng.below(end - start);
            let victim = rng.below(users.len() as u64) as usize;
            let name = format!("user{victim}");
            let before = per_user[victim].partition_point(|&i| out[i].at_secs < at);
            if before < 20 {
                continue;
            }
            let last = &out[per_user[victim][before - 1]];
            let u = &users[victim];
            let common_ua = ua(0, 0, 118 + rng.below(4) as u32);
            let (ctx, signals) = match actor {
                Actor::Naive => {
                    let c = rng.below(COUNTRIES.len() as u64) as usize;
                    let asn = hosting_asn(c, rng.below(u64::from(HOSTING_PER_COUNTRY)) as u32);
                    let ip = ip_in(asn, rng.below(65_536) as u32);
                    attempt(name, ip, common_ua, geo(asn, c), at)
                }
                Actor::Vpn => {
                    let asn =
                        hosting_asn(u.country, rng.below(u64::from(HOSTING_PER_COUNTRY)) as u32);
                    let ip = ip_in(asn, rng.below(65_536) as u32);
                    attempt(name, ip, common_ua, geo(asn, u.country), at)
                }
                _ => {
                    // Another ISP of the victim's country, the victim's latest UA.
                    let mut isp = isp_asn(u.country, rng.below(u64::from(ISPS_PER_COUNTRY)) as u32);
                    if isp == u.isp {
                        isp = isp_asn(u.country, (isp % 100 + 1) % ISPS_PER_COUNTRY);
                    }
                    let last_ua = last.ctx.user_agent().unwrap_or_default().to_owned();
                    let ip = ip_in(isp, rng.below(65_536) as u32);
                    attempt(name, ip, last_ua, geo(isp, u.country), at)
                }
            };
            attacks.push(SynthLogin {
                at_secs: at,
                ctx,
                signals,
                actor,
                prior_logins: before as u32,
                device: None,
            });
            made += 1;
        }
    }
    out.extend(attacks);
    out.sort_by_key(|l| l.at_secs);
    out
}

/// A login attempt as a context (user, peer, `User-Agent`) and the geo facts beside it.
pub(crate) fn attempt(
    user: String,
    ip: IpAddr,
    user_agent: impl Into<String>,
    geo: GeoInfo,
    at_secs: u64,
) -> (RequestContext, Signals) {
    let ctx = RequestContext::new(ip, Timestamp::from_unix_secs(at_secs))
        .with_user(user)
        .with_header("User-Agent", user_agent);
    (ctx, Signals::default().with_geo(geo))
}

/// `n` of a generated `user{n}`.
fn user_index(ctx: &RequestContext) -> usize {
    let user = ctx.user_id.as_deref().unwrap_or_default();
    user.get(4..).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Scores of one evaluation run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Scores of owners' logins made with at least `min_prior` earlier logins.
    pub legit: Vec<f64>,
    /// For each entry of `legit`: a dense id of its user (for per-user rates).
    pub legit_users: Vec<u32>,
    /// Scores of naive attacks.
    pub naive: Vec<f64>,
    /// Scores of VPN attacks.
    pub vpn: Vec<f64>,
    /// Scores of targeted attacks.
    pub targeted: Vec<f64>,
    /// Scores of logins from known attack IPs (RBA CSV only).
    pub attack_ip: Vec<f64>,
    /// Scores of confirmed account takeovers (RBA CSV only).
    pub takeover: Vec<f64>,
}

/// Share of `scores` at or above `t`.
pub fn share_at_or_above(scores: &[f64], t: f64) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().filter(|&&s| s >= t).count() as f64 / scores.len() as f64
}

/// The largest threshold that still catches at least `detect` of `attacks` (1 when
/// there are none).
pub fn threshold_for_detection(attacks: &[f64], detect: f64) -> f64 {
    let mut sorted = attacks.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 1.0;
    }
    // Index of the attack score that leaves (1 - detect) below it.
    let k = ((1.0 - detect.clamp(0.0, 1.0)) * sorted.len() as f64).floor() as usize;
    sorted[k.min(sorted.len() - 1)]
}

/// One point of the detection / re-authentication curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPoint {
    /// The score threshold (at or above: re-authenticate).
    pub threshold: f64,
    /// Share of the attacks at or above it.
    pub detected: f64,
    /// Share of all scored owner logins at or above it.
    pub reauth_logins: f64,
    /// The median over users of each user's share of scored logins at or above it
    /// (Wiefling's "median user").
    pub reauth_median_user: f64,
}

impl Evaluation {
    /// The largest threshold that catches at least `detect` of `attacks`, and the share
    /// of legitimate logins at or above it (asked to re-authenticate).
    pub fn reauth_at_detection(&self, attacks: &[f64], detect: f64) -> (f64, f64) {
        let t = threshold_for_detection(attacks, detect);
        (t, share_at_or_above(&self.legit, t))
    }

    /// The median over users of the share of their scored logins at or above `t`
    /// (the mean of the two middle users for an even count; 0 without users).
    pub fn median_user_share(&self, t: f64) -> f64 {
        let mut per_user: std::collections::HashMap<u32, (u32, u32)> =
            std::collections::HashMap::new();
        for (&s, &u) in self.legit.iter().zip(&self.legit_users) {
            let e = per_user.entry(u).or_insert((0, 0));
            e.0 += 1;
            if s >= t {
                e.1 += 1;
            }
        }
        let mut rates: Vec<f64> = per_user
            .values()
            .map(|&(n, above)| f64::from(above) / f64::from(n))
            .collect();
        rates.sort_by(f64::total_cmp);
        match rates.len() {
            0 => 0.0,
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        }
    }

    /// The operating point at threshold `t` against `attacks`.
    pub fn at_threshold(&self, attacks: &[f64], t: f64) -> OperatingPoint {
        OperatingPoint {
            threshold: t,
            detected: share_at_or_above(attacks, t),
            reauth_logins: share_at_or_above(&self.legit, t),
            reauth_median_user: self.median_user_share(t),
        }
    }

    /// The operating point that catches at least `detect` of `attacks`.
    pub fn at_detection(&self, attacks: &[f64], detect: f64) -> OperatingPoint {
        self.at_threshold(attacks, threshold_for_detection(attacks, detect))
    }
}

/// How [`evaluate_with`] replays a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// Owners' logins are scored (counted) once the user has this many earlier logins.
    pub min_prior: u32,
    /// `None`: no device signal (the RBA data set's features only). `Some(p)`: model a
    /// known-device cookie: an owner's login from a device (browser profile) the
    /// service saw in an earlier successful login has familiarity 1, except with
    /// probability `p` (cookie cleared, private window), when it is 0 like a new
    /// device's. Attackers never hold the victim's cookie (familiarity 0).
    pub device_cookie_loss: Option<f64>,
    /// Seed for the cookie-loss draws.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            min_prior: 20,
            device_cookie_loss: None,
            seed: 1,
        }
    }
}

/// Replays `stream` through a scorer built by `make` (given the clock): every attempt is
/// scored; owners' logins are then recorded as successes, attacks are not (they were
/// stopped or, at worst, are not part of the owner's history).
pub fn evaluate(
    stream: &[SynthLogin],
    min_prior: u32,
    make: impl FnOnce(std::sync::Arc<dyn palisade_core_traits::Clock>) -> crate::ThreatScorer,
) -> Evaluation {
    evaluate_with(
        stream,
        &EvalOptions {
            min_prior,
            ..EvalOptions::default()
        },
        make,
    )
}

/// [`evaluate`] with options, over any stream of logins in time order (a slice, or an
/// iterator reading a large file).
pub fn evaluate_with<L: std::borrow::Borrow<SynthLogin>>(
    stream: impl IntoIterator<Item = L>,
    opts: &EvalOptions,
    make: impl FnOnce(std::sync::Arc<dyn palisade_core_traits::Clock>) -> crate::ThreatScorer,
) -> Evaluation {
    use palisade_core_traits::{LoginOutcome, ManualClock, Timestamp};
    let base = 1_700_000_000;
    let clock = std::sync::Arc::new(ManualClock::new(Timestamp::from_unix_secs(base)));
    let scorer = make(clock.clone());
    let mut e = Evaluation::default();
    let mut ids: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut known: std::collections::HashSet<(u32, u8)> = std::collections::HashSet::new();
    let mut rng = Rng::new(opts.seed);
    for l in stream {
        let l = l.borrow();
        // Synthetic times start at 0; real data sets carry unix times.
        let at = if l.at_secs < base {
            base + l.at_secs
        } else {
            l.at_secs
        };
        clock.set(Timestamp::from_unix_secs(at));
        let next_id = ids.len() as u32;
        let user = l.ctx.user_id.clone().unwrap_or_default();
        let id = *ids.entry(user).or_insert(next_id);
        let mut signals = std::borrow::Cow::Borrowed(&l.signals);
        if let Some(loss) = opts.device_cookie_loss {
            let familiar = match (l.actor, l.device) {
                (Actor::Legit, Some(d)) => known.contains(&(id, d)) && !rng.chance(loss),
                _ => false,
            };
            signals.to_mut().device_familiarity = Some(if familiar { 1.0 } else { 0.0 });
        }
        let s = scorer.score_with(&l.ctx, &signals).score;
        match l.actor {
            Actor::Legit => {
                if l.prior_logins >= opts.min_prior {
                    e.legit.push(s);
                    e.legit_users.push(id);
                }
                let ctx = l.ctx.clone().with_login(LoginOutcome::Success);
                // The context carries an outcome: recording cannot fail.
                let _ = scorer.record(&ctx, &signals);
                if let Some(d) = l.device {
                    known.insert((id, d));
                }
            }
            Actor::Naive => e.naive.push(s),
            Actor::Vpn => e.vpn.push(s),
            Actor::Targeted => e.targeted.push(s),
            Actor::AttackIp => e.attack_ip.push(s),
            Actor::Takeover => e.takeover.push(s),
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_user_and_threshold_by_hand() {
        let e = Evaluation {
            legit: vec![0.1, 0.9, 0.9, 0.2, 0.8, 0.7, 0.1],
            legit_users: vec![0, 0, 0, 1, 1, 2, 3],
            ..Evaluation::default()
        };
        // At 0.5: user 0 has 2 of 3, user 1 1 of 2, user 2 1 of 1, user 3 0 of 1;
        // sorted 0, 1/2, 2/3, 1: median (1/2 + 2/3) / 2 = 7/12.
        assert!((e.median_user_share(0.5) - 7.0 / 12.0).abs() < 1e-12);
        // Pooled: 4 of 7.
        assert!((share_at_or_above(&e.legit, 0.5) - 4.0 / 7.0).abs() < 1e-12);
        // 75 % of [0.3, 0.1, 0.2, 0.4] are caught at 0.2 (3 of 4), not at 0.3 (2 of 4).
        assert_eq!(threshold_for_detection(&[0.3, 0.1, 0.2, 0.4], 0.75), 0.2);
        let p = e.at_detection(&[0.3, 0.1, 0.2, 0.4], 0.75);
        assert_eq!(p.threshold, 0.2);
        assert_eq!(p.detected, 0.75);
        // At 0.2: user 0 2/3, user 1 2/2 (0.2 counts), user 2 1, user 3 0;
        // sorted 0, 2/3, 1, 1: median (2/3 + 1) / 2 = 5/6.
        assert!((p.reauth_median_user - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(Evaluation::default().median_user_share(0.5), 0.0);
    }
}

//! The shared limiter on Redis / Redis Cluster: one Lua script, one round trip.

mod builder;
mod conn;
mod stats;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use palisade_core_traits::{Clock, IpBlocker, SystemClock, async_trait};

pub use builder::{FailurePolicy, Policy, RedisLimiterBuilder};
use conn::{Breaker, Conn, Epochs};
use stats::{Answer, Counters, policy_label};

use crate::{Decision, Denial, Error, KeyedLimiter, MAX_BLOCK, Stats, client_net};

const CHECK_SCRIPT: &str = include_str!("../check.lua");
const BLOCK_SCRIPT: &str = include_str!("../block.lua");
/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 512;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
const DEFAULT_BREAKER_THRESHOLD: NonZeroU32 = crate::nz!(3);
const DEFAULT_DENY_CACHE_KEYS: usize = 100_000;
/// How often a full deny cache may be swept of its ended entries.
const DENY_SWEEP_EVERY: Duration = Duration::from_millis(100);

/// A subject's Redis keys: its block key, its slot's epoch key, then one per policy.
#[derive(Debug)]
struct Subject {
    keys: Vec<String>,
    /// The slot's index in [`Epochs::known`].
    slot: usize,
    /// The key in canonical form (the local fallback's key).
    name: String,
}

/// The check script's reply.
#[derive(Debug)]
struct Reply {
    allowed: bool,
    /// 1-based policy index; 0 = blocked; -1 = no policy was decided on Redis.
    index: i64,
    remaining: i64,
    reset_us: i64,
    retry_us: i64,
    epoch: u64,
    /// 0-based indexes of the policies whose state is uncertain after a data loss.
    uncertain: Vec<usize>,
}
/// A rate limiter whose state lives in Redis, shared by every instance.
///
/// Each check is one `EVALSHA` of a Lua script that reads Redis `TIME`, checks the
/// epoch key that reveals lost data, applies GCRA in integer microseconds to every
/// policy of the subject (all keys share one hash slot, so this works on a Redis
/// Cluster), writes only if all admit, and returns integers. See `docs/ratelimit.md`
/// for the failure policies, data-loss detection and the local deny cache.
#[derive(Debug)]
pub struct RedisLimiter {
    conn: Conn,
    check: redis::Script,
    block: redis::Script,
    policies: Vec<Policy>,
    prefix: String,
    timeout: Duration,
    failure: FailurePolicy,
    breaker: Breaker,
    /// Redis key → what a recent Redis denial proves about the next checks.
    deny_cache: DashMap<String, CachedDeny>,
    deny_cache_keys: usize,
    /// Monotonic ns before which a full deny cache is not swept again.
    deny_sweep_after: AtomicU64,
    allow_key_eviction: bool,
    epochs: Epochs,
    /// Per policy, its local share under `LocalShare` (`None`: the share is zero).
    fallback: Vec<Option<KeyedLimiter<String, Arc<dyn Clock>>>>,
    clock: Arc<dyn Clock>,
    counters: Counters,
}

/// A Redis denial remembered locally. Only a policy's denial is cached (a block
/// may be lifted early), so a local answer is always `Denial::Limited` under the
/// policy that denied: the same policy Redis would name.
#[derive(Debug, Clone, Copy)]
struct CachedDeny {
    /// Monotonic ns until which a cost-1 request is surely denied.
    until: u64,
    /// The denying policy's emission interval, ns.
    interval: u64,
    /// The denying policy's burst, reported as the decision's `limit`.
    limit: u32,
}

impl RedisLimiter {
    /// Starts a builder with the policies every check applies (at least one: none
    /// is an [`Error::InvalidConfig`] at connect).
    pub fn builder(policies: Vec<Policy>) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            policies,
            prefix: "palisade:rl".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            failure: FailurePolicy::Closed,
            cooldown: DEFAULT_COOLDOWN,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            deny_cache_keys: DEFAULT_DENY_CACHE_KEYS,
            allow_key_eviction: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// The policies, in the order given.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Whether the circuit breaker is open (Redis presumed down).
    pub fn is_circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// A subject's Redis keys: its block key, its slot's epoch key, then one per
    /// policy, all in one hash slot. The subject's keys share the hash tag `{…}`; keys
    /// with braces (or a leading `=`) are hex-encoded behind `=` so the tag stays whole
    /// and distinct keys stay distinct. An address is keyed as its [`client_net`] in
    /// canonical text (IPv4-mapped IPv6 is IPv4, an IPv6 address is its /64, one
    /// spelling each), so every spelling of one address, and every address of one
    /// IPv6 /64, is one subject, as in memory.
    fn subject(&self, key: &str) -> Result<Subject, Error> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::InvalidKey {
                what: "key",
                reason: format!("{} bytes; must be 1 to {MAX_KEY_LEN}", key.len()),
            });
        }
        let name = match key.parse::<IpAddr>() {
            Ok(ip) => client_net(ip).to_string(),
            Err(_) => key.to_owned(),
        };
        let tag = if name.contains(['{', '}']) || name.starts_with('=') {
            let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
            format!("={hex}")
        } else {
            name.clone()
        };
        let slot = self.epochs.slot(&tag);
        let mut keys = Vec::with_capacity(self.policies.len() + 2);
        // '!' cannot appear in a policy name, so these never collide with policy keys.
        keys.push(format!("{}:{{{tag}}}:!block", self.prefix));
        keys.push(self.epoch_key(slot));
        keys.extend(
            self.policies
                .iter()
                .map(|p| format!("{}:{{{tag}}}:{}", self.prefix, p.name)),
        );
        Ok(Subject { keys, slot, name })
    }

    /// The clock's monotonic reading in nanoseconds (breaker and deny cache).
    fn monotonic_nanos(&self) -> u64 {
        u64::try_from(self.clock.monotonic().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Checks (and, if every policy admits, consumes) `cost` units for `key`.
    ///
    /// Errors only for a bad key. A cost above a burst is denied
    /// ([`Denial::CostExceedsBurst`]). When Redis fails, or lost the key's state less
    /// than a burst window ago, the [`FailurePolicy`] answers, within the per-call
    /// timeout.
    pub async fn check(&self, key: &str, cost: u32) -> Result<Decision, Error> {
        self.check_inner(key, cost, None).await
    }

    async fn check_inner(
        &self,
        key: &str,
        cost: u32,
        now_micros: Option<u64>,
    ) -> Result<Decision, Error> {
        let subject = self.subject(key)?;
        if let Some(p) = self.policies.iter().find(|p| cost > p.quota.burst()) {
            // It can never pass: answered with the state a peek sees, changing nothing.
            self.counters.cost_exceeds_burst();
            tracing::debug!(
                cost,
                burst = p.quota.burst(),
                "rate limit denied: the cost exceeds the burst"
            );
            let (peek, _) = self.decide(&subject, 0, now_micros).await?;
            return Ok(peek.cost_exceeds_burst(p.quota.burst()));
        }
        let (decision, answer) = self.decide(&subject, cost, now_micros).await?;
        self.counters.answer(answer, decision.allowed, self.failure);
        if answer == Answer::FailurePolicy {
            tracing::debug!(
                policy = policy_label(self.failure),
                allowed = decision.allowed,
                "rate limit answered by the failure policy"
            );
        }
        Ok(decision)
    }

    /// The decision for a cost that fits every burst, and who gave it.
    async fn decide(
        &self,
        subject: &Subject,
        cost: u32,
        now_micros: Option<u64>,
    ) -> Result<(Decision, Answer), Error> {
        let keys = &subject.keys;
        let now = self.monotonic_nanos();
        // A peek (cost 0) answers for a cost-1 request: a cached denial answers it too
        // (a layer peeks every policy after the first).
        if let Some(d) = self.local_deny(&keys[0], cost.max(1), now) {
            tracing::debug!(retry_after = ?d.retry_after, "rate limit denied from the local deny cache");
            return Ok((d, Answer::LocalDeny));
        }
        if !self.breaker.try_acquire(now) {
            return Ok((self.on_failure(subject, cost), Answer::FailurePolicy));
        }
        let known = self.epochs.known[subject.slot].load(Ordering::Acquire);
        let mut args = Vec::with_capacity(5 + 2 * self.policies.len());
        args.extend([
            now_micros.unwrap_or(0),
            u64::from(cost),
            known,
            self.epochs.fresh_id(),
            u64::from(self.failure == FailurePolicy::Closed),
        ]);
        for p in &self.policies {
            args.push(p.quota.interval_micros());
            args.push(u64::from(p.quota.burst()));
        }
        self.counters.redis_call();
        let mut call = self.check.prepare_invoke();
        call.key(keys.as_slice()).arg(args.as_slice());
        let reply =
            tokio::time::timeout(self.timeout, self.conn.invoke::<Vec<i64>>(&call, "check")).await;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rate limit check on redis failed");
                return Ok((self.failed(subject, cost, now), Answer::FailurePolicy));
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "rate limit check on redis timed out");
                return Ok((self.failed(subject, cost, now), Answer::FailurePolicy));
            }
        };
        if self.breaker.success() {
            self.counters.breaker(false);
        }
        let reply = self.decode(&reply)?;
        if self.epochs.observe(subject.slot, known, reply.epoch) {
            self.counters.data_loss();
            tracing::error!(
                prefix = self.prefix,
                "redis lost rate-limit data (its epoch key was replaced); for one burst \
                 window of each policy the failure policy answers"
            );
        }
        // Redis decided: nothing was uncertain, or a block or a known policy denied.
        if reply.uncertain.is_empty() || (!reply.allowed && reply.index >= 0) {
            let decision = self.decision(&reply);
            if !decision.allowed {
                tracing::debug!(policy = reply.index, retry_after = ?decision.retry_after, "rate limit denied by redis");
                // Index 0 is a block: never cached, since an unblock may lift it early.
                if cost > 0 && reply.index > 0 {
                    self.remember_deny(&keys[0], &decision, cost, reply.index, now);
                }
            }
            return Ok((decision, Answer::Redis));
        }
        // Redis lost these policies' state less than a burst window ago: the failure
        // policy decides them (the script decided, and wrote, the others).
        let first = self.policies[reply.uncertain[0]].quota.burst();
        let decision = match self.failure {
            // The script denied, writing nothing; the retry is when the last window ends.
            FailurePolicy::Closed => {
                Decision::denied(first, micros(reply.retry_us), Denial::Unavailable)
            }
            FailurePolicy::Open if reply.index >= 1 => Decision {
                failed_open: true,
                local_share: false,
                ..self.decision(&reply)
            },
            FailurePolicy::Open => open_decision(first),
            FailurePolicy::LocalShare { .. } => {
                let local =
                    self.local_share(&subject.name, cost, &reply.uncertain, self.breaker.cooldown);
                let on_redis = (reply.index >= 1).then(|| self.decision(&reply));
                match on_redis {
                    Some(d) if local.allowed && d.remaining < local.remaining => Decision {
                        local_share: true,
                        ..d
                    },
                    _ => local,
                }
            }
        };
        Ok((decision, Answer::FailurePolicy))
    }

    fn decode(&self, reply: &[i64]) -> Result<Reply, Error> {
        let bad = || Error::UnexpectedReply(format!("{reply:?}"));
        let &[
            allowed,
            index,
            remaining,
            reset_us,
            retry_us,
            epoch,
            ref uncertain @ ..,
        ] = reply
        else {
            return Err(bad());
        };
        let n = self.policies.len();
        if !(-1..=n as i64).contains(&index) {
            return Err(Error::UnexpectedReply(format!("policy index {index}")));
        }
        let uncertain = uncertain
            .iter()
            .map(|&i| match usize::try_from(i) {
                Ok(i) if (1..=n).contains(&i) => Ok(i - 1),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Only a policy left uncertain leaves a reply without a deciding policy.
        if index == -1 && uncertain.is_empty() {
            return Err(bad());
        }
        Ok(Reply {
            allowed: allowed == 1,
            index,
            remaining,
            reset_us,
            retry_us,
            epoch: u64::try_from(epoch).map_err(|_| bad())?,
            uncertain,
        })
    }

    /// The decision Redis took: on a block (index 0) or a policy (index >= 1).
    fn decision(&self, reply: &Reply) -> Decision {
        let policy = usize::try_from(reply.index - 1).unwrap_or(0);
        let denial = match (reply.allowed, reply.index) {
            (true, _) => None,
            (false, 0) => Some(Denial::Blocked),
            (false, _) => Some(Denial::Limited),
        };
        Decision {
            allowed: reply.allowed,
            limit: self.policies[policy].quota.burst(),
            remaining: u32::try_from(reply.remaining).unwrap_or(0),
            reset_after: micros(reply.reset_us),
            retry_after: micros(reply.retry_us),
            denial,
            failed_open: false,
            local_share: false,
        }
    }

    /// After Redis denied `cost` under policy `index` (1-based), remember until when a
    /// cost-1 request is surely denied. Measured on the monotonic clock from when the
    /// check was *sent*, so the local deny ends no later than Redis' own would, and a
    /// wall-clock step cannot stretch it.
    fn remember_deny(&self, block_key: &str, d: &Decision, cost: u32, index: i64, sent: u64) {
        if self.deny_cache_keys == 0 {
            return;
        }
        let Some(policy) = usize::try_from(index)
            .ok()
            .and_then(|i| self.policies.get(i - 1))
        else {
            return;
        };
        let interval = policy.quota.emission_interval().as_nanos() as u64;
        let retry = d.retry_after.as_nanos() as u64;
        let Some(cost1_retry) = retry
            .checked_sub(u64::from(cost - 1) * interval)
            .filter(|r| *r > 0)
        else {
            return;
        };
        if self.deny_cache.len() >= self.deny_cache_keys {
            // Swept at most every `DENY_SWEEP_EVERY`: a spray of new denied keys
            // against a cache full of live ones would otherwise pay a scan of the
            // whole cache per denial. Meanwhile new denials are not cached.
            let after = self.deny_sweep_after.load(Ordering::Relaxed);
            let next = sent.saturating_add(DENY_SWEEP_EVERY.as_nanos() as u64);
            if sent < after
                || (self.deny_sweep_after)
                    .compare_exchange(after, next, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                return;
            }
            self.deny_cache.retain(|_, d| d.until > sent);
            if self.deny_cache.len() >= self.deny_cache_keys {
                return;
            }
        }
        self.deny_cache.insert(
            block_key.to_owned(),
            CachedDeny {
                until: sent.saturating_add(cost1_retry),
                interval,
                limit: policy.quota.burst(),
            },
        );
    }

    fn local_deny(&self, block_key: &str, cost: u32, now: u64) -> Option<Decision> {
        let CachedDeny {
            until,
            interval,
            limit,
        } = *self.deny_cache.get(block_key)?;
        let until = until.saturating_add(u64::from(cost - 1) * interval);
        if now < until {
            // The policy that denied on Redis, which Redis would name again.
            let retry = Duration::from_nanos(until - now);
            return Some(Decision::denied(limit, retry, Denial::Limited));
        }
        if cost == 1 {
            self.deny_cache.remove_if(block_key, |_, d| d.until <= now);
        }
        None
    }

    fn failed(&self, subject: &Subject, cost: u32, now: u64) -> Decision {
        self.counters.redis_error();
        if self.breaker.failure(now) {
            self.counters.breaker(true);
        }
        self.on_failure(subject, cost)
    }

    /// The failure policy's answer while Redis is unreachable.
    fn on_failure(&self, subject: &Subject, cost: u32) -> Decision {
        let limit = self.policies[0].quota.burst();
        let cooldown = self.breaker.cooldown;
        match self.failure {
            FailurePolicy::Closed => Decision::denied(limit, cooldown, Denial::Unavailable),
            FailurePolicy::Open => open_decision(limit),
            FailurePolicy::LocalShare { .. } => {
                let all: Vec<usize> = (0..self.policies.len()).collect();
                self.local_share(&subject.name, cost, &all, cooldown)
            }
        }
    }

    /// The local shares of the given policies (0-based), checked in turn: a denial
    /// after an earlier admission leaves that admission spent (never more admitted).
    /// A policy without a share, or a cost that fits the quota but not its share, is
    /// denied as [`Denial::Unavailable`], to retry after `retry`. The answer is marked
    /// [`Decision::local_share`].
    fn local_share(&self, name: &str, cost: u32, policies: &[usize], retry: Duration) -> Decision {
        Decision {
            local_share: true,
            ..self.local_share_unmarked(name, cost, policies, retry)
        }
    }

    fn local_share_unmarked(
        &self,
        name: &str,
        cost: u32,
        policies: &[usize],
        retry: Duration,
    ) -> Decision {
        let key = name.to_owned();
        let mut answer: Option<Decision> = None;
        for &i in policies {
            let unavailable =
                Decision::denied(self.policies[i].quota.burst(), retry, Denial::Unavailable);
            let Some(limiter) = &self.fallback[i] else {
                return unavailable;
            };
            let d = limiter.check(&key, cost).unwrap_or(unavailable);
            if d.denial == Some(Denial::CostExceedsBurst) {
                return unavailable;
            }
            if !d.allowed {
                return d;
            }
            if answer.is_none_or(|a| d.remaining < a.remaining) {
                answer = Some(d);
            }
        }
        answer.unwrap_or_else(|| open_decision(self.policies[0].quota.burst()))
    }

    /// Blocks `key` for `duration` (Redis time; at most [`MAX_BLOCK`]); every
    /// instance's next check of the key is denied in its usual single round trip. A
    /// later existing block is kept; a zero duration does nothing.
    pub async fn block(&self, key: &str, duration: Duration) -> Result<(), Error> {
        self.block_inner(key, duration, None).await
    }

    async fn block_inner(
        &self,
        key: &str,
        duration: Duration,
        now_micros: Option<u64>,
    ) -> Result<(), Error> {
        let subject = self.subject(key)?;
        if duration.is_zero() {
            return Ok(());
        }
        // MAX_BLOCK in µs fits a u64 (and keeps Redis times below 2^53 µs).
        let micros = (duration.min(MAX_BLOCK).as_micros() as u64).max(1);
        let args = [micros, now_micros.unwrap_or(0)];
        let mut invocation = self.block.prepare_invoke();
        invocation.key(&subject.keys[0]).arg(args.as_slice());
        let call = self.conn.invoke::<i64>(&invocation, "block");
        tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), call)
            .await
            .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(())
    }

    /// Lifts a block.
    pub async fn unblock(&self, key: &str) -> Result<(), Error> {
        let subject = self.subject(key)?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&subject.keys[0]);
        tokio::time::timeout(
            self.timeout.max(Duration::from_secs(1)),
            self.conn.query::<i64>(&cmd),
        )
        .await
        .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(())
    }
}

fn micros(v: i64) -> Duration {
    Duration::from_micros(u64::try_from(v).unwrap_or(0))
}

/// Admitted by the `Open` failure policy: no limit holds, so nothing is known to remain.
fn open_decision(limit: u32) -> Decision {
    Decision {
        allowed: true,
        limit,
        remaining: 0,
        reset_after: Duration::ZERO,
        retry_after: Duration::ZERO,
        denial: None,
        failed_open: true,
        local_share: false,
    }
}

fn to_core(e: Error) -> palisade_core_traits::Error {
    match e {
        Error::Timeout(d) => palisade_core_traits::Error::Timeout(d),
        Error::InvalidKey { reason, .. } => palisade_core_traits::Error::invalid("ip", reason),
        other => palisade_core_traits::Error::Unavailable {
            backend: "redis",
            source: Box::new(other),
        },
    }
}

/// Blocks addresses through Redis, so every instance denies them. The address is
/// keyed as its [`client_net`]: an IPv4 address in canonical form, an IPv6 address
/// by its /64, so a block on one address of a /64 refuses all of them (and an
/// unblock of any of them lifts it).
#[async_trait]
impl IpBlocker for RedisLimiter {
    async fn block_ip(
        &self,
        ip: IpAddr,
        duration: Duration,
        reason: &str,
    ) -> Result<(), palisade_core_traits::Error> {
        let ip = client_net(ip);
        tracing::info!(%ip, ?duration, reason, "blocking address on redis");
        self.block(&ip.to_string(), duration).await.map_err(to_core)
    }

    async fn unblock_ip(&self, ip: IpAddr) -> Result<(), palisade_core_traits::Error> {
        self.unblock(&client_net(ip).to_string())
            .await
            .map_err(to_core)
    }
}

#[cfg(test)]
mod tests;

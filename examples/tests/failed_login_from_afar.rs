//! Composition: threat-score → playbooks → token-blacklist, the way a service wires them.
//!
//! The hardening review's attack: a user logs in from Paris for 30 days; one attempt on
//! their username from Sydney an hour later, with a wrong password, made the scorer emit
//! `ImpossibleTravel` (High) and the default playbooks end the victim's sessions and
//! revoke their tokens. Anyone who knows a username could do it, to many accounts.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core_traits::{
    Clock, Error, EventKind, LoginOutcome, ManualClock, Notification, Notifier, RequestContext,
    RevocationCheck, RevocationStatus, SessionTerminator, StepUpRequirer, Timestamp, TokenIdentity,
    async_trait,
};
use palisade_playbooks::{ActionKind, Definition, Engine, Executor, Outcome};
use palisade_threat_score::{GeoInfo, Signals, ThreatScorer, Verdict};
use palisade_token_blacklist::MemoryBlacklist;

const ISSUER: &str = "https://auth.example"; // the default playbooks' issuer
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// The service's own session store and step-up flag: what a gateway would hold.
#[derive(Debug, Default)]
struct Service {
    sessions: Mutex<Vec<String>>,
    step_up: Mutex<Vec<(String, Duration)>>,
    pages: Mutex<Vec<Notification>>,
}

#[async_trait]
impl SessionTerminator for Service {
    async fn terminate_sessions(&self, user: &str, _: &str) -> Result<Option<u64>, Error> {
        let mut s = self.sessions.lock().unwrap();
        let before = s.len();
        s.retain(|u| u != user);
        Ok(Some((before - s.len()) as u64))
    }
}

#[async_trait]
impl StepUpRequirer for Service {
    async fn require_step_up(&self, user: &str, d: Duration, _: &str) -> Result<(), Error> {
        self.step_up.lock().unwrap().push((user.to_owned(), d));
        Ok(())
    }
}

#[async_trait]
impl Notifier for Service {
    async fn notify(&self, n: &Notification) -> Result<(), Error> {
        self.pages.lock().unwrap().push(n.clone());
        Ok(())
    }
}

struct World {
    clock: Arc<ManualClock>,
    scorer: ThreatScorer,
    engine: Engine,
    exec: Executor,
    blacklist: Arc<MemoryBlacklist>,
    service: Arc<Service>,
    /// The victim's token, issued in Paris on the last day.
    token: TokenIdentity,
}

fn paris() -> GeoInfo {
    GeoInfo {
        asn: Some(3215),
        country: Some("FR".into()),
        location: Some((48.8566, 2.3522)),
    }
}

fn sydney() -> GeoInfo {
    GeoInfo {
        asn: Some(1221),
        country: Some("AU".into()),
        location: Some((-33.8688, 151.2093)),
    }
}

/// 30 days of logins from Paris, then one hour passes.
fn world() -> World {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let scorer = ThreatScorer::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..30 {
        clock.advance(Duration::from_secs(86_400));
        let home = RequestContext::new("192.0.2.10".parse().unwrap(), clock.now())
            .with_user("victim")
            .with_header("User-Agent", FIREFOX)
            .with_login(LoginOutcome::Success);
        scorer
            .record(&home, &Signals::default().with_geo(paris()))
            .unwrap();
    }
    let token = TokenIdentity::new(ISSUER)
        .with_subject("victim")
        .with_jti("t-1")
        .with_issued_at(clock.now().as_unix_secs())
        .with_expires_at(clock.now().as_unix_secs() + 3_600);
    clock.advance(Duration::from_secs(3_600));

    let blacklist = Arc::new(
        MemoryBlacklist::builder()
            .clock(clock.clone() as Arc<dyn Clock>)
            .build()
            .unwrap(),
    );
    let service = Arc::new(Service::default());
    service.sessions.lock().unwrap().push("victim".into());
    let exec = Executor::builder()
        .token_revoker(blacklist.clone())
        .sessions(service.clone())
        .step_up(service.clone())
        .notifier(service.clone())
        .build()
        .unwrap();
    World {
        clock,
        scorer,
        engine: Engine::new(Definition::default_set().unwrap()),
        exec,
        blacklist,
        service,
        token,
    }
}

/// Scores one attempt from Sydney with this outcome, hands the event to the playbooks
/// and executes the plan; returns what was executed.
async fn attempt_from_sydney(w: &mut World, outcome: LoginOutcome) -> Vec<ActionKind> {
    let attempt = RequestContext::new("::ffff:203.0.113.50".parse().unwrap(), w.clock.now())
        .with_user("Victim")
        .with_header("User-Agent", FIREFOX)
        .with_login(outcome);
    let signals = Signals::default().with_geo(sydney());
    let score = w.scorer.score_with(&attempt, &signals);
    assert!(score.verdict >= Verdict::StepUp, "{score:?}");
    w.scorer.record(&attempt, &signals).unwrap();
    let event = w.scorer.event(&attempt, &score).unwrap();
    assert_eq!(event.kind, EventKind::ImpossibleTravel, "{event:?}");
    let plan = w.engine.evaluate(&event, w.clock.now());
    let outcomes = w.exec.execute(&plan).await;
    // Outcomes come back per executable step, in plan order, keyed by decision id.
    plan.executable()
        .zip(&outcomes)
        .filter(|(s, (id, o))| s.decision == Some(*id) && matches!(o, Outcome::Applied { .. }))
        .map(|(s, _)| s.action.kind())
        .collect()
}

#[tokio::test]
async fn one_failed_login_from_afar_does_not_log_the_victim_out() {
    let mut w = world();
    let done = attempt_from_sydney(&mut w, LoginOutcome::Failure).await;
    assert_eq!(done, [ActionKind::RequireStepUp, ActionKind::Notify]);

    // The owner keeps their session and their token.
    assert_eq!(*w.service.sessions.lock().unwrap(), ["victim"]);
    assert_eq!(
        w.blacklist.check_local(&w.token),
        Some(RevocationStatus::NotRevoked)
    );
    // The next login to the account needs a step-up, for a bounded time.
    assert_eq!(
        *w.service.step_up.lock().unwrap(),
        [("victim".to_owned(), Duration::from_secs(3_600))]
    );
    // A human hears about it.
    assert_eq!(w.service.pages.lock().unwrap().len(), 1);

    // Repeating the attack every minute for an hour changes nothing more.
    for _ in 0..60 {
        w.clock.advance(Duration::from_secs(60));
        attempt_from_sydney(&mut w, LoginOutcome::Failure).await;
    }
    assert_eq!(*w.service.sessions.lock().unwrap(), ["victim"]);
    assert_eq!(
        w.blacklist.check_local(&w.token),
        Some(RevocationStatus::NotRevoked)
    );
}

#[tokio::test]
async fn the_same_signal_with_an_accepted_password_ends_the_sessions() {
    let mut w = world();
    // First the attacker's failed attempt (it must not pre-empt the response below).
    attempt_from_sydney(&mut w, LoginOutcome::Failure).await;
    w.clock.advance(Duration::from_secs(30));
    // Then the password is accepted from Sydney: the account itself is in other hands.
    let done = attempt_from_sydney(&mut w, LoginOutcome::Success).await;
    assert!(done.contains(&ActionKind::TerminateSessions), "{done:?}");
    assert!(done.contains(&ActionKind::RevokeUserTokens), "{done:?}");
    assert!(done.contains(&ActionKind::Notify), "{done:?}");
    assert!(w.service.sessions.lock().unwrap().is_empty());
    assert_eq!(
        w.blacklist.check_local(&w.token),
        Some(RevocationStatus::Revoked)
    );
    // The takeover is paged although the failed attempt's page is still open: stronger
    // evidence escalates under the same incident key instead of being a duplicate.
    let pages = w.service.pages.lock().unwrap();
    assert_eq!(pages.len(), 2, "the takeover page is not a duplicate");
    assert_eq!(pages[0].dedup_key, pages[1].dedup_key);
}

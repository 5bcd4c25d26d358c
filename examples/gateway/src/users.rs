//! Accounts: Argon2id password hashes, TOTP second factors (RFC 6238) for step-up,
//! and roles. The demo users are seeded at start; a real service keeps them in its
//! database.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use palisade_core_traits::normalize_user_id;
use ring::hmac;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Uses the API.
    User,
    /// Also watches the dashboard.
    Operator,
}

/// One account.
pub struct Account {
    /// Normalized user id (also the tokens' `sub`).
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// PHC string of the Argon2id hash.
    hash: String,
    /// The TOTP secret (20 bytes, as an authenticator app holds it).
    totp: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The demo accounts: `(user, password, TOTP secret, role)`. Public on purpose: the demo
/// prints them; a real service never has such a list.
pub const DEMO_ACCOUNTS: [(&str, &str, &[u8; 20], Role); 4] = [
    (
        "alice",
        "alice-demo-password",
        b"alice-totp-secret-20",
        Role::User,
    ),
    (
        "bob",
        "bob-demo-password",
        b"bob-totp-secret-20by",
        Role::User,
    ),
    (
        "carol",
        "carol-demo-password",
        b"carol-totp-secret-20",
        Role::User,
    ),
    (
        "admin",
        "admin-demo-password",
        b"admin-totp-secret-20",
        Role::Operator,
    ),
];

/// OWASP's Argon2id minimum (m = 19 MiB, t = 2, p = 1).
/// Password checks that may run at once in a process. Each Argon2id verification
/// holds 19 MiB for tens of milliseconds, and a flood of sign-ins with a new username
/// each (which no per-account limit slows) would otherwise start one per request, up
/// to tokio's 512 blocking threads: about 9.5 GiB.
pub const MAX_PASSWORD_CHECKS: usize = 4;
/// How long a sign-in waits for a free check before it is answered `503`.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(2);

static CHECKS: Semaphore = Semaphore::const_new(MAX_PASSWORD_CHECKS);

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .unwrap_or_else(|e| unreachable!("constant Argon2 parameters: {e}"));
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The accounts of this service.
pub struct Users {
    accounts: HashMap<String, Account>,
    /// Verified against when the user does not exist, so an unknown user costs the
    /// same time as a wrong password (no user enumeration by timing).
    dummy: String,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password is right.
    Valid(Role),
    /// Unknown user or wrong password (indistinguishable on purpose).
    Invalid,
}

impl Users {
    /// The demo accounts, hashed now.
    pub fn demo() -> Self {
        let mut users = Users::empty();
        for (id, password, totp, role) in DEMO_ACCOUNTS {
            users.add(id, password, totp, role);
        }
        users
    }

    /// No accounts.
    pub fn empty() -> Self {
        Users {
            accounts: HashMap::new(),
            dummy: hash("not a password of anyone"),
        }
    }

    /// Whether a normalized user id could name an account (1 to 256 bytes): anything
    /// else is refused before any limit or password check.
    pub fn could_exist(user: &str) -> bool {
        (1..=256).contains(&user.len())
    }

    /// Adds (or replaces) an account.
    pub fn add(&mut self, id: &str, password: &str, totp_secret: &[u8], role: Role) {
        let id = normalize_user_id(id).into_owned();
        let account = Account {
            id: id.clone(),
            role,
            hash: hash(password),
            totp: Zeroizing::new(totp_secret.to_vec()),
        };
        self.accounts.insert(id, account);
    }

    /// Checks a password in about the same time whether or not the user exists.
    pub fn check_password(&self, user: &str, password: &str) -> PasswordCheck {
        let id = normalize_user_id(user);
        let (phc, role) = match self.accounts.get(id.as_ref()) {
            Some(a) => (a.hash.as_str(), Some(a.role)),
            None => (self.dummy.as_str(), None),
        };
        let ok = PasswordHash::new(phc)
            .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok());
        match (ok, role) {
            (true, Some(role)) => PasswordCheck::Valid(role),
            _ => PasswordCheck::Invalid,
        }
    }

    /// [`check_password`](Self::check_password) off the async workers, at most
    /// [`MAX_PASSWORD_CHECKS`] at once; `None` when none came free within
    /// [`PASSWORD_CHECK_WAIT`] (answer `503` with `Retry-After`). A check whose client
    /// went away still holds its place until it ends.
    pub async fn check_password_bounded(
        self: &Arc<Self>,
        user: &str,
        password: String,
    ) -> Option<PasswordCheck> {
        let permit = tokio::time::timeout(PASSWORD_CHECK_WAIT, CHECKS.acquire())
            .await
            .ok()?
            .ok()?;
        let (users, user) = (self.clone(), user.to_owned());
        let password = Zeroizing::new(password);
        let check = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            users.check_password(&user, &password)
        });
        Some(check.await.unwrap_or(PasswordCheck::Invalid))
    }

    /// The 30-second step of a right TOTP code at Unix time `now_secs` (the previous
    /// and next step pass too, for clock drift), or `None`. Constant-time comparison.
    /// A code passes once (RFC 6238 §5.2): the caller spends the step, fleet-wide, with
    /// `StepUps::spend_totp_step`.
    pub fn totp_step(&self, user: &str, code: &str, now_secs: u64) -> Option<u64> {
        let account = self.accounts.get(normalize_user_id(user).as_ref())?;
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let step = now_secs / 30;
        let mut matched = None;
        for s in [step.saturating_sub(1), step, step + 1] {
            let want = totp_at(&account.totp, s);
            if bool::from(want.as_bytes().ct_eq(code.as_bytes())) {
                matched = Some(s);
            }
        }
        matched
    }

    /// The role of an account, if it exists.
    pub fn role(&self, user: &str) -> Option<Role> {
        self.accounts
            .get(normalize_user_id(user).as_ref())
            .map(|a| a.role)
    }
}

fn hash(password: &str) -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .unwrap_or_else(|_| unreachable!("the OS random source failed"));
    let salt = SaltString::encode_b64(&bytes)
        .unwrap_or_else(|e| unreachable!("a 16-byte salt encodes: {e}"));
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .unwrap_or_else(|e| unreachable!("Argon2id hashing with valid parameters: {e}"))
        .to_string()
}

/// The six-digit TOTP code (RFC 6238, HMAC-SHA1, 30 s steps) for time step `step`.
pub fn totp_at(secret: &[u8], step: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let t = tag.as_ref();
    let offset = usize::from(t[t.len() - 1] & 0x0f);
    let bin = (u32::from(t[offset]) & 0x7f) << 24
        | u32::from(t[offset + 1]) << 16
        | u32::from(t[offset + 2]) << 8
        | u32::from(t[offset + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// The code a demo user's authenticator shows at `now_secs` (for the demo and tests).
pub fn demo_totp(user: &str, now_secs: u64) -> Option<String> {
    let id = normalize_user_id(user);
    DEMO_ACCOUNTS
        .iter()
        .find(|(u, ..)| *u == id)
        .map(|(_, _, secret, _)| totp_at(&secret[..], now_secs / 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890"; the RFC prints 8
        // digits, the last 6 are what a 6-digit authenticator shows.
        let seed = b"12345678901234567890";
        for (t, eight) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp_at(seed, t / 30), eight[2..], "T = {t}");
        }
    }

    /// With every check taken, a sign-in waits `PASSWORD_CHECK_WAIT`, then is told to
    /// come back; once one frees, checks run again.
    #[tokio::test(start_paused = true)]
    async fn password_checks_are_bounded() {
        let mut users = Users::empty();
        users.add("alice", "right", b"12345678901234567890", Role::User);
        let users = Arc::new(users);
        let all = u32::try_from(MAX_PASSWORD_CHECKS).unwrap();
        let taken = CHECKS.acquire_many(all).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            users.check_password_bounded("alice", "right".into()).await,
            None
        );
        assert_eq!(started.elapsed(), PASSWORD_CHECK_WAIT);
        drop(taken);
        assert_eq!(
            users.check_password_bounded("alice", "right".into()).await,
            Some(PasswordCheck::Valid(Role::User))
        );
    }

    #[test]
    fn passwords_and_codes() {
        let mut users = Users::empty();
        users.add("Alice", "right", b"12345678901234567890", Role::User);
        assert_eq!(
            users.check_password("alice", "right"),
            PasswordCheck::Valid(Role::User)
        );
        assert_eq!(
            users.check_password(" ALICE ", "right"),
            PasswordCheck::Valid(Role::User)
        );
        assert_eq!(
            users.check_password("alice", "wrong"),
            PasswordCheck::Invalid
        );
        assert_eq!(
            users.check_password("nobody", "right"),
            PasswordCheck::Invalid
        );
        // RFC 6238 appendix B's SHA-1 secret: 287082 at T = 59 s (step 1).
        assert_eq!(users.totp_step("alice", "287082", 59), Some(1));
        assert_eq!(users.totp_step("alice", "287082", 59 + 30), Some(1)); // drift
        assert_eq!(users.totp_step("alice", "287082", 59 + 90), None);
        assert_eq!(users.totp_step("alice", "28708", 59), None);
        assert_eq!(users.totp_step("alice", "２８７０８２", 59), None);
        assert_eq!(users.totp_step("nobody", "287082", 59), None);
        assert!(!format!("{:?}", users).contains("argon2id"));
    }
}

//! The validation policy, fixed per validator, and its fingerprint.

use std::collections::BTreeSet;

use jsonwebtoken::Algorithm;
#[cfg(test)]
use jsonwebtoken::Validation;
use ring::digest;

use crate::error::Error;

/// What a valid token must satisfy. Fixed when a [`crate::Validator`] is built.
///
/// Defaults: `exp` required, `nbf` checked when present, leeway 0 s, no issuer,
/// audience, subject or `typ` constraint. As in `jsonwebtoken`, a token that carries
/// `aud` is refused when the policy names no audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) algorithms: BTreeSet<AlgName>,
    pub(crate) issuers: Option<BTreeSet<String>>,
    pub(crate) audiences: Option<BTreeSet<String>>,
    pub(crate) subject: Option<String>,
    pub(crate) leeway_secs: u64,
    pub(crate) reject_expiring_in_less_than_secs: u64,
    pub(crate) required_claims: BTreeSet<String>,
    pub(crate) typ: Option<String>,
    pub(crate) validate_nbf: bool,
}

/// An [`Algorithm`] ordered by name, so a policy has one canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AlgName(pub(crate) Algorithm);

impl AlgName {
    fn name(self) -> String {
        format!("{:?}", self.0)
    }
}

impl PartialOrd for AlgName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AlgName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(&other.name())
    }
}

impl Policy {
    /// A policy accepting the given algorithms (at least one).
    pub fn new(algorithms: &[Algorithm]) -> Result<Self, Error> {
        if algorithms.is_empty() {
            return Err(Error::InvalidConfig(
                "a policy needs at least one algorithm",
            ));
        }
        Ok(Policy {
            algorithms: algorithms.iter().copied().map(AlgName).collect(),
            issuers: None,
            audiences: None,
            subject: None,
            leeway_secs: 0,
            reject_expiring_in_less_than_secs: 0,
            required_claims: ["exp".to_owned()].into_iter().collect(),
            typ: None,
            validate_nbf: true,
        })
    }

    /// `iss` must be one of these (and is then required).
    pub fn issuers(mut self, issuers: &[&str]) -> Self {
        self.issuers = Some(issuers.iter().map(|s| (*s).to_owned()).collect());
        self.required_claims.insert("iss".to_owned());
        self
    }

    /// `aud` must contain one of these (and is then required).
    pub fn audiences(mut self, audiences: &[&str]) -> Self {
        self.audiences = Some(audiences.iter().map(|s| (*s).to_owned()).collect());
        self.required_claims.insert("aud".to_owned());
        self
    }

    /// `sub` must equal this (and is then required).
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_owned());
        self.required_claims.insert("sub".to_owned());
        self
    }

    /// Clock-skew allowance for `exp` and `nbf`, in seconds.
    pub fn leeway_secs(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Refuse tokens that expire within this many seconds (jsonwebtoken's
    /// `reject_tokens_expiring_in_less_than`).
    pub fn reject_expiring_in_less_than_secs(mut self, secs: u64) -> Self {
        self.reject_expiring_in_less_than_secs = secs;
        self
    }

    /// The registered claims that must be present: any of `exp`, `nbf`, `iss`,
    /// `aud`, `sub` (others are ignored, as in jsonwebtoken). Replaces the default
    /// `{"exp"}`; issuer/audience/subject constraints set earlier stay required.
    pub fn required_claims(mut self, claims: &[&str]) -> Self {
        self.required_claims = claims.iter().map(|s| (*s).to_owned()).collect();
        for (set, name) in [
            (self.issuers.is_some(), "iss"),
            (self.audiences.is_some(), "aud"),
            (self.subject.is_some(), "sub"),
        ] {
            if set {
                self.required_claims.insert(name.to_owned());
            }
        }
        self
    }

    /// The header's `typ` must equal this (ASCII case-insensitively), e.g. `"JWT"`
    /// or `"at+jwt"` (RFC 9068).
    pub fn typ(mut self, typ: &str) -> Self {
        self.typ = Some(typ.to_owned());
        self
    }

    /// Whether `nbf` is checked when present (default true).
    pub fn validate_nbf(mut self, on: bool) -> Self {
        self.validate_nbf = on;
        self
    }

    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&AlgName(alg))
    }

    /// The jsonwebtoken validation for one algorithm: the reference `claims::check`
    /// is tested against. Time is checked by us against
    /// our `Clock` (jsonwebtoken reads the system clock), so `exp`/`nbf` are off here.
    #[cfg(test)]
    pub(crate) fn jsonwebtoken_validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.leeway = 0;
        v.validate_aud = true;
        v.required_spec_claims = self.required_claims.iter().cloned().collect();
        v.aud = self.audiences.as_ref().map(|a| a.iter().cloned().collect());
        v.iss = self.issuers.as_ref().map(|a| a.iter().cloned().collect());
        v.sub = self.subject.clone();
        v
    }

    /// SHA-256 over a canonical, length-prefixed encoding of every field: two
    /// policies share a fingerprint only if they accept the same tokens.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        fn put(ctx: &mut digest::Context, tag: u8, bytes: &[u8]) {
            ctx.update(&[tag]);
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        }
        fn put_set(ctx: &mut digest::Context, tag: u8, set: Option<&BTreeSet<String>>) {
            match set {
                None => put(ctx, tag, b"-"),
                Some(set) => {
                    put(ctx, tag, &(set.len() as u64).to_be_bytes());
                    for s in set {
                        put(ctx, tag, s.as_bytes());
                    }
                }
            }
        }
        let mut ctx = digest::Context::new(&digest::SHA256);
        put(&mut ctx, 0, b"palisade-jwt-cache policy v1");
        for a in &self.algorithms {
            put(&mut ctx, 1, a.name().as_bytes());
        }
        put_set(&mut ctx, 2, self.issuers.as_ref());
        put_set(&mut ctx, 3, self.audiences.as_ref());
        match &self.subject {
            None => put(&mut ctx, 4, b"-"),
            Some(s) => put(&mut ctx, 5, s.as_bytes()),
        }
        put(&mut ctx, 6, &self.leeway_secs.to_be_bytes());
        put(
            &mut ctx,
            7,
            &self.reject_expiring_in_less_than_secs.to_be_bytes(),
        );
        put_set(&mut ctx, 8, Some(&self.required_claims));
        match &self.typ {
            None => put(&mut ctx, 9, b"-"),
            Some(t) => put(&mut ctx, 10, t.to_ascii_lowercase().as_bytes()),
        }
        put(&mut ctx, 11, &[u8::from(self.validate_nbf)]);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_fingerprint_and_order_does_not() {
        let base = || Policy::new(&[Algorithm::RS256, Algorithm::ES256]).unwrap();
        let variants = [
            base(),
            Policy::new(&[Algorithm::RS256]).unwrap(),
            base().issuers(&["a"]),
            base().issuers(&["a", "b"]),
            base().audiences(&["a"]),
            base().subject("a"),
            base().leeway_secs(1),
            base().reject_expiring_in_less_than_secs(1),
            base().required_claims(&["exp", "nbf"]),
            base().typ("JWT"),
            base().validate_nbf(false),
            // Same strings in different fields must not collide.
            base().issuers(&[]).audiences(&["a"]),
            base().audiences(&[]).issuers(&["a"]),
        ];
        let prints: std::collections::HashSet<[u8; 32]> =
            variants.iter().map(Policy::fingerprint).collect();
        assert_eq!(prints.len(), variants.len());
        assert_eq!(
            Policy::new(&[Algorithm::ES256, Algorithm::RS256])
                .unwrap()
                .issuers(&["b", "a"])
                .fingerprint(),
            base().issuers(&["a", "b"]).fingerprint()
        );
        assert_eq!(
            base().typ("jwt").fingerprint(),
            base().typ("JWT").fingerprint()
        );
    }
}

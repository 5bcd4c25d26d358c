//! The validation policy, fixed per validator, and its fingerprint.

use std::collections::BTreeSet;

use jsonwebtoken::Algorithm;
#[cfg(test)]
use jsonwebtoken::Validation;
use ring::digest;

use crate::claims::REQUIRABLE;
use crate::error::Error;
use crate::mldsa::MlDsa;

/// What a valid token must satisfy. Built with [`Policy::builder`]; fixed when a
/// [`crate::Validator`] is built.
///
/// Defaults: `exp` required, `nbf` checked when present, leeway 0 s, no issuer,
/// audience, subject or `typ` constraint. As in `jsonwebtoken`, a token that carries
/// `aud` is refused when the policy names no audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) algorithms: BTreeSet<AlgName>,
    pub(crate) ml_dsa: BTreeSet<MlDsa>,
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

/// Builds a [`Policy`]: every setter is infallible, [`build`](Self::build) checks
/// them all.
#[derive(Debug, Clone)]
#[must_use]
pub struct PolicyBuilder {
    algorithms: Vec<Algorithm>,
    ml_dsa: Vec<MlDsa>,
    issuers: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
    subject: Option<String>,
    leeway_secs: u64,
    reject_expiring_in_less_than_secs: u64,
    required_claims: Vec<String>,
    exp_optional: bool,
    typ: Option<String>,
    validate_nbf: bool,
}

impl PolicyBuilder {
    /// The algorithms a token may use (at least one). Each key is bound to one of
    /// them as well (see [`crate::KeySet`]).
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// The ML-DSA parameter sets a token may use (RFC 9964; jsonwebtoken has none,
    /// so they are named apart from [`Self::algorithms`]). A policy needs at least
    /// one algorithm of either kind.
    pub fn ml_dsa(mut self, params: &[MlDsa]) -> Self {
        self.ml_dsa = params.to_vec();
        self
    }

    /// `iss` must be one of these (at least one; `iss` is then required).
    pub fn issuers(mut self, issuers: &[&str]) -> Self {
        self.issuers = Some(issuers.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// `aud` must contain one of these (at least one; `aud` is then required).
    pub fn audiences(mut self, audiences: &[&str]) -> Self {
        self.audiences = Some(audiences.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// `sub` must equal this (and is then required).
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_owned());
        self
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat`, in seconds (default 0).
    pub fn leeway_secs(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Refuse tokens that expire within this many seconds (jsonwebtoken's
    /// `reject_tokens_expiring_in_less_than`; default 0).
    pub fn reject_expiring_in_less_than_secs(mut self, secs: u64) -> Self {
        self.reject_expiring_in_less_than_secs = secs;
        self
    }

    /// Registered claims that must be present besides `exp` (always required unless
    /// [`allow_missing_exp`](Self::allow_missing_exp)): any of `exp`, `nbf`, `iat`,
    /// `iss`, `aud`, `sub`, `jti` (a token without one is `MissingClaim`; a required
    /// `jti` must be a non-empty string, since an empty one revokes nothing). Any
    /// other name is refused by [`build`](Self::build): jsonwebtoken ignores the
    /// names it does not know, and also `iat` and `jti`, so a policy asking for `jti`
    /// (to revoke tokens one at a time) would have accepted tokens without it. Adds to
    /// the required set (jsonwebtoken's `set_required_spec_claims` replaces it: there,
    /// asking for `jti` alone stops requiring `exp`); the claims that issuer, audience
    /// and subject constraints need stay required whatever the order of the calls.
    pub fn required_claims(mut self, claims: &[&str]) -> Self {
        self.required_claims
            .extend(claims.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Accept tokens without `exp`, unless [`required_claims`](Self::required_claims)
    /// names it. Such a token never expires, is cached for the cache's `max_ttl`
    /// each time, and cannot be revoked one at a time (the blacklist needs `exp` to
    /// know how long to keep the entry): only for issuers that never send one.
    pub fn allow_missing_exp(mut self) -> Self {
        self.exp_optional = true;
        self
    }

    /// The header's `typ` must equal this (ASCII case-insensitively), e.g. `"JWT"`
    /// or `"at+jwt"` (RFC 9068), with or without an `application/` prefix on either
    /// side: RFC 7515 §4.1.9 implies the prefix when the value has no other `/`, so
    /// `"at+jwt"` and `"application/at+jwt"` are the same type (RFC 9068 §4).
    pub fn typ(mut self, typ: &str) -> Self {
        self.typ = Some(typ.to_owned());
        self
    }

    /// Whether `nbf` is checked when present (default true).
    pub fn validate_nbf(mut self, on: bool) -> Self {
        self.validate_nbf = on;
        self
    }

    /// The policy. Fails ([`Error::InvalidConfig`] naming the field) with no
    /// algorithm (neither [`Self::algorithms`] nor [`Self::ml_dsa`]), with an empty
    /// issuer or audience list (which would accept no token at all), or with a
    /// required claim it cannot check.
    pub fn build(self) -> Result<Policy, Error> {
        if self.algorithms.is_empty() && self.ml_dsa.is_empty() {
            return Err(Error::config(
                "algorithms",
                "a policy needs at least one algorithm",
            ));
        }
        for (field, list) in [("issuers", &self.issuers), ("audiences", &self.audiences)] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                return Err(Error::config(
                    field,
                    "an empty list would accept no token; leave it unset to accept any",
                ));
            }
        }
        if let Some(name) =
            (self.required_claims.iter()).find(|n| !REQUIRABLE.contains(&n.as_str()))
        {
            return Err(Error::config(
                "required_claims",
                format!(
                    "`{name}` cannot be required: only {}",
                    REQUIRABLE.join(", ")
                ),
            ));
        }
        let mut required_claims: BTreeSet<String> = self.required_claims.into_iter().collect();
        for (set, name) in [
            (!self.exp_optional, "exp"),
            (self.issuers.is_some(), "iss"),
            (self.audiences.is_some(), "aud"),
            (self.subject.is_some(), "sub"),
        ] {
            if set {
                required_claims.insert(name.to_owned());
            }
        }
        Ok(Policy {
            algorithms: self.algorithms.into_iter().map(AlgName).collect(),
            ml_dsa: self.ml_dsa.into_iter().collect(),
            issuers: self.issuers.map(|v| v.into_iter().collect()),
            audiences: self.audiences.map(|v| v.into_iter().collect()),
            subject: self.subject,
            leeway_secs: self.leeway_secs,
            reject_expiring_in_less_than_secs: self.reject_expiring_in_less_than_secs,
            required_claims,
            typ: self.typ,
            validate_nbf: self.validate_nbf,
        })
    }
}

impl Policy {
    /// A builder: no algorithm yet (one is required), `exp` required, `nbf`
    /// checked when present, leeway 0 s, no issuer, audience, subject or `typ`
    /// constraint.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            algorithms: Vec::new(),
            ml_dsa: Vec::new(),
            issuers: None,
            audiences: None,
            subject: None,
            leeway_secs: 0,
            reject_expiring_in_less_than_secs: 0,
            required_claims: Vec::new(),
            exp_optional: false,
            typ: None,
            validate_nbf: true,
        }
    }

    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&AlgName(alg))
    }

    pub(crate) fn allows_ml_dsa(&self, param: MlDsa) -> bool {
        self.ml_dsa.contains(&param)
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
            Some(t) => put(&mut ctx, 10, media_type(t).to_ascii_lowercase().as_bytes()),
        }
        put(&mut ctx, 11, &[u8::from(self.validate_nbf)]);
        for m in &self.ml_dsa {
            put(&mut ctx, 12, m.as_str().as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// A `typ` value without the `application/` prefix that RFC 7515 §4.1.9 lets a
/// producer leave out (only when no other `/` follows), so both spellings compare
/// equal once ASCII case is ignored.
pub(crate) fn media_type(typ: &str) -> &str {
    const PREFIX: &str = "application/";
    match typ.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) && !typ[PREFIX.len()..].contains('/') => {
            &typ[PREFIX.len()..]
        }
        _ => typ,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_fingerprint_and_order_does_not() {
        let base = || Policy::builder().algorithms(&[Algorithm::RS256, Algorithm::ES256]);
        let variants = [
            base(),
            Policy::builder().algorithms(&[Algorithm::RS256]),
            base().issuers(&["a"]),
            base().issuers(&["a", "b"]),
            base().audiences(&["a"]),
            base().subject("a"),
            base().leeway_secs(1),
            base().reject_expiring_in_less_than_secs(1),
            base().required_claims(&["exp", "nbf"]),
            base().typ("JWT"),
            base().validate_nbf(false),
            base().ml_dsa(&[MlDsa::MlDsa65]),
            base().ml_dsa(&[MlDsa::MlDsa44]),
            // Same strings in different fields must not collide.
            base().issuers(&["b"]).audiences(&["a"]),
            base().audiences(&["b"]).issuers(&["a"]),
        ]
        .map(|b| b.build().unwrap());
        let prints: std::collections::HashSet<[u8; 32]> =
            variants.iter().map(Policy::fingerprint).collect();
        assert_eq!(prints.len(), variants.len());
        let print = |b: PolicyBuilder| b.build().unwrap().fingerprint();
        assert_eq!(
            print(
                Policy::builder()
                    .algorithms(&[Algorithm::ES256, Algorithm::RS256])
                    .issuers(&["b", "a"])
            ),
            print(base().issuers(&["a", "b"]))
        );
        assert_eq!(print(base().typ("jwt")), print(base().typ("JWT")));
        assert_eq!(
            print(base().typ("at+jwt")),
            print(base().typ("Application/AT+JWT"))
        );
        // The order of the calls does not matter: a constraint's claim stays required.
        assert_eq!(
            print(base().issuers(&["a"]).required_claims(&["nbf"])),
            print(base().required_claims(&["nbf"]).issuers(&["a"]))
        );
    }

    #[test]
    fn build_names_the_field_that_is_wrong() {
        let field = |b: PolicyBuilder| match b.build() {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Policy::builder()), "algorithms");
        let one = || Policy::builder().algorithms(&[Algorithm::ES256]);
        assert_eq!(field(one().issuers(&[])), "issuers");
        assert_eq!(field(one().audiences(&[])), "audiences");
    }
}

//! Which mechanisms the token offers, and the one each JWS algorithm signs with.

use cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use palisade_core_traits::JwsAlgorithm;
use ring::digest;

/// DER `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2 note 1), for `CKM_RSA_PKCS`.
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mechs {
    ecdsa: bool,
    ec_gen: bool,
    eddsa: bool,
    ed_gen: bool,
    rsa_gen: bool,
    rsa_pkcs: bool,
    sha256_rsa_pkcs: bool,
    rsa_pss: bool,
    sha256_rsa_pss: bool,
    ml_dsa: bool,
    ml_dsa_gen: bool,
}

impl Mechs {
    pub(super) fn from_list(list: &[MechanismType]) -> Self {
        let has = |m: MechanismType| list.contains(&m);
        Mechs {
            ecdsa: has(MechanismType::ECDSA),
            ec_gen: has(MechanismType::ECC_KEY_PAIR_GEN),
            eddsa: has(MechanismType::EDDSA),
            ed_gen: has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN),
            rsa_gen: has(MechanismType::RSA_PKCS_KEY_PAIR_GEN),
            rsa_pkcs: has(MechanismType::RSA_PKCS),
            sha256_rsa_pkcs: has(MechanismType::SHA256_RSA_PKCS),
            rsa_pss: has(MechanismType::RSA_PKCS_PSS),
            sha256_rsa_pss: has(MechanismType::SHA256_RSA_PKCS_PSS),
            ml_dsa: has(MechanismType::ML_DSA),
            ml_dsa_gen: has(MechanismType::ML_DSA_KEY_PAIR_GEN),
        }
    }

    /// Why the token cannot sign with `alg`, if it cannot.
    pub(super) fn sign_gap(&self, alg: JwsAlgorithm) -> Option<&'static str> {
        match alg {
            JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => (!self.ecdsa).then_some("no CKM_ECDSA"),
            JwsAlgorithm::EdDSA => (!self.eddsa).then_some("no CKM_EDDSA"),
            JwsAlgorithm::RS256 => (!self.sha256_rsa_pkcs && !self.rsa_pkcs)
                .then_some("no CKM_SHA256_RSA_PKCS or CKM_RSA_PKCS"),
            JwsAlgorithm::PS256 => (!self.sha256_rsa_pss && !self.rsa_pss)
                .then_some("no CKM_SHA256_RSA_PKCS_PSS or CKM_RSA_PKCS_PSS"),
            a if a.is_ml_dsa() => (!self.ml_dsa)
                .then_some("no CKM_ML_DSA (PKCS#11 3.2): mechanism not supported by this token"),
            _ => Some("algorithm not supported by this crate"),
        }
    }

    pub(super) fn generate_gap(&self, alg: JwsAlgorithm) -> Option<&'static str> {
        let gen_missing = match alg {
            JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => {
                (!self.ec_gen).then_some("no CKM_EC_KEY_PAIR_GEN")
            }
            JwsAlgorithm::EdDSA => (!self.ed_gen).then_some("no CKM_EC_EDWARDS_KEY_PAIR_GEN"),
            a if a.is_ml_dsa() => (!self.ml_dsa_gen).then_some(
                "no CKM_ML_DSA_KEY_PAIR_GEN (PKCS#11 3.2): mechanism not supported by this token",
            ),
            _ => (!self.rsa_gen).then_some("no CKM_RSA_PKCS_KEY_PAIR_GEN"),
        };
        self.sign_gap(alg).or(gen_missing)
    }
}

const PSS_SHA256: PkcsPssParams = PkcsPssParams {
    hash_alg: MechanismType::SHA256,
    mgf: PkcsMgfType::MGF1_SHA256,
    s_len: cryptoki::types::Ulong::new(32),
};

impl Mechs {
    /// The mechanism for `alg` and the data it signs: the message itself, or a digest
    /// (or DigestInfo) computed here when the token only has the raw mechanism.
    pub(super) fn sign_input(
        &self,
        alg: JwsAlgorithm,
        message: &[u8],
    ) -> (Mechanism<'static>, SignInput) {
        let digest256 = || digest::digest(&digest::SHA256, message).as_ref().to_vec();
        match alg {
            JwsAlgorithm::ES256 => (Mechanism::Ecdsa, SignInput::Prepared(digest256())),
            JwsAlgorithm::ES384 => (
                Mechanism::Ecdsa,
                SignInput::Prepared(digest::digest(&digest::SHA384, message).as_ref().to_vec()),
            ),
            JwsAlgorithm::EdDSA => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                SignInput::Message,
            ),
            JwsAlgorithm::RS256 if self.sha256_rsa_pkcs => {
                (Mechanism::Sha256RsaPkcs, SignInput::Message)
            }
            JwsAlgorithm::RS256 => {
                let mut v = SHA256_DIGEST_INFO.to_vec();
                v.extend_from_slice(&digest256());
                (Mechanism::RsaPkcs, SignInput::Prepared(v))
            }
            // Pure ML-DSA, empty context (RFC 9964 §4); no parameter means the
            // token's default, a hedged signature (FIPS 204 recommends hedging).
            a if a.is_ml_dsa() => (
                Mechanism::MlDsa(SignAdditionalContext::new(HedgeType::Preferred, None)),
                SignInput::Message,
            ),
            JwsAlgorithm::PS256 if self.sha256_rsa_pss => {
                (Mechanism::Sha256RsaPkcsPss(PSS_SHA256), SignInput::Message)
            }
            _ => (
                Mechanism::RsaPkcsPss(PSS_SHA256),
                SignInput::Prepared(digest256()),
            ),
        }
    }
}

/// What `C_Sign` gets: the message as given, or bytes prepared from it.
pub(super) enum SignInput {
    /// The JWS signing input itself.
    Message,
    /// A digest or DigestInfo of it.
    Prepared(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_mechanisms_are_named() {
        let only_ecdsa = Mechs::from_list(&[MechanismType::ECDSA, MechanismType::ECC_KEY_PAIR_GEN]);
        assert_eq!(only_ecdsa.generate_gap(JwsAlgorithm::ES256), None);
        assert_eq!(
            only_ecdsa.sign_gap(JwsAlgorithm::EdDSA),
            Some("no CKM_EDDSA")
        );
        assert_eq!(
            only_ecdsa.generate_gap(JwsAlgorithm::RS256),
            Some("no CKM_SHA256_RSA_PKCS or CKM_RSA_PKCS")
        );
        let no_gen = Mechs::from_list(&[MechanismType::EDDSA]);
        assert_eq!(no_gen.sign_gap(JwsAlgorithm::EdDSA), None);
        assert_eq!(
            no_gen.generate_gap(JwsAlgorithm::EdDSA),
            Some("no CKM_EC_EDWARDS_KEY_PAIR_GEN")
        );
        for alg in [
            JwsAlgorithm::MlDsa44,
            JwsAlgorithm::MlDsa65,
            JwsAlgorithm::MlDsa87,
        ] {
            let gap = only_ecdsa.generate_gap(alg).unwrap();
            assert!(gap.contains("not supported by this token"), "{gap}");
            assert!(gap.contains("CKM_ML_DSA"), "{gap}");
        }
        let with_ml_dsa =
            Mechs::from_list(&[MechanismType::ML_DSA, MechanismType::ML_DSA_KEY_PAIR_GEN]);
        assert_eq!(with_ml_dsa.generate_gap(JwsAlgorithm::MlDsa65), None);
        let sign_only = Mechs::from_list(&[MechanismType::ML_DSA]);
        assert_eq!(sign_only.sign_gap(JwsAlgorithm::MlDsa44), None);
        assert!(
            sign_only
                .generate_gap(JwsAlgorithm::MlDsa44)
                .unwrap()
                .contains("no CKM_ML_DSA_KEY_PAIR_GEN")
        );
    }
}

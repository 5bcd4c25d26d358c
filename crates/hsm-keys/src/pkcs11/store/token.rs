//! The work behind each `KeyStore` method on the token: generate, import, sign,
//! destroy (the trait impl in `mod.rs` adds the span and the counters).

#[allow(clippy::wildcard_imports)] // the parent's imports: this is its other half
use super::*;

impl Pkcs11Store {
    pub(super) fn generate_on_token(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
    ) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        if let Some(reason) = self.inner.mechs.generate_gap(algorithm) {
            return Err(Error::UnsupportedAlgorithm {
                backend: "pkcs11",
                operation: "generate",
                algorithm,
                reason: format!("token {:?} has {reason}", self.inner.token_label),
            });
        }
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let key = KeyRef::new(name, self.next_version(name)?);
        let label = label(&key, algorithm).into_bytes();
        let mut public = public_template(&label);
        let mechanism = match algorithm {
            JwsAlgorithm::RS256 | JwsAlgorithm::PS256 => {
                public.push(Attribute::ModulusBits(RSA_BITS.into()));
                public.push(Attribute::PublicExponent(vec![1, 0, 1]));
                Mechanism::RsaPkcsKeyPairGen
            }
            JwsAlgorithm::EdDSA => {
                public.push(Attribute::EcParams(ED25519_OID.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            a if a.is_ml_dsa() => {
                public.push(Attribute::ParameterSet(ml_dsa_parameter_set(a).into()));
                Mechanism::MlDsaKeyPairGen
            }
            _ => {
                public.push(Attribute::EcParams(ec_params(algorithm).to_vec()));
                Mechanism::EccKeyPairGen
            }
        };
        let private = private_template(&label);
        let pk = self.inner.with_keeper(|s| {
            let (public, _) = s.generate_key_pair(&mechanism, &public, &private)?;
            read_public_handle(s, algorithm, public)
        })?;
        let info = KeyInfo {
            key,
            algorithm,
            jwk: pk.to_jwk()?,
        };
        self.remember(&info);
        tracing::info!(key = %info.key, alg = %algorithm, kid = %info.kid(), "generated key on token");
        Ok(info)
    }

    pub(super) fn import_on_token(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        pkcs8_der: &[u8],
    ) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        self.import_gap(algorithm)?;
        // ring (aws-lc-rs for ML-DSA) validates the key and gives the public half;
        // the private components go from the caller's DER straight into a template
        // that is wiped on drop.
        let public_key =
            RingKey::from_pkcs8(algorithm, pkcs8_der, &self.inner.rng)?.public_key(algorithm);
        let private = pkcs8::private_template(algorithm, pkcs8_der)?;
        self.create_pair(name, algorithm, &public_key, private)
    }

    pub(super) fn import_seed_on_token(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        seed: &[u8],
    ) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        self.import_gap(algorithm)?;
        let public_key = PublicKey::MlDsa {
            alg: algorithm,
            public: mldsa::public(&mldsa::from_seed(algorithm, seed)?),
        };
        let mut private = pkcs8::SecretTemplate(pkcs8::ml_dsa_template(algorithm).to_vec());
        private.0.push(Attribute::Seed(seed.to_vec()));
        self.create_pair(name, algorithm, &public_key, private)
    }

    /// Refuses an import the token has no signing mechanism for.
    pub(super) fn import_gap(&self, algorithm: JwsAlgorithm) -> Result<(), Error> {
        match self.inner.mechs.sign_gap(algorithm) {
            Some(reason) => Err(Error::UnsupportedAlgorithm {
                backend: "pkcs11",
                operation: "import",
                algorithm,
                reason: format!("token {:?} has {reason}", self.inner.token_label),
            }),
            None => Ok(()),
        }
    }

    /// Creates the private object (`private` holds its key type and components) and
    /// its public half as `name/(latest version + 1)`.
    pub(super) fn create_pair(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        public_key: &PublicKey,
        mut private: pkcs8::SecretTemplate,
    ) -> Result<KeyInfo, Error> {
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let key = KeyRef::new(name, self.next_version(name)?);
        let label = label(&key, algorithm).into_bytes();
        private.0.extend(private_template(&label));
        private.0.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        let mut public = public_template(&label);
        public.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
        match public_key {
            PublicKey::Rsa { n, e, .. } => public.extend([
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
            ]),
            PublicKey::Ec { point, .. } => public.extend([
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(ec_params(algorithm).to_vec()),
                Attribute::EcPoint(der_octet_string(point)),
            ]),
            PublicKey::Ed25519(pk) => public.extend([
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::EcParams(ED25519_OID.to_vec()),
                Attribute::EcPoint(der_octet_string(pk)),
            ]),
            PublicKey::MlDsa { public: pk, .. } => {
                public.extend(pkcs8::ml_dsa_template(algorithm));
                public.push(Attribute::Value(pk.clone()));
            }
        }
        let refused = self.inner.with_keeper(|s| {
            let priv_handle = match s.create_object(&private.0) {
                Ok(h) => h,
                // A PKCS#11 3.2 token may implement CKM_ML_DSA yet not take a seed
                // (CKA_SEED) or an expanded key in C_CreateObject.
                Err(CkError::Pkcs11(
                    rv @ (RvError::AttributeTypeInvalid | RvError::TemplateInconsistent),
                    _,
                )) if algorithm.is_ml_dsa() => return Ok(Some(rv)),
                Err(e) => return Err(e),
            };
            if let Err(e) = s.create_object(&public) {
                let _ = s.destroy_object(priv_handle);
                return Err(e);
            }
            Ok(None)
        })?;
        if let Some(rv) = refused {
            return Err(Error::UnsupportedAlgorithm {
                backend: "pkcs11",
                operation: "import",
                algorithm,
                reason: format!(
                    "token {:?} refused the ML-DSA private key object ({rv})",
                    self.inner.token_label
                ),
            });
        }
        let info = KeyInfo {
            key,
            algorithm,
            jwk: public_key.to_jwk()?,
        };
        self.remember(&info);
        Ok(info)
    }

    /// The algorithm of `key`, from the cache (no `KeyInfo` clone on the hot path)
    /// or the token.
    pub(super) fn algorithm_of(&self, key: &KeyRef) -> Result<JwsAlgorithm, Error> {
        let cached = self
            .inner
            .infos
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|i| i.algorithm);
        match cached {
            Some(alg) => Ok(alg),
            None => Ok(self.info(key)?.algorithm),
        }
    }

    pub(super) fn sign_on_token(
        &self,
        key: &KeyRef,
        alg: JwsAlgorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let m = &self.inner.mechs;
        if let Some(reason) = m.sign_gap(alg) {
            return Err(Error::UnsupportedAlgorithm {
                backend: "pkcs11",
                operation: "sign with",
                algorithm: alg,
                reason: format!("token {:?} has {reason}", self.inner.token_label),
            });
        }
        let (mechanism, input) = m.sign_input(alg, message);
        let data: &[u8] = match &input {
            SignInput::Message => message,
            SignInput::Prepared(bytes) => bytes,
        };
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let lease = match self.inner.checkout() {
                Ok(lease) => lease,
                Err(e) if matches!(classify(&e), Failure::Session) => {
                    self.inner
                        .recover_sessions(self.inner.epoch.load(Ordering::Acquire))?;
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(ck("C_OpenSession", e)),
            };
            let result = self
                .handle(key, alg, &lease.session, lease.epoch)
                .and_then(|h| lease.session.sign(&mechanism, h, data));
            match result {
                Ok(sig) => {
                    self.inner.checkin(lease);
                    return Ok(sig);
                }
                Err(e) => {
                    match classify(&e) {
                        Failure::Handle => {
                            // Stale handle, or private objects hidden because the
                            // token logged out: find it again after (re)login.
                            self.inner
                                .counters
                                .handles_refound
                                .fetch_add(1, Ordering::Relaxed);
                            telemetry::handle_refound();
                            self.inner
                                .handles
                                .write()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(key);
                            self.inner.checkin(lease);
                            self.inner.relogin()?;
                        }
                        Failure::Login => {
                            self.inner.checkin(lease);
                            self.inner.relogin()?;
                        }
                        Failure::Session => {
                            // Dropped without C_CloseSession (no-drop session).
                            let seen = lease.epoch;
                            self.inner.discard(lease);
                            self.inner.recover_sessions(seen)?;
                        }
                        Failure::Other => {
                            self.inner.checkin(lease);
                            return Err(ck("C_Sign", e));
                        }
                    }
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => ck("C_Sign", e),
            None => Error::crypto("C_Sign"),
        })
    }

    pub(super) fn destroy_on_token(&self, key: &KeyRef) -> Result<(), Error> {
        let info = self.info(key)?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let label = label(key, info.algorithm).into_bytes();
        self.inner.with_keeper(|s| {
            // Public half last, so a concurrent lister never sees a private key
            // without its public half as a key.
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                for h in
                    s.find_objects(&[Attribute::Class(class), Attribute::Label(label.clone())])?
                {
                    s.destroy_object(h)?;
                }
            }
            Ok(())
        })?;
        self.inner
            .infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.inner
            .handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        tracing::info!(key = %key, "destroyed key on token");
        Ok(())
    }

    /// Counts a failed operation (backend errors only: a refused name or a missing
    /// key is the caller's).
    pub(super) fn observe<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        if let Err(Error::Crypto { operation, .. }) = &r {
            self.inner.counters.errors.fetch_add(1, Ordering::Relaxed);
            telemetry::error(operation);
        }
        r
    }
}

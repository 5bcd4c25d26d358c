//! palisade-hsm-keys against its anchors, same key and mechanism, same run:
//! `Pkcs11Store::sign` vs a bare cryptoki loop on SoftHSM2 (1 and 2 threads; a few
//! and 1,000 more objects on the token), ML-DSA-65 the same way on a kryoptic token
//! (PKCS#11 3.2; the module `scripts/test.sh setup` builds), and `SoftStore::sign`
//! vs bare ring. Results and their reading: docs/hsm-keys.md.
//!
//! cargo bench -p palisade-benches --bench hsm_keys -- --measurement-time 3
#![allow(clippy::unwrap_used)] // a benchmark that unwraps fails loudly, which is the point
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_hsm_keys::cryptoki::mechanism::Mechanism;
use palisade_hsm_keys::cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use palisade_hsm_keys::cryptoki::session::Session;
use palisade_hsm_keys::{JwsAlgorithm, KeyInfo, KeyStore, Pin, Pkcs11Store, SoftStore};
use palisade_testkit::{Kryoptic, SoftHsm};
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

/// A JWS signing input of typical size (header + a few claims).
const MESSAGE: &[u8] = b"eyJhbGciOiJFUzI1NiIsImtpZCI6IjEyMyIsInR5cCI6IkpXVCJ9.\
eyJzdWIiOiJhbGljZSIsImlhdCI6MTgwMDAwMDAwMCwiZXhwIjoxODAwMDAzNjAwLCJzY29wZSI6InJlYWQifQ";
const RSA_PKCS8: &[u8] = include_bytes!("../crates/hsm-keys/tests/data/rsa2048.pk8.der");
const ALGS: [JwsAlgorithm; 3] = [
    JwsAlgorithm::ES256,
    JwsAlgorithm::EdDSA,
    JwsAlgorithm::RS256,
];

fn store() -> Pkcs11Store {
    let hsm = SoftHsm::get();
    Pkcs11Store::builder()
        .context(hsm.pkcs11().clone())
        .token(hsm.token_label())
        .pin(Pin::new(SoftHsm::USER_PIN))
        .build()
        .unwrap()
}

/// The bare-cryptoki equivalent of one `Pkcs11Store::sign`: same mechanism, same
/// local digest for ECDSA, on a session and handle the caller keeps.
fn bare_sign(session: &Session, alg: JwsAlgorithm, key: ObjectHandle) -> Vec<u8> {
    match alg {
        JwsAlgorithm::ES256 => {
            let d = digest::digest(&digest::SHA256, MESSAGE);
            session.sign(&Mechanism::Ecdsa, key, d.as_ref()).unwrap()
        }
        JwsAlgorithm::EdDSA => {
            use palisade_hsm_keys::cryptoki::mechanism::eddsa::{
                EddsaParams, EddsaSignatureScheme,
            };
            session
                .sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    key,
                    MESSAGE,
                )
                .unwrap()
        }
        _ => session
            .sign(&Mechanism::Sha256RsaPkcs, key, MESSAGE)
            .unwrap(),
    }
}

fn private_handle(session: &Session, info: &KeyInfo) -> ObjectHandle {
    let label = format!("{}/{}/{}", info.key.name, info.key.version, info.algorithm);
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.into_bytes()),
        ])
        .unwrap()[0]
}

/// Runs `per_thread(iters / threads)` on `threads` threads and returns the wall time.
fn parallel(threads: u64, iters: u64, per_thread: impl Fn(u64) + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(threads as usize);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let n = iters / threads + u64::from(t < iters % threads);
            let (barrier, per_thread) = (&barrier, &per_thread);
            s.spawn(move || {
                barrier.wait();
                per_thread(n);
            });
        }
    });
    start.elapsed()
}

fn pkcs11(c: &mut Criterion) {
    let store = Arc::new(store());
    let keys: Vec<KeyInfo> = ALGS
        .iter()
        .map(|&alg| match alg {
            JwsAlgorithm::RS256 => store.import_pkcs8("bench", alg, RSA_PKCS8).unwrap(),
            _ => store.generate("bench", alg).unwrap(),
        })
        .collect();
    let hsm = SoftHsm::get();

    for (alg, info) in ALGS.iter().zip(&keys) {
        let mut g = c.benchmark_group(format!("hsm_keys/pkcs11/{alg}"));
        g.throughput(Throughput::Elements(1));
        let session = hsm.user_session();
        let handle = private_handle(&session, info);
        g.bench_function("bare_cryptoki", |b| {
            b.iter(|| bare_sign(&session, *alg, handle))
        });
        g.bench_function("pkcs11_store", |b| {
            b.iter(|| store.sign(&info.key, MESSAGE).unwrap())
        });
        drop(session);

        // Throughput with 1 and 2 threads (each bare thread has its own session).
        for threads in [1u64, 2] {
            g.bench_function(format!("bare_cryptoki_{threads}_threads"), |b| {
                b.iter_custom(|iters| {
                    let sessions: Vec<_> = (0..threads).map(|_| hsm.user_session()).collect();
                    let handle = private_handle(&sessions[0], info);
                    let sessions = std::sync::Mutex::new(sessions);
                    parallel(threads, iters, |n| {
                        let session = sessions.lock().unwrap().pop().unwrap();
                        for _ in 0..n {
                            bare_sign(&session, *alg, handle);
                        }
                    })
                })
            });
            g.bench_function(format!("pkcs11_store_{threads}_threads"), |b| {
                b.iter_custom(|iters| {
                    parallel(threads, iters, |n| {
                        for _ in 0..n {
                            store.sign(&info.key, MESSAGE).unwrap();
                        }
                    })
                })
            });
        }
        g.finish();
    }

    // Sign rate with 1,000 more objects on the token (the handle cache keeps
    // C_FindObjects off the signing path).
    let mut g = c.benchmark_group("hsm_keys/pkcs11/objects");
    g.throughput(Throughput::Elements(1));
    let es256 = &keys[0];
    g.bench_function("pkcs11_store_ES256_few_objects", |b| {
        b.iter(|| store.sign(&es256.key, MESSAGE).unwrap())
    });
    let session = hsm.user_session();
    let filler: Vec<ObjectHandle> = (0..1000)
        .map(|i| {
            session
                .create_object(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Label(format!("filler-{i}").into_bytes()),
                    Attribute::Value(vec![0; 32]),
                ])
                .unwrap()
        })
        .collect();
    g.bench_function("pkcs11_store_ES256_1000_more_objects", |b| {
        b.iter(|| store.sign(&es256.key, MESSAGE).unwrap())
    });
    g.finish();
    for h in filler {
        session.destroy_object(h).unwrap();
    }
}

/// ML-DSA-65 on kryoptic: `Pkcs11Store::sign` vs `C_Sign` with `CKM_ML_DSA` (pure,
/// empty context) on a session and handle the loop keeps.
fn kryoptic_ml_dsa(c: &mut Criterion) {
    use palisade_hsm_keys::cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
    let token = Kryoptic::get();
    let store = Pkcs11Store::builder()
        .context(token.pkcs11().clone())
        .token(token.token_label())
        .pin(Pin::new(Kryoptic::USER_PIN))
        .build()
        .unwrap();
    let info = store.generate("bench", JwsAlgorithm::MlDsa65).unwrap();
    let session = token.user_session();
    let handle = private_handle(&session, &info);
    let mechanism = Mechanism::MlDsa(SignAdditionalContext::new(HedgeType::Preferred, None));
    let mut g = c.benchmark_group("hsm_keys/pkcs11_kryoptic/ML-DSA-65");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bare_cryptoki", |b| {
        b.iter(|| session.sign(&mechanism, handle, MESSAGE).unwrap())
    });
    g.bench_function("pkcs11_store", |b| {
        b.iter(|| store.sign(&info.key, MESSAGE).unwrap())
    });
    g.finish();
}

fn soft(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let store = SoftStore::new();
    for alg in ALGS {
        let mut g = c.benchmark_group(format!("hsm_keys/soft/{alg}"));
        g.throughput(Throughput::Elements(1));
        let pkcs8: Vec<u8> = match alg {
            JwsAlgorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }
            JwsAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
                .unwrap()
                .as_ref()
                .to_vec(),
            _ => RSA_PKCS8.to_vec(),
        };
        let info = store.import_pkcs8("bench", alg, &pkcs8).unwrap();
        match alg {
            JwsAlgorithm::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &pkcs8,
                    &rng,
                )
                .unwrap();
                g.bench_function("bare_ring", |b| b.iter(|| kp.sign(&rng, MESSAGE).unwrap()));
            }
            JwsAlgorithm::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
                g.bench_function("bare_ring", |b| b.iter(|| kp.sign(MESSAGE)));
            }
            _ => {
                let kp = RsaKeyPair::from_pkcs8(&pkcs8).unwrap();
                g.bench_function("bare_ring", |b| {
                    b.iter(|| {
                        let mut sig = vec![0; kp.public().modulus_len()];
                        kp.sign(&signature::RSA_PKCS1_SHA256, &rng, MESSAGE, &mut sig)
                            .unwrap();
                        sig
                    })
                });
            }
        }
        g.bench_function("soft_store", |b| {
            b.iter(|| store.sign(&info.key, MESSAGE).unwrap())
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1));
    targets = pkcs11, kryoptic_ml_dsa, soft
}
criterion_main!(benches);

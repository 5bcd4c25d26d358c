//! Witness cosignatures (c2sp.org/tlog-cosignature, Ed25519 `cosignature/v1`) and
//! k-of-n witness policies: a real cosigned checkpoint, a vector made with
//! pyca/cryptography, and cosignatures made here with ring following the spec.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::num::NonZeroUsize;

use palisade_ct_monitor::testlog::{Protocol, TestLog};
use palisade_ct_monitor::{
    Error, Event, Health, LogConfig, MemoryStateStore, Monitor, Witness, WitnessPolicy,
};
use ring::signature::{Ed25519KeyPair, KeyPair};

const ARCHE: &str = "arche2025h1.staging.ct.transparency.dev";
const REMORA: &str = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";

/// A k-of-n policy through the builder.
fn policy(witnesses: Vec<Witness>, k: usize) -> Result<WitnessPolicy, Error> {
    witnesses
        .into_iter()
        .fold(WitnessPolicy::builder(), |b, w| b.witness(w))
        .threshold(NonZeroUsize::new(k).unwrap())
        .build()
}

fn arche() -> Vec<u8> {
    common::read("witness/arche2025h1-cosigned.checkpoint")
}

#[test]
fn real_cosigned_checkpoint_verifies_with_the_witness_key() {
    let remora = Witness::from_vkey(REMORA).unwrap();
    assert_eq!(remora.key_id(), [0xda, 0x77, 0xad, 0xe7]);
    let policy = policy(vec![remora], 1).unwrap();
    let cosigs = policy.verify(&arche(), ARCHE).unwrap();
    assert_eq!(cosigs.len(), 1);
    assert_eq!(cosigs[0].witness, "remora.n621.de");
    assert_eq!(cosigs[0].timestamp, 1_779_573_024);
}

#[test]
fn a_changed_checkpoint_or_another_origin_does_not_count() {
    let policy = policy(vec![Witness::from_vkey(REMORA).unwrap()], 1).unwrap();
    let text = String::from_utf8(arche()).unwrap();
    // The tree size changed: the cosignature no longer verifies.
    let changed = text.replace("\n1432088532\n", "\n1432088533\n");
    assert!(matches!(
        policy.verify(changed.as_bytes(), ARCHE),
        Err(Error::WitnessQuorum { ref failed, .. }) if failed == &["remora.n621.de"]
    ));
    // The same line grafted onto another log's checkpoint: origin checked first,
    // and over that body the signature is worthless anyway.
    let (_, sigs) = text.split_once("\n\n").unwrap();
    let other = format!(
        "example.com/other-log\n1432088532\nU7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n\n{sigs}"
    );
    assert!(matches!(
        policy.verify(other.as_bytes(), "example.com/other-log"),
        Err(Error::WitnessQuorum { .. })
    ));
    // Asking for the wrong origin is refused outright.
    assert!(matches!(
        policy.verify(&arche(), "example.com/other-log"),
        Err(Error::BadTreeHead { .. })
    ));
}

#[test]
fn vector_made_with_pyca_cryptography() {
    // See tests/data/witness/README.md: an independent Ed25519 implementation.
    let w = Witness::from_vkey(
        "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
    )
    .unwrap();
    let note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
                \u{2014} witness.example/w1 519lMgAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUIoS83rE1nFZsVE8YiWV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ==\n";
    let cosigs = policy(vec![w], 1)
        .unwrap()
        .verify(note.as_bytes(), "example.com/behind-the-sofa")
        .unwrap();
    assert_eq!(cosigs[0].timestamp, 1_679_315_147);
}

struct RingWitness {
    name: String,
    pair: Ed25519KeyPair,
}

impl RingWitness {
    fn new(name: &str, seed: u8) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        Self {
            name: name.into(),
            pair,
        }
    }
    fn public(&self) -> Witness {
        let key: [u8; 32] = self.pair.public_key().as_ref().try_into().unwrap();
        Witness::new(&self.name, key).unwrap()
    }
    /// A signature line following c2sp.org/tlog-cosignature, built here from the
    /// spec: key id `SHA-256(name || "\n" || 0x04 || key)[:4]`, then the time and
    /// the signature over `cosignature/v1\ntime <t>\n` and the note body.
    fn line(&self, body: &str, time: u64) -> String {
        let mut id_input = format!("{}\n\x04", self.name).into_bytes();
        id_input.extend_from_slice(self.pair.public_key().as_ref());
        let mut raw = ring::digest::digest(&ring::digest::SHA256, &id_input).as_ref()[..4].to_vec();
        raw.extend(time.to_be_bytes());
        let message = format!("cosignature/v1\ntime {time}\n{body}");
        raw.extend(self.pair.sign(message.as_bytes()).as_ref());
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(raw))
    }
}

const BODY: &str = "example.com/log\n42\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

fn note(lines: &[String]) -> Vec<u8> {
    format!("{BODY}\n{}", lines.concat()).into_bytes()
}

#[test]
fn k_of_n_policy_with_ring_cosignatures() {
    let [a, b, c] = [
        RingWitness::new("w.example/a", 1),
        RingWitness::new("w.example/b", 2),
        RingWitness::new("w.example/c", 3),
    ];
    let policy = policy(vec![a.public(), b.public(), c.public()], 2).unwrap();
    let stranger = RingWitness::new("w.example/stranger", 9);
    // Two of three, with an unknown key's line in between: accepted.
    let two = note(&[a.line(BODY, 10), stranger.line(BODY, 10), c.line(BODY, 11)]);
    let got = policy.verify(&two, "example.com/log").unwrap();
    let names: Vec<_> = got.iter().map(|c| c.witness.as_str()).collect();
    assert_eq!(names, ["w.example/a", "w.example/c"]);
    // One witness twice is still one witness.
    let twice = note(&[a.line(BODY, 10), a.line(BODY, 12)]);
    assert!(matches!(
        policy.verify(&twice, "example.com/log"),
        Err(Error::WitnessQuorum { required: 2, ref verified, .. }) if verified == &["w.example/a"]
    ));
    // A configured witness's line that does not verify does not count.
    let other_body = "example.com/log\n43\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let forged = note(&[a.line(BODY, 10), b.line(other_body, 10)]);
    assert!(matches!(
        policy.verify(&forged, "example.com/log"),
        Err(Error::WitnessQuorum { ref failed, .. }) if failed == &["w.example/b"]
    ));
    // A timestamp above 2^63 - 1 is refused by the spec.
    let late = note(&[a.line(BODY, 10), b.line(BODY, 1 << 63)]);
    assert!(policy.verify(&late, "example.com/log").is_err());
    // Extension lines are covered by a cosignature.
    let ext_body = format!("{BODY}extension\n");
    let ok = format!(
        "{ext_body}\n{}{}",
        a.line(&ext_body, 1),
        b.line(&ext_body, 1)
    );
    assert!(policy.verify(ok.as_bytes(), "example.com/log").is_ok());
    let changed = ok.replacen("extension", "extensioN", 1);
    assert!(
        policy
            .verify(changed.as_bytes(), "example.com/log")
            .is_err()
    );
}

#[test]
fn bad_policies_and_keys_are_refused() {
    let a = RingWitness::new("w.example/a", 1).public();
    let b = RingWitness::new("w.example/b", 2).public();
    // A threshold of 0 is unrepresentable (NonZeroUsize); one above n, a witness
    // listed twice and no witness at all are refused by build().
    assert!(matches!(
        policy(vec![a.clone()], 2),
        Err(Error::InvalidConfig {
            field: "threshold",
            ..
        })
    ));
    assert!(matches!(
        policy(vec![a.clone(), a.clone()], 1),
        Err(Error::InvalidConfig {
            field: "witnesses",
            ..
        })
    ));
    assert!(matches!(
        WitnessPolicy::builder().build(),
        Err(Error::InvalidConfig {
            field: "witnesses",
            ..
        })
    ));
    // Without a threshold every witness must cosign.
    let all = WitnessPolicy::builder()
        .witness(a.clone())
        .witness(b)
        .build()
        .unwrap();
    assert_eq!(all.threshold(), 2);
    // A witness named like the log would be confused with the log's own lines.
    let log_named = RingWitness::new("example.com/log", 5);
    let policy = policy(vec![log_named.public()], 1).unwrap();
    let n = note(&[log_named.line(BODY, 1)]);
    assert!(matches!(
        policy.verify(&n, "example.com/log"),
        Err(Error::InvalidConfig {
            field: "witnesses",
            ..
        })
    ));
    for bad in [
        "no-plus",
        "name+00000000+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f", // plain Ed25519 (0x01)
        "remora.n621.de+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2", // wrong id
        "remora.n621.de+da77ade7+BOvN63jn",
        "remora.n621.de+da77ade7+!!!",
    ] {
        assert!(
            matches!(Witness::from_vkey(bad), Err(Error::BadWitnessKey(_))),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_refuses_to_advance_without_the_witness_quorum() {
    let log = TestLog::start(Protocol::StaticCt, 300).await.unwrap();
    let w = RingWitness::new("w.example/a", 1);
    let mut cfg: LogConfig = log.log_config();
    cfg.witnesses = Some(policy(vec![w.public()], 1).unwrap());
    let store = Arc::new(MemoryStateStore::default());
    let mut m = Monitor::builder()
        .log(cfg)
        .state_store(store.clone())
        .poll_interval(Duration::from_millis(20))
        .spawn()
        .unwrap();
    let failing = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = m.next_event().await {
            if let Event::Health {
                health: Health::Failing { error },
                ..
            } = e
            {
                return error;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert!(failing.contains("witness cosignatures"), "{failing}");
    assert!(
        palisade_ct_monitor::StateStore::load(&*store, log.key().log_id())
            .unwrap()
            .is_none(),
        "no progress may be saved"
    );
    // An RFC 6962 log cannot carry cosignatures: refused at spawn.
    let rfc = TestLog::start(Protocol::Rfc6962, 10).await.unwrap();
    let mut cfg = rfc.log_config();
    cfg.witnesses = Some(policy(vec![w.public()], 1).unwrap());
    assert!(matches!(
        Monitor::builder().log(cfg).spawn(),
        Err(Error::InvalidConfig {
            field: "logs.witnesses",
            ..
        })
    ));
    // Nor can a witness named like the log: refused at spawn, before any poll.
    let mut cfg = log.log_config();
    let log_named = RingWitness::new(&log.origin(), 7).public();
    cfg.witnesses = Some(policy(vec![log_named], 1).unwrap());
    assert!(matches!(
        Monitor::builder().log(cfg).spawn(),
        Err(Error::InvalidConfig {
            field: "logs.witnesses",
            ..
        })
    ));
}

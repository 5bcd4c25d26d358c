//! ct-monitor: entries parsed and matched per second on the real Navigli2025h2
//! tiles with 1,000 watch items, Merkle root recomputation, proof verification and
//! tree-head signatures. Anchors in the same run: bare x509-parser parsing (the
//! floor for extraction), linear matching (what the index replaces), the naive
//! recursive Merkle root, and raw SHA-256 / ring verification of the same inputs.
//!
//! SCT verification of a real certificate (two embedded ECDSA SCTs, Chrome's log
//! list) and the Chrome / Apple CT policy checks, beside two plain ring ECDSA
//! verifications of the same signed data (the floor).
//!
//! Run: cargo bench -p palisade-benches --bench ct_monitor
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_ct_monitor::{
    Authorizer, CertificateInfo, CompactRange, CtPolicy, Hash, LogKey, LogList, SctVerifier,
    SignedEntry, SignedEntryData, SignedTreeHead, Verdict, WatchItem, Watchlist, check_entry,
    check_tile_leaf, embedded_scts, leaf_hash, node_hash, parse_data_tile, spki_hash,
    tbs_without_ct_extensions, verify_consistency, verify_inclusion,
};
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use x509_parser::prelude::{FromDer, TbsCertificate};

fn data(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/ct-monitor/tests/data")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn tiles() -> Vec<Vec<u8>> {
    ["000", "001", "002", "003"]
        .iter()
        .map(|n| data(&format!("static-ct/navigli2025h2/tile/data/{n}")))
        .collect()
}

/// The leaf hashes of the tiles' entries, in order.
fn leaf_hashes(tiles: &[Vec<u8>]) -> Vec<Hash> {
    tiles
        .iter()
        .flat_map(|t| {
            parse_data_tile(t)
                .unwrap()
                .iter()
                .map(|l| l.leaf_hash())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// 1,000 items: 990 synthetic names (half exact, half with subdomains) and 10 real
/// names from the tiles, so about 1% of entries alert.
fn watchlist(tiles: &[Vec<u8>]) -> Watchlist {
    let mut items: Vec<WatchItem> = (0..990)
        .map(|i| {
            let d = format!("svc{i}.brand{}.example", i % 97);
            if i % 2 == 0 {
                WatchItem::Domain(d)
            } else {
                WatchItem::DomainAndSubdomains(d)
            }
        })
        .collect();
    let leaves = parse_data_tile(&tiles[0]).unwrap();
    for leaf in leaves.iter().step_by(25).take(10) {
        let name = CertificateInfo::from_entry(&leaf.entry)
            .unwrap()
            .identifiers
            .dns_names[0]
            .clone();
        items.push(WatchItem::DomainAndSubdomains(
            name.trim_start_matches("*.").to_string(),
        ));
    }
    assert_eq!(items.len(), 1000);
    Watchlist::new(items)
}

fn entries(c: &mut Criterion) {
    let tiles = tiles();
    let list = watchlist(&tiles);
    let auth = Authorizer::new();
    let n: u64 = tiles
        .iter()
        .map(|t| parse_data_tile(t).unwrap().len() as u64)
        .sum();
    let mut g = c.benchmark_group("ct_entries_1000_watch_items");
    g.throughput(Throughput::Elements(n));
    g.bench_function("palisade_parse_tile_extract_match_indexed", |b| {
        b.iter(|| {
            let mut alerts = 0;
            for (k, t) in tiles.iter().enumerate() {
                for (i, leaf) in parse_data_tile(t).unwrap().iter().enumerate() {
                    let index = (k * 256 + i) as u64;
                    if check_entry(&leaf.entry, index, &list, &auth).is_alert() {
                        alerts += 1;
                    }
                }
            }
            black_box(alerts)
        })
    });
    g.bench_function("palisade_tile_leaf_with_precert_check_indexed", |b| {
        b.iter(|| {
            let mut alerts = 0;
            for (k, t) in tiles.iter().enumerate() {
                for (i, leaf) in parse_data_tile(t).unwrap().iter().enumerate() {
                    let index = (k * 256 + i) as u64;
                    if check_tile_leaf(leaf, index, &list, &auth).is_alert() {
                        alerts += 1;
                    }
                }
            }
            black_box(alerts)
        })
    });
    g.bench_function("palisade_extract_then_linear_match", |b| {
        b.iter(|| {
            let mut alerts = 0;
            for t in &tiles {
                for leaf in parse_data_tile(t).unwrap() {
                    let info = CertificateInfo::from_entry(&leaf.entry).unwrap();
                    alerts += usize::from(!list.matches_linear(&info.identifiers).is_empty());
                }
            }
            black_box(alerts)
        })
    });
    g.bench_function("anchor_x509_parser_tbs_parse_only", |b| {
        b.iter(|| {
            let mut ok = 0;
            for t in &tiles {
                for leaf in parse_data_tile(t).unwrap() {
                    if let SignedEntry::Precert {
                        tbs_certificate, ..
                    } = leaf.entry.entry
                    {
                        ok += usize::from(TbsCertificate::from_der(tbs_certificate).is_ok());
                    }
                }
            }
            black_box(ok)
        })
    });
    g.finish();
    // Sanity outside the timing: the indexed and linear paths agree on these entries.
    let mut alerts = 0;
    for (k, t) in tiles.iter().enumerate() {
        for (i, leaf) in parse_data_tile(t).unwrap().iter().enumerate() {
            let v = check_entry(&leaf.entry, (k * 256 + i) as u64, &list, &auth);
            let info = CertificateInfo::from_entry(&leaf.entry).unwrap();
            assert_eq!(
                v.is_alert(),
                !list.matches_linear(&info.identifiers).is_empty()
            );
            alerts += usize::from(matches!(v, Verdict::Unauthorized { .. }));
        }
    }
    assert!(alerts >= 10, "{alerts}");
}

fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => CompactRange::new().root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - (n - 1).leading_zeros() - 1);
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

fn merkle_roots(c: &mut Criterion) {
    let tiles = tiles();
    let leaves = leaf_hashes(&tiles);
    let mut g = c.benchmark_group("ct_merkle_root_1024_leaves");
    g.throughput(Throughput::Elements(leaves.len() as u64));
    g.bench_function("palisade_compact_range_append_and_root", |b| {
        b.iter(|| {
            let mut r = CompactRange::new();
            for l in &leaves {
                r.append(*l);
            }
            black_box(r.root())
        })
    });
    g.bench_function("anchor_naive_recursive_root", |b| {
        b.iter(|| black_box(naive_root(black_box(&leaves))))
    });
    g.bench_function("palisade_leaf_hashes_from_data_tiles", |b| {
        b.iter(|| {
            let mut r = CompactRange::new();
            for t in &tiles {
                for l in parse_data_tile(t).unwrap() {
                    r.append(l.leaf_hash());
                }
            }
            black_box(r.root())
        })
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    // A tree of 2^20 + 12345 leaves would take a while to build; proofs only need the
    // path, so build a perfect-tree proof shape from distinct hashes and derive the root.
    let size: u64 = 1 << 20;
    let index: u64 = 123_457;
    let leaf = leaf_hash(b"leaf");
    let proof: Vec<Hash> = (0..20u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut root = leaf;
    for (lvl, p) in proof.iter().enumerate() {
        root = if (index >> lvl) & 1 == 1 {
            node_hash(p, &root)
        } else {
            node_hash(&root, p)
        };
    }
    verify_inclusion(index, size, &leaf, &proof, &root).unwrap();
    // Consistency 1000 -> 1024 over the real leaves, proof from a naive subproof.
    let leaves = leaf_hashes(&tiles());
    let (r1, r2) = (naive_root(&leaves[..1000]), naive_root(&leaves));
    let cproof = consistency_proof(1000, &leaves);
    verify_consistency(1000, 1024, &r1, &r2, &cproof).unwrap();
    let mut g = c.benchmark_group("ct_proofs");
    g.bench_function("palisade_verify_inclusion_2^20", |b| {
        b.iter(|| verify_inclusion(black_box(index), size, &leaf, &proof, &root).is_ok())
    });
    g.bench_function("anchor_20_node_hashes", |b| {
        b.iter(|| {
            let mut r = leaf;
            for p in &proof {
                r = node_hash(black_box(p), &r);
            }
            black_box(r)
        })
    });
    g.bench_function("palisade_verify_consistency_1000_to_1024", |b| {
        b.iter(|| verify_consistency(black_box(1000), 1024, &r1, &r2, &cproof).is_ok())
    });
    g.finish();

    let mut g = c.benchmark_group("ct_tree_head_signatures");
    for (name, file) in [("ecdsa_p256", "google-pilot"), ("rsa_2048", "venafi-rsa")] {
        let f: serde_json::Value =
            serde_json::from_slice(&data(&format!("sth/{file}.json"))).unwrap();
        let key = LogKey::from_pem(f["public_key_pem"].as_str().unwrap()).unwrap();
        let sth = SignedTreeHead::from_json(f["sth"].to_string().as_bytes()).unwrap();
        g.bench_function(format!("palisade_sth_verify_{name}"), |b| {
            b.iter(|| sth.verify(&key).is_ok())
        });
    }
    g.finish();
}

fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn sub(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![naive_root(d)] };
        }
        let k = 1usize << (usize::BITS - (n - 1).leading_zeros() - 1);
        if m <= k {
            let mut p = sub(m, &d[..k], b);
            p.push(naive_root(&d[k..]));
            p
        } else {
            let mut p = sub(m - k, &d[k..], false);
            p.push(naive_root(&d[..k]));
            p
        }
    }
    sub(m, leaves, true)
}

fn pem_cert(rel: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(&data(rel)).unwrap();
    pem.contents
}

/// Median over 101 rounds of (time of 50 calls of `ours`) / (time of 50 of `floor`),
/// the two run back to back in alternating order.
fn paired_ratio<A: Fn() -> R, B: Fn(), R>(ours: &A, floor: &B) -> f64 {
    use std::time::Instant;
    let mut ratios: Vec<f64> = (0..101)
        .map(|round| {
            let time = |f: &dyn Fn()| {
                let t = Instant::now();
                for _ in 0..50 {
                    f();
                }
                t.elapsed().as_secs_f64()
            };
            let run_ours = || {
                let _ = ours();
            };
            let (o, f) = if round % 2 == 0 {
                let o = time(&run_ours);
                (o, time(floor))
            } else {
                let f = time(floor);
                (time(&run_ours), f)
            };
            o / f
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[50]
}

fn scts(c: &mut Criterion) {
    let leaf = pem_cert("sct/cloudflare.pem");
    let issuer = pem_cert("sct/google-we1.pem");
    let list = LogList::from_json(&data("loglist/log_list.json")).unwrap();
    let verifier = SctVerifier::new(&list);
    let report = verifier.verify(&leaf, &issuer, &[]).unwrap();
    assert_eq!(report.scts.len(), 2);
    assert!(report.policy(CtPolicy::Chrome).compliant && report.policy(CtPolicy::Apple).compliant);
    // The floor: the same two signed messages and keys, straight into ring.
    let (_, cert) = x509_parser::prelude::X509Certificate::from_der(&leaf).unwrap();
    let tbs = tbs_without_ct_extensions(cert.tbs_certificate.as_ref()).unwrap();
    let ikh = spki_hash(&issuer).unwrap();
    let entry = SignedEntryData::Precert {
        issuer_key_hash: &ikh,
        tbs_certificate: &tbs,
    };
    let floor: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = embedded_scts(&leaf)
        .unwrap()
        .iter()
        .map(|sct| {
            let log = list
                .logs
                .iter()
                .find(|l| l.key.log_id() == &sct.log_id)
                .unwrap();
            let (_, spki) =
                x509_parser::x509::SubjectPublicKeyInfo::from_der(log.key.spki_der()).unwrap();
            (
                spki.subject_public_key.data.to_vec(),
                sct.signed_data(&entry),
                sct.signature.signature.clone(),
            )
        })
        .collect();
    let ours = || black_box(verifier.verify(black_box(&leaf), &issuer, &[]).unwrap());
    let ours_policies = || {
        let r = verifier.verify(black_box(&leaf), &issuer, &[]).unwrap();
        black_box(r.policy(CtPolicy::Chrome).compliant && r.policy(CtPolicy::Apple).compliant)
    };
    let ring_floor = || {
        for (key, msg, sig) in &floor {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
                .verify(black_box(msg), sig)
                .unwrap();
        }
    };
    // On a shared machine sequential criterion runs drift; alternating short
    // batches of ours and the floor gives a ratio that load hits equally.
    if std::env::args().any(|a| a.contains("ct_sct")) {
        let a = paired_ratio(&ours, &ring_floor);
        let b = paired_ratio(&ours_policies, &ring_floor);
        println!("ct_sct_2_ecdsa paired (median of 101 alternating batches of 50):");
        println!("  verify / ring floor            {a:.3}");
        println!("  verify + policies / ring floor {b:.3}");
    }
    let mut g = c.benchmark_group("ct_sct_2_ecdsa");
    g.throughput(Throughput::Elements(1));
    g.bench_function("palisade_sct_verify", |b| {
        b.iter(|| black_box(verifier.verify(black_box(&leaf), &issuer, &[]).unwrap()))
    });
    g.bench_function("palisade_sct_verify_and_policies", |b| {
        b.iter(|| {
            let r = verifier.verify(black_box(&leaf), &issuer, &[]).unwrap();
            black_box(r.policy(CtPolicy::Chrome).compliant && r.policy(CtPolicy::Apple).compliant)
        })
    });
    g.bench_function("palisade_policies_only", |b| {
        b.iter(|| {
            black_box(
                report.policy(CtPolicy::Chrome).compliant
                    && report.policy(CtPolicy::Apple).compliant,
            )
        })
    });
    g.bench_function("ring_ecdsa_verify_same_data", |b| {
        b.iter(|| {
            for (key, msg, sig) in &floor {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
                    .verify(black_box(msg), sig)
                    .unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, entries, merkle_roots, proofs, scts);
criterion_main!(benches);

//! palisade-device-fp per-request costs, each next to its anchor in the same run:
//! JA4 from a rustls ClientHello vs one SHA-256 of the same bytes (ring); the
//! uap-core User-Agent parse vs woothee's over the same real UAs (uap-core's
//! test_ua.yaml); inputs + keyed fingerprint of a Chrome request; matching; a store
//! sighting. Prints the UA parser's one-time build cost and heap, and memory per
//! stored device, first (counting allocator).
//!
//! cargo bench -p palisade-benches --bench device_fp
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use cap::Cap;
use criterion::Criterion;
use palisade_core_traits::{
    ClientDeviceInfo, LoginOutcome, ManualClock, RequestContext, Timestamp, TlsInfo,
};
use palisade_device_fp::{
    DeviceFingerprint, DeviceStore, FingerprintInputs, FingerprintKey, InMemoryDeviceStore, Ja4,
    TrustPolicy, UserAgent,
};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// The distinct User-Agents of uap-core's test corpus (copied in device-fp's tests).
fn corpus() -> Vec<String> {
    let yaml = include_str!("../crates/device-fp/tests/data/uap-core/test_ua.yaml");
    let mut uas: Vec<String> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- user_agent_string:"))
        .map(|v| {
            let v = v.trim();
            match v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                Some(s) => s.replace("''", "'"),
                None => v.trim_matches('"').to_owned(),
            }
        })
        .collect();
    uas.sort();
    uas.dedup();
    uas
}

/// One-time cost of the shared uap-core parser: wall time and heap it keeps, after
/// the build and after a first pass over the corpus (the regex engines fill caches).
fn parser_build_cost(uas: &[String]) {
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let before = ALLOCATOR.allocated();
    let start = Instant::now();
    UserAgent::warm_up();
    let took = start.elapsed();
    let built = ALLOCATOR.allocated() - before;
    let parsed = uas.iter().filter_map(|u| UserAgent::parse(u)).count();
    println!(
        "UA parser (uap-core regexes): built in {:.0} ms, {:.1} MiB heap after build, {:.1} MiB after parsing {parsed} UAs once",
        took.as_secs_f64() * 1e3,
        mib(built),
        mib(ALLOCATOR.allocated() - before)
    );
}

fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("example.com").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

fn request(i: u32) -> RequestContext {
    let mut device = ClientDeviceInfo::default();
    device.screen = Some((1920, 1080 + i % 7));
    device.timezone = Some("Europe/Berlin".into());
    device.webgl_renderer = Some(format!("ANGLE (Intel, Mesa Intel(R) UHD {i})"));
    RequestContext::new(
        "192.0.2.1".parse().unwrap(),
        Timestamp::from_unix_secs(1_700_000_000),
    )
    .with_header("Host", "example.com")
    .with_header(
        "sec-ch-ua",
        "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"",
    )
    .with_header("sec-ch-ua-mobile", "?0")
    .with_header("sec-ch-ua-platform", "\"Windows\"")
    .with_header("User-Agent", UA)
    .with_header("Accept", "text/html,application/xhtml+xml")
    .with_header("Accept-Language", "de-DE,de;q=0.9,en;q=0.8")
    .with_header("Accept-Encoding", "gzip, deflate, br, zstd")
    .with_tls(TlsInfo::with_ja4("t13d1516h2_8daaf6152771_e5627efa2ab1"))
    .with_device(device)
}

/// A store of 8 devices per user on a clock that stands still.
fn store() -> InMemoryDeviceStore {
    InMemoryDeviceStore::builder()
        .max_devices_per_user(std::num::NonZeroUsize::new(8).unwrap())
        .policy(TrustPolicy::default())
        .clock(Arc::new(ManualClock::new(Timestamp::from_unix_secs(
            1_700_000_000,
        ))))
        .build()
        .unwrap()
}

fn memory_per_device(key: &FingerprintKey) {
    let users = 10_000u32;
    let per_user = 3u32;
    let fps: Vec<DeviceFingerprint> = (0..per_user)
        .map(|i| DeviceFingerprint::compute(key, &FingerprintInputs::from_request(&request(i))))
        .collect();
    let before = ALLOCATOR.allocated();
    let store = store();
    for u in 0..users {
        let user = format!("user-{u:08}");
        for fp in &fps {
            store.observe(&user, fp, Some(LoginOutcome::Success), &[]);
        }
    }
    let used = ALLOCATOR.allocated() - before;
    let n = u64::from(users * per_user);
    println!(
        "memory: {users} users x {per_user} devices: {:.0} B per stored device (incl. per-user map entry), DeviceRecord = {} B",
        used as f64 / n as f64,
        std::mem::size_of::<palisade_device_fp::DeviceRecord>()
    );
    drop(store);
}

fn main() {
    let uas = corpus();
    parser_build_cost(&uas);
    let key = FingerprintKey::new(&[9u8; 32]).unwrap();
    memory_per_device(&key);
    let mut c = Criterion::default().configure_from_args();

    let hello = client_hello();
    let mut g = c.benchmark_group("ja4");
    g.bench_function("palisade_ja4_from_client_hello", |b| {
        b.iter(|| Ja4::from_client_hello(black_box(&hello)).unwrap())
    });
    g.bench_function("anchor_ring_sha256_of_hello", |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(&hello)))
    });
    g.finish();

    println!("UA parse groups: one iteration parses {} UAs", uas.len());
    let mut g = c.benchmark_group("ua_parse_corpus");
    g.bench_function("palisade_uap_core_parse", |b| {
        b.iter(|| {
            uas.iter()
                .filter_map(|u| UserAgent::parse_uncached(black_box(u)))
                .count()
        })
    });
    g.bench_function("anchor_woothee_parse", |b| {
        let parser = woothee::parser::Parser::new();
        b.iter(|| {
            uas.iter()
                .filter_map(|u| parser.parse(black_box(u)))
                .count()
        })
    });
    g.finish();

    let ctx = request(0);
    let stored = DeviceFingerprint::compute(&key, &FingerprintInputs::from_request(&request(1)));
    let mut g = c.benchmark_group("fingerprint");
    g.bench_function("palisade_inputs_and_fingerprint", |b| {
        b.iter(|| {
            DeviceFingerprint::compute(&key, &FingerprintInputs::from_request(black_box(&ctx)))
        })
    });
    g.bench_function("palisade_inputs_fingerprint_and_match", |b| {
        b.iter(|| {
            let fp =
                DeviceFingerprint::compute(&key, &FingerprintInputs::from_request(black_box(&ctx)));
            stored.matches(&fp)
        })
    });
    g.bench_function("palisade_ua_parse_only", |b| {
        b.iter(|| UserAgent::parse_uncached(black_box(UA)))
    });
    g.bench_function("palisade_ua_parse_cached", |b| {
        b.iter(|| UserAgent::parse(black_box(UA)))
    });
    g.bench_function("anchor_woothee_parse_only", |b| {
        b.iter(|| {
            woothee::parser::Parser::new()
                .parse(black_box(UA))
                .map(|r| r.version.len())
        })
    });
    let fp = DeviceFingerprint::compute(&key, &FingerprintInputs::from_request(&ctx));
    g.bench_function("palisade_match_only", |b| {
        b.iter(|| stored.matches(black_box(&fp)))
    });
    let store = store();
    for i in 0..5 {
        let f = DeviceFingerprint::compute(&key, &FingerprintInputs::from_request(&request(i)));
        store.observe("alice", &f, Some(LoginOutcome::Success), &[]);
    }
    g.bench_function("palisade_store_observe_5_devices", |b| {
        b.iter(|| store.observe("alice", black_box(&fp), None, &[]))
    });
    g.finish();
    c.final_summary();
}

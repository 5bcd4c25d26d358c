//! The tower layer and the axum extractor, through `tower::ServiceExt::oneshot` on an
//! axum `Router`: for every case the status, the `WWW-Authenticate` challenge (RFC
//! 6750 §3) and the body, and that no refusal carries the token, a claim value or a
//! key id.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "axum")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use axum::{Extension, Router};
use common::*;
use palisade_core_traits::AuthenticatedSubject;
use palisade_jwt_cache::{
    Algorithm, Claims, Error, ErrorClass, JwtAuth, KeySet, ValidatedToken, Validator,
};
use serde_json::json;
use tower::ServiceExt;

#[derive(Clone, Debug, serde::Deserialize)]
struct User {
    sub: String,
}

/// Claims the test tokens do not have (`tenant` is required here).
#[derive(Clone, Debug, serde::Deserialize)]
struct Tenant {
    #[allow(dead_code)]
    tenant: String,
}

struct Setup {
    clock: palisade_core_traits::ManualClock,
    revocation: Arc<TestRevocation>,
    validator: Arc<Validator>,
}

fn setup() -> Setup {
    let clock = clock();
    let revocation = Arc::new(TestRevocation::default());
    let validator = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(keyset())
        .cache(cache())
        .clock(Arc::new(clock.clone()))
        .revocation(revocation.clone())
        .build()
        .unwrap();
    Setup {
        clock,
        revocation,
        validator: Arc::new(validator),
    }
}

fn auth(v: &Arc<Validator>) -> palisade_jwt_cache::JwtAuthBuilder {
    JwtAuth::builder().validator(v.clone()).realm("api")
}

/// `/me` answers the subject through `Claims<User>`, `/tenant` needs `Claims<Tenant>`,
/// `/admin` requires scope `admin`, `/raw` reads the token the layer stored.
fn app(auth: JwtAuth) -> Router {
    let admin = auth.with_scopes(&["admin"]).unwrap();
    Router::new()
        .route("/me", get(|Claims(u): Claims<User>| async move { u.sub }))
        .route("/tenant", get(|Claims(_): Claims<Tenant>| async { "ok" }))
        .route(
            "/raw",
            get(
                |Extension(t): Extension<Arc<ValidatedToken>>| async move { t.key_id().to_owned() },
            ),
        )
        .route(
            "/subject",
            get(|s: Option<Extension<AuthenticatedSubject>>| async move {
                s.map_or_else(|| "none".to_owned(), |Extension(s)| s.0)
            }),
        )
        .route(
            "/echo",
            post(
                |Claims(u): Claims<User>, body: String| async move { format!("{} {body}", u.sub) },
            ),
        )
        .merge(
            Router::new()
                .route(
                    "/admin",
                    get(|Claims(u): Claims<User>| async move { u.sub }),
                )
                .route_layer(admin),
        )
        .layer(auth)
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    headers: String,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let headers = format!("{:?}", response.headers());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        challenge,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn get_with(path: &str, authorization: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(a) = authorization {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.body(Body::empty()).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A refusal names nothing from the request: no token part, claim value or kid.
fn assert_no_leak(a: &Answer, token: &str) {
    let text = format!("{} {} {:?}", a.headers, a.body, a.challenge);
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!text.contains(part), "a refusal leaks a token part: {text}");
    }
    for secret in ["alice", "j1", "ec-1", "rsa-1", ISS, "tenant"] {
        assert!(!text.contains(secret), "a refusal leaks {secret}: {text}");
    }
}

fn challenge(code: Option<&str>) -> Option<String> {
    Some(match code {
        None => r#"Bearer realm="api""#.to_owned(),
        Some(c) => format!(r#"Bearer realm="api", error="{c}""#),
    })
}

#[tokio::test]
async fn every_case_answers_with_the_right_status_challenge_and_body() {
    let s = setup();
    let app = app(auth(&s.validator).build().unwrap());
    let token = sign(Algorithm::ES256, &claims("alice", "j1", NOW + 300));

    // Allowed: the handler sees the typed claims; no challenge.
    let a = send(&app, get_with("/me", Some(&bearer(&token)))).await;
    assert_eq!(
        (a.status, a.body.as_str(), a.challenge),
        (StatusCode::OK, "alice", None)
    );
    // Case-insensitive scheme; the layer's token is in the extensions.
    let a = send(&app, get_with("/raw", Some(&format!("bEARER {token}")))).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ec-1"));

    // No credentials, or another scheme: 401 and a challenge without `error`.
    for authorization in [None, Some("Basic YWxpY2U6cHc=")] {
        let a = send(&app, get_with("/me", authorization)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.challenge, challenge(None));
        assert_eq!(a.body, "authentication required");
    }

    // Malformed: 400 invalid_request. A TAB after the scheme is a malformed bearer
    // request (RFC 7235 §2.1 wants 1*SP), not another scheme's 401.
    for authorization in [
        "Bearer".to_owned(),
        format!("Bearer {token} {token}"),
        format!("Bearer {token}!"),
        format!("Bearer \"{token}\""),
        format!("Bearer\t{token}"),
        format!("bearer\t{token}"),
    ] {
        let a = send(&app, get_with("/me", Some(&authorization))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{authorization}");
        assert_eq!(a.challenge, challenge(Some("invalid_request")));
        assert_eq!(a.body, "invalid_request");
        assert_no_leak(&a, &token);
    }
    let two = Request::get("/me")
        .header(header::AUTHORIZATION, bearer(&token))
        .header(header::AUTHORIZATION, bearer(&token))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, two).await.status, StatusCode::BAD_REQUEST);

    // Token problems: 401 invalid_token, whatever the reason.
    let mut wrong_aud = claims("alice", "j1", NOW + 300);
    wrong_aud["aud"] = json!("other-api");
    let mut unknown_kid = jsonwebtoken::Header::new(Algorithm::ES256);
    unknown_kid.kid = Some("rsa-9".into());
    let tampered = {
        let (msg, sig) = token.rsplit_once('.').unwrap();
        let (h, _) = msg.split_once('.').unwrap();
        let body = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims("mallory", "j1", NOW + 300)).unwrap(),
        );
        format!("{h}.{body}.{sig}")
    };
    for (what, bad) in [
        (
            "expired",
            sign(Algorithm::ES256, &claims("alice", "j1", NOW - 1)),
        ),
        ("wrong audience", sign(Algorithm::ES256, &wrong_aud)),
        (
            "unknown kid",
            jsonwebtoken::encode(
                &unknown_kid,
                &claims("alice", "j1", NOW + 300),
                &encoding_key(Algorithm::ES256),
            )
            .unwrap(),
        ),
        ("bad signature", tampered),
        ("not a JWT", "abc.def.ghi".to_owned()),
    ] {
        let a = send(&app, get_with("/me", Some(&bearer(&bad)))).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(a.challenge, challenge(Some("invalid_token")), "{what}");
        assert_eq!(a.body, "invalid_token", "{what}");
        assert_no_leak(&a, &bad);
    }

    // Valid, but the claims do not fit the handler's type: 401, not 500.
    let a = send(&app, get_with("/tenant", Some(&bearer(&token)))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenge, challenge(Some("invalid_token")));
    assert_no_leak(&a, &token);

    // Valid, without the route's scope: 403 insufficient_scope naming the scope.
    let a = send(&app, get_with("/admin", Some(&bearer(&token)))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.challenge.as_deref(),
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="admin""#)
    );
    assert_eq!(a.body, "insufficient_scope");
    assert_no_leak(&a, &token);
    let mut admin = claims("alice", "j5", NOW + 300);
    admin["scope"] = json!("read admin");
    let admin = sign(Algorithm::ES256, &admin);
    let a = send(&app, get_with("/admin", Some(&bearer(&admin)))).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "alice"));

    // Revoked: refused on the very next request, although the token is cached.
    assert_eq!(
        send(&app, get_with("/me", Some(&bearer(&token))))
            .await
            .status,
        StatusCode::OK
    );
    s.revocation.revoke(ISS, "j1");
    let a = send(&app, get_with("/me", Some(&bearer(&token)))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenge, challenge(Some("invalid_token")));
    assert_no_leak(&a, &token);

    // The revocation check cannot answer: refused (fail closed) as 503, no challenge
    // (the token may be fine), Retry-After.
    s.revocation.no_local_answer.store(true, Ordering::SeqCst);
    let a = send(&app, get_with("/me", Some(&bearer(&admin)))).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.challenge, None);
    assert!(a.headers.contains("retry-after"), "{}", a.headers);
    assert_eq!(a.body, "service unavailable");
    s.revocation.no_local_answer.store(false, Ordering::SeqCst);

    // Expiry while cached: refused at exp.
    s.clock.advance(Duration::from_secs(300));
    let a = send(&app, get_with("/admin", Some(&bearer(&admin)))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Everything the layer refused is counted by kind in the validator's stats.
    let st = s.validator.stats();
    for (kind, n) in [
        ("missing_token", 2),
        ("invalid_request", 7),
        ("expired", 2),
        ("wrong_audience", 1),
        ("unknown_kid", 1),
        ("bad_signature", 1),
        ("claims_type", 1),
        ("insufficient_scope", 1),
        ("revoked", 1),
        ("revocation_unknown", 1),
    ] {
        assert_eq!(st.rejected(kind), n, "{kind}: {st:?}");
    }
}

#[tokio::test]
async fn a_key_that_cannot_work_is_a_500_and_never_the_clients_fault() {
    let clock = clock();
    // No keys at all (e.g. the JWKS was never loaded): no token can be accepted,
    // which is the operator's problem. (An unknown kid, with keys, is the token's.)
    let v = Arc::new(
        Validator::builder()
            .policy(policy().build().unwrap())
            .keys(KeySet::new())
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    );
    let app = app(auth(&v).build().unwrap());
    let token = sign(Algorithm::RS256, &claims("alice", "j1", NOW + 300));
    let a = send(&app, get_with("/me", Some(&bearer(&token)))).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.challenge, None);
    assert_eq!(a.body, "internal server error");
    assert_no_leak(&a, &token);
    assert_eq!(v.stats().rejected("no_keys"), 1);

    // Claims<T> on a route with neither the layer nor a JwtAuth extension: 500.
    let bare = Router::new().route("/me", get(|Claims(u): Claims<User>| async move { u.sub }));
    let a = send(&bare, get_with("/me", Some(&bearer(&token)))).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.challenge, None);
}

#[tokio::test]
async fn claims_work_without_the_layer_through_an_extension() {
    let s = setup();
    let auth = auth(&s.validator)
        .require_scopes(&["read"])
        .build()
        .unwrap();
    let app = Router::new()
        .route("/me", get(|Claims(u): Claims<User>| async move { u.sub }))
        .route("/open", get(|| async { "no token needed" }))
        .layer(Extension(auth));
    let mut c = claims("alice", "j1", NOW + 300);
    c["scope"] = json!("read");
    let token = sign(Algorithm::EdDSA, &c);
    let a = send(&app, get_with("/me", Some(&bearer(&token)))).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "alice"));
    let a = send(&app, get_with("/open", None)).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(&app, get_with("/me", None)).await;
    assert_eq!(
        (a.status, a.challenge),
        (StatusCode::UNAUTHORIZED, challenge(None))
    );
    let unscoped = sign(Algorithm::EdDSA, &claims("alice", "j2", NOW + 300));
    let a = send(&app, get_with("/me", Some(&bearer(&unscoped)))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.challenge.as_deref(),
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="read""#)
    );
}

#[tokio::test]
async fn typed_claims_from_the_layer_and_their_refusal() {
    let s = setup();
    let typed = auth(&s.validator).claims::<User>().build().unwrap();
    let app = Router::new()
        .route(
            "/me",
            get(|Extension(Claims(u)): Extension<Claims<User>>| async move { u.sub }),
        )
        .layer(typed);
    let token = sign(Algorithm::HS256, &claims("alice", "j1", NOW + 300));
    let a = send(&app, get_with("/me", Some(&bearer(&token)))).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "alice"));
    let tenant = auth(&s.validator).claims::<Tenant>().build().unwrap();
    let app = Router::new()
        .route("/t", get(|| async { "unreachable" }))
        .layer(tenant);
    let a = send(&app, get_with("/t", Some(&bearer(&token)))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenge, challenge(Some("invalid_token")));
}

#[tokio::test]
async fn a_cache_miss_and_a_hit_answer_alike_and_a_revocation_ends_the_hits() {
    let s = setup();
    let with_query = app(auth(&s.validator).allow_query(true).build().unwrap());
    let token = sign(Algorithm::ES256, &claims("alice", "j-hit", NOW + 300));
    let query = format!("/me?access_token={token}");
    // The first request waits for a validation (a miss); the next ones are decided
    // from the cache without waiting: the same answer, headers included.
    for round in 1..=3 {
        let a = send(&with_query, get_with(&query, None)).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "alice"));
        assert!(
            a.headers.contains(r#""cache-control": "private""#),
            "{}",
            a.headers
        );
        let stats = s.validator.stats();
        assert_eq!((stats.misses, stats.hits), (1, round - 1), "{stats:?}");
    }
    // Header only (the default): a held token is answered from the cache before its
    // syntax is scanned (it passed that scan when first validated); a token the cache
    // does not hold is scanned first.
    let header_only = app(auth(&s.validator).build().unwrap());
    let a = send(&header_only, get_with("/me", Some(&bearer(&token)))).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "alice"));
    assert_eq!(s.validator.stats().hits, 3);
    let a = send(
        &header_only,
        get_with("/me", Some(&bearer(&format!("{token}!")))),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.challenge, challenge(Some("invalid_request")));
    assert_eq!(s.validator.stats().misses, 1);
    // Miss or hit, the subject is there for the layers behind (a per-subject limit).
    let other = sign(Algorithm::ES256, &claims("bob", "j-sub", NOW + 300));
    let misses = s.validator.stats().misses;
    for (app, request, subject) in [
        (
            &with_query,
            get_with(&format!("/subject?access_token={other}"), None),
            "bob",
        ),
        (
            &header_only,
            get_with("/subject", Some(&bearer(&other))),
            "bob",
        ),
        (
            &header_only,
            get_with("/subject", Some(&bearer(&token))),
            "alice",
        ),
        (&header_only, get_with("/subject", None), ""),
    ] {
        let a = send(app, request).await;
        if subject.is_empty() {
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "no token reaches no handler"
            );
        } else {
            assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, subject));
        }
    }
    assert_eq!(
        s.validator.stats().misses,
        misses + 1,
        "bob's second was a hit"
    );
    s.revocation.revoke(ISS, "j-hit");
    let a = send(&header_only, get_with("/me", Some(&bearer(&token)))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenge, challenge(Some("invalid_token")));
    let a = send(&with_query, get_with(&query, None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.challenge, challenge(Some("invalid_token")));
}

#[tokio::test]
async fn the_query_and_form_methods_only_when_enabled_and_never_two_at_once() {
    let s = setup();
    let token = sign(Algorithm::ES256, &claims("alice", "j1", NOW + 300));
    let query = format!("/me?x=1&access_token={token}");

    // Default: header only; a query token is no credential at all.
    let header_only = app(auth(&s.validator).build().unwrap());
    let a = send(&header_only, get_with(&query, None)).await;
    assert_eq!(
        (a.status, a.challenge),
        (StatusCode::UNAUTHORIZED, challenge(None))
    );
    let form = || {
        Request::post("/echo")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("a=1&access_token={token}")))
            .unwrap()
    };
    assert_eq!(
        send(&header_only, form()).await.status,
        StatusCode::UNAUTHORIZED
    );

    let all = app(auth(&s.validator)
        .allow_query(true)
        .allow_form_body(true)
        .build()
        .unwrap());
    // Query: accepted, and the response must not be cached shared (RFC 6750 §2.3).
    let a = send(&all, get_with(&query, None)).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "alice"));
    assert!(
        a.headers.contains(r#""cache-control": "private""#),
        "{}",
        a.headers
    );
    // Form body: accepted, and the handler still reads the whole body.
    let a = send(&all, form()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, format!("alice a=1&access_token={token}"));
    // Never with GET.
    let get_form = Request::get("/me")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("access_token={token}")))
        .unwrap();
    assert_eq!(send(&all, get_form).await.status, StatusCode::UNAUTHORIZED);
    // Two methods, or two tokens in one: invalid_request. A malformed header beside a
    // query token is refused too, not skipped over for the query's token.
    for request in [
        get_with(&query, Some(&bearer(&token))),
        get_with(&query, Some(&format!("Bearer\t{token}"))),
        get_with(&format!("{query}&access_token={token}"), None),
        {
            let mut r = form();
            r.headers_mut()
                .insert(header::AUTHORIZATION, bearer(&token).parse().unwrap());
            r
        },
        {
            let mut r = form();
            *r.uri_mut() = format!("/echo?access_token={token}").parse().unwrap();
            r
        },
    ] {
        let a = send(&all, request).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.challenge, challenge(Some("invalid_request")));
    }
    // A form body over the bound is refused, not buffered without limit.
    let small = app(auth(&s.validator)
        .allow_form_body(true)
        .max_form_bytes(nz(64))
        .build()
        .unwrap());
    assert_eq!(send(&small, form()).await.status, StatusCode::BAD_REQUEST);
}

#[test]
fn bad_settings_are_refused_at_build_naming_the_field() {
    let s = setup();
    let field = |r: Result<JwtAuth, Error>| match r {
        Err(e @ Error::InvalidConfig { .. }) => {
            assert_eq!(e.class(), ErrorClass::Configuration);
            match e {
                Error::InvalidConfig { field, .. } => field,
                _ => unreachable!(),
            }
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(field(JwtAuth::builder().build()), "validator");
    assert_eq!(field(auth(&s.validator).realm("a\r\nb").build()), "realm");
    assert_eq!(
        field(auth(&s.validator).require_scopes(&["a b"]).build()),
        "scopes"
    );
    let ok = auth(&s.validator).build().unwrap();
    assert!(matches!(
        ok.with_scopes(&["x\"y"]),
        Err(Error::InvalidConfig {
            field: "scopes",
            ..
        })
    ));
}

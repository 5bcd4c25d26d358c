//! Entry points of the cargo-fuzz targets in `fuzz/`, one function per target, also
//! replayed on stable by `tests/fuzz_corpus.rs`. Not part of the API: behind the
//! `fuzzing` feature and hidden from the docs.

use std::net::IpAddr;

use crate::{
    ForwardedHeader, IpNetwork, RequestContext, SecurityEvent, TrustedProxies, canonical_ip,
};

/// Target `security_event_json`: untrusted JSON into a [`SecurityEvent`]. Never panics;
/// whatever is accepted survives a round trip through [`SecurityEvent::to_json`] exactly.
pub fn security_event_json(data: &[u8]) {
    if let Ok(event) = SecurityEvent::from_json(data) {
        let json = event.to_json();
        let back = SecurityEvent::from_json(json.as_bytes());
        assert_eq!(back.ok().as_ref(), Some(&event), "round trip of {json}");
    }
}

/// Target `request_context_json`: untrusted JSON into a [`RequestContext`]. Never
/// panics; whatever is accepted has a canonical peer address and survives a round trip
/// through its JSON exactly.
pub fn request_context_json(data: &[u8]) {
    if let Ok(ctx) = RequestContext::from_json(data) {
        assert_eq!(ctx.peer_ip, canonical_ip(ctx.peer_ip), "peer not canonical");
        let json = serde_json::to_vec(&ctx).unwrap_or_default();
        let back = RequestContext::from_json(&json);
        assert_eq!(back.ok().as_ref(), Some(&ctx), "round trip");
        let _ = (ctx.user_agent(), ctx.header("x-forwarded-for"));
    }
}

/// Target `client_ip`: the bytes are header lines (`name: value`, the first line the
/// peer address; values any bytes, as HTTP allows); every configuration must answer
/// without panicking, with the peer or an address from the headers, in canonical form.
pub fn client_ip(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let peer = (lines.next())
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::from([10, 0, 0, 1]));
    let headers: Vec<(&str, &[u8])> = lines
        .filter_map(|l| {
            let colon = l.iter().position(|b| *b == b':')?;
            Some((std::str::from_utf8(&l[..colon]).ok()?, &l[colon + 1..]))
        })
        .collect();
    let nets = ["10.0.0.0/8", "fd00::/8"].map(|n| n.parse::<IpNetwork>());
    let nets: Vec<IpNetwork> = nets.into_iter().flatten().collect();
    for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        for proxies in [
            TrustedProxies::networks(nets.iter().copied()),
            TrustedProxies::hops(2),
            TrustedProxies::none(),
        ] {
            let got = proxies
                .header(header)
                .client_ip(peer, headers.iter().copied());
            assert_eq!(got, canonical_ip(got), "client address not canonical");
        }
    }
    for (_, value) in &headers {
        if let Ok(value) = std::str::from_utf8(value) {
            let _ = value.trim().parse::<IpNetwork>();
        }
    }
}

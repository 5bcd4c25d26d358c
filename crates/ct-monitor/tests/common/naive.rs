//! Naive RFC 6962 §2.1 reference implementation, written independently of the crate
//! (shared by the integration tests and, through `#[path]`, the unit tests).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use ring::digest::{SHA256, digest};

pub type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p);
    }
    digest(&SHA256, &v).as_ref().try_into().unwrap()
}

pub fn leaf(d: &[u8]) -> H {
    sha(&[&[0], d])
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]) over leaf hashes.
pub fn root(leaves: &[H]) -> H {
    match leaves.len() {
        0 => sha(&[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            sha(&[&[1], &root(&leaves[..k]), &root(&leaves[k..])])
        }
    }
}

/// PATH(m, D[n]).
pub fn path(m: usize, leaves: &[H]) -> Vec<H> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(root(&leaves[..k]));
        p
    }
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true).
pub fn proof(m: usize, leaves: &[H]) -> Vec<H> {
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[H], b: bool) -> Vec<H> {
    let n = leaves.len();
    if m == n {
        return if b { vec![] } else { vec![root(leaves)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(root(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(root(&leaves[..k]));
        p
    }
}

//! RFC 9162 Merkle tree hashing, proof verification and the compact range.
//!
//! Hashes are always 32 bytes (`[u8; 32]`): a SHA-256 tree never has another
//! size, and accepting slices of any length is how a verifier ends up accepting
//! an empty leaf hash against an empty root (see `docs/ct-monitor.md`).

use ring::digest::{Context, SHA256, digest};

use crate::error::{Error, ProofFailure};

/// A SHA-256 Merkle tree hash.
pub type Hash = [u8; 32];

/// Root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub(crate) const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

fn to_hash(d: ring::digest::Digest) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> Hash {
    to_hash(digest(&SHA256, data))
}

/// Leaf hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    to_hash(ctx.finish())
}

/// Interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    sha256(&buf)
}

/// Number of hashes in an inclusion proof for `index` in a tree of `size`.
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // inner is 64 when the trees differ in the top bit; a plain shift would overflow.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
///
/// Fails with [`Error::InclusionProof`] when `index >= size`, when the proof has
/// the wrong length, or when the recomputed root differs from `root`.
///
/// `size` must be the tree size of a verified tree head (the one `root` comes
/// from), never a size the log or the proof's sender supplies on its own: an
/// inclusion path does not bind the tree size, so the same path can verify against
/// the same root under another `size`. [`crate::LogVerifier::check_inclusion`] takes
/// both from its trusted head.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    let fail = Error::InclusionProof;
    if index >= size {
        return Err(fail(ProofFailure::IndexOutOfRange { index, size }));
    }
    let expected = inclusion_len(index, size);
    if proof.len() != expected {
        return Err(fail(ProofFailure::WrongLength {
            expected,
            got: proof.len(),
        }));
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if snode == 0 {
            return Err(fail(ProofFailure::WrongLength {
                expected,
                got: proof.len(),
            }));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(fail(ProofFailure::WrongLength {
            expected,
            got: proof.len(),
        }));
    }
    if r != *root {
        return Err(fail(ProofFailure::RootMismatch));
    }
    Ok(())
}

/// Number of hashes in a consistency proof between `size1 < size2` (`size1 > 0`).
fn consistency_len(size1: u64, size2: u64) -> usize {
    let level = size1.trailing_zeros();
    let index = (size1 - 1) >> level;
    let size = ((size2 - 1) >> level) + 1;
    let len = inclusion_len(index, size);
    // A proof from a perfect subtree omits its root (the verifier already has it).
    if index == 0 { len } else { len + 1 }
}

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
///
/// Policy beyond the RFC, matching the transparency-dev reference: a proof from
/// size 0 is always refused (nothing is learned from it and accepting it would
/// let a log "prove" anything about the empty tree), and equal sizes need an
/// empty proof and equal roots.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    let fail = Error::ConsistencyProof;
    if size1 == 0 {
        return Err(fail(ProofFailure::FromEmptyTree));
    }
    if size1 > size2 {
        return Err(fail(ProofFailure::SizesReversed { size1, size2 }));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(fail(ProofFailure::WrongLength {
                expected: 0,
                got: proof.len(),
            }));
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(fail(ProofFailure::RootMismatch))
        };
    }
    let expected = consistency_len(size1, size2);
    if proof.len() != expected {
        return Err(fail(ProofFailure::WrongLength {
            expected,
            got: proof.len(),
        }));
    }
    // When size1 is a power of two the old root is the first node of the path.
    let (first, rest) = if size1.is_power_of_two() {
        (*root1, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (first, first);
    for c in rest {
        if snode == 0 {
            return Err(fail(ProofFailure::WrongLength {
                expected,
                got: proof.len(),
            }));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(fail(ProofFailure::WrongLength {
            expected,
            got: proof.len(),
        }));
    }
    if fr != *root1 || sr != *root2 {
        return Err(fail(ProofFailure::RootMismatch));
    }
    Ok(())
}

/// The O(log n) state of an append-only Merkle tree: the roots of its perfect
/// subtrees, largest first (one per set bit of the size).
///
/// Appending a leaf costs amortised O(1) hashes; [`CompactRange::root`] costs
/// O(log n). A monitor keeps one per log and compares its root with every tree
/// head it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// The range of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a range from stored parts; `hashes` must hold one hash per set
    /// bit of `size`, largest subtree first. Sizes above 2^62 are refused so that
    /// appending can never overflow.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, Error> {
        if size > 1 << 62 {
            return Err(Error::malformed(
                "CompactRange",
                0,
                format!("size {size} is beyond 2^62"),
            ));
        }
        if hashes.len() != size.count_ones() as usize {
            return Err(Error::malformed(
                "CompactRange",
                0,
                format!(
                    "size {size} needs {} hashes, got {}",
                    size.count_ones(),
                    hashes.len()
                ),
            ));
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf by its leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            // Invariant: one stored hash per set bit, so pop cannot fail here.
            let Some(left) = self.hashes.pop() else { break };
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// Root hash of the tree of [`CompactRange::size`] leaves.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return EMPTY_ROOT;
        };
        it.fold(*last, |acc, h| node_hash(h, &acc))
    }
}

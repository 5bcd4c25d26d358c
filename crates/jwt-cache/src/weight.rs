//! What a cache entry really holds, in bytes: the cache's byte bound is only as good
//! as this count.
//!
//! Every heap allocation an entry owns is counted at its capacity plus
//! [`ALLOC_OVERHEAD`] (what a general-purpose allocator adds per block: glibc's 8-byte
//! header and 16-byte rounding). A decoded JSON value can be far larger than its text
//! (`[{"a":0},…]` spends 7 bytes of JSON on a 600-byte map node), so the claims are
//! walked, not estimated from the payload length. Maps are bounded from above for
//! both layouts serde_json can be built with (`BTreeMap`, or `IndexMap` when anything
//! in the build enables its `preserve_order` feature).

use std::collections::BTreeMap;
use std::mem::size_of;

use serde_json::{Map, Number, Value};

/// Bytes an allocator spends beside each block we ask for (header and rounding).
pub(crate) const ALLOC_OVERHEAD: u64 = 16;

/// Entries of one `BTreeMap` node (std's `CAPACITY`, `2 * B - 1` with `B = 6`).
const BTREE_NODE_ENTRIES: u64 = 11;
/// Entries every `BTreeMap` node but the root holds at least (`B - 1`).
const BTREE_MIN_ENTRIES: u64 = 5;

/// Whether serde_json's `Map` is an `IndexMap` (`preserve_order`) in this build.
const INDEX_MAP: bool = size_of::<Map<String, Value>>() != size_of::<BTreeMap<String, Value>>();
/// Whether `Number` holds its text in a `String` (`arbitrary_precision`).
const NUMBER_TEXT: bool = size_of::<Number>() > 16;

/// A heap block of `bytes` (none for zero).
pub(crate) fn block(bytes: usize) -> u64 {
    if bytes == 0 {
        0
    } else {
        bytes as u64 + ALLOC_OVERHEAD
    }
}

/// Heap bytes `v` owns (not counting the `Value` itself, which lives in its parent).
pub(crate) fn value(v: &Value) -> u64 {
    match v {
        Value::Null | Value::Bool(_) => 0,
        Value::Number(n) if NUMBER_TEXT => block(n.to_string().len()),
        Value::Number(_) => 0,
        Value::String(s) => block(s.capacity()),
        Value::Array(items) => {
            block(items.capacity() * size_of::<Value>()) + items.iter().map(value).sum::<u64>()
        }
        Value::Object(map) => object(map),
    }
}

/// Heap bytes a claims map owns: its nodes or tables, and every key and value.
pub(crate) fn object(map: &Map<String, Value>) -> u64 {
    let n = map.len() as u64;
    let contents: u64 = map
        .iter()
        .map(|(k, v)| block(k.capacity()) + value(v))
        .sum();
    if n == 0 {
        return contents;
    }
    let pair = (size_of::<String>() + size_of::<Value>()) as u64;
    let structure = if INDEX_MAP {
        // A Vec of (hash, key, value) buckets and a table of indices, each grown by
        // doubling (at most twice what is used; the table at 7/8 load).
        let entries = 2 * n * (8 + pair);
        let buckets = (2 * n * 8).div_ceil(7).max(4);
        (entries + ALLOC_OVERHEAD) + (buckets * 9 + 16 + ALLOC_OVERHEAD)
    } else {
        // One leaf up to 11 entries; beyond, every node but the root holds at least 5,
        // and no node is larger than an internal one (a leaf plus 12 edges).
        let internal = 16 + BTREE_NODE_ENTRIES * pair + (BTREE_NODE_ENTRIES + 1) * 8;
        let nodes = if n <= BTREE_NODE_ENTRIES {
            1
        } else {
            1 + (n - 1) / BTREE_MIN_ENTRIES
        };
        nodes * (internal + ALLOC_OVERHEAD)
    };
    structure + contents
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_values_and_strings() {
        assert_eq!(value(&json!(null)), 0);
        assert_eq!(value(&json!(12)), if NUMBER_TEXT { 2 + 16 } else { 0 });
        let s = Value::String(String::with_capacity(40));
        assert_eq!(value(&s), 40 + 16);
    }

    #[test]
    fn arrays_count_their_capacity_and_children() {
        let mut items = Vec::with_capacity(8);
        items.push(Value::String("abc".to_owned()));
        let v = Value::Array(items);
        assert_eq!(value(&v), (8 * size_of::<Value>() as u64 + 16) + (3 + 16));
    }

    #[test]
    fn maps_are_never_cheaper_than_their_contents_and_grow_with_entries() {
        let one = json!({"a": 1});
        let many: Map<String, Value> = (0..100).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(value(&one) > (size_of::<String>() + size_of::<Value>()) as u64 + 2 * 16);
        assert!(object(&many) >= 100 * (size_of::<String>() + size_of::<Value>()) as u64);
    }
}

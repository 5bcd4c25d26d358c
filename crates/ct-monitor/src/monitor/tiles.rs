//! Merkle tiles fetched to rebuild a consistency proof or a compact range
//! (static-ct-api logs).

use crate::client::StaticCtClient;
use crate::entry::TILE_WIDTH;
use crate::error::Error;
use crate::merkle::{EMPTY_ROOT, Hash, node_hash};
use crate::responses::{perfect_subtrees, tile_path};

/// Merkle tiles fetched while building one proof or compact range.
#[derive(Default)]
pub(super) struct TileCache(std::collections::HashMap<(u8, u64), Vec<Hash>>);

impl TileCache {
    /// The hash of the perfect subtree at `level`, `index` in a tree of `tree_size`.
    pub(super) async fn node(
        &mut self,
        c: &mut StaticCtClient,
        level: u8,
        index: u64,
        tree_size: u64,
    ) -> Result<Hash, Error> {
        let (tile_level, sub) = (level / 8, level % 8);
        let first = index << sub;
        let count = 1usize << sub;
        let tile = first / TILE_WIDTH as u64;
        let offset = (first % TILE_WIDTH as u64) as usize;
        let available = (tree_size >> (8 * u32::from(tile_level))) - tile * TILE_WIDTH as u64;
        let width = available.min(TILE_WIDTH as u64) as usize;
        let hashes = match self.0.entry((tile_level, tile)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(c.hash_tile(tile_level, tile, width).await?)
            }
        };
        let Some(nodes) = hashes.get(offset..offset + count) else {
            return Err(c.tile_error(
                &tile_path(Some(tile_level), tile, width),
                format!("no nodes {offset}..{}", offset + count),
            ));
        };
        let mut nodes = nodes.to_vec();
        while nodes.len() > 1 {
            nodes = nodes
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
        }
        Ok(nodes[0])
    }

    /// The Merkle root of leaves `[start, end)`.
    pub(super) async fn range_root(
        &mut self,
        c: &mut StaticCtClient,
        start: u64,
        end: u64,
        tree_size: u64,
    ) -> Result<Hash, Error> {
        let mut roots = Vec::new();
        for (level, index) in perfect_subtrees(start, end) {
            roots.push(self.node(c, level, index, tree_size).await?);
        }
        let mut it = roots.into_iter().rev();
        let last = it.next().unwrap_or(EMPTY_ROOT);
        Ok(it.fold(last, |acc, h| node_hash(&h, &acc)))
    }
}

//! Streaming Half-Space Trees (Tan, Ting and Liu, IJCAI 2011), following River's
//! `anomaly.HalfSpaceTrees` (defaults: 10 trees, height 8, window 250, features in
//! [0, 1]), with an online min–max scaler in front as in River's published pipeline.
//!
//! Each tree splits a random feature at a random point of the middle 70 % of the
//! node's range. Nodes count the points of the current window (`l_mass`); at the end
//! of each window that count becomes the reference mass (`r_mass`). A point's score is
//! `1 − Σ_trees Σ_depth r_mass · 2^depth / max`, walking down until a node's reference
//! mass drops below 10 % of the window: points in sparse regions score near 1.

use serde::{Deserialize, Serialize};

/// Half-Space Trees parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HstConfig {
    /// Number of trees.
    pub trees: usize,
    /// Tree height (a leaf is at depth `height`).
    pub height: u32,
    /// Points per window.
    pub window: u32,
    /// RNG seed for the random splits.
    pub seed: u64,
}

impl Default for HstConfig {
    fn default() -> Self {
        HstConfig {
            trees: 10,
            height: 8,
            window: 250,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Node {
    feature: usize,
    threshold: f64,
    l_mass: u32,
    r_mass: u32,
}

/// A complete binary tree in an array: children of `i` are `2i+1` and `2i+2`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tree {
    nodes: Vec<Node>,
}

/// Online min–max scaling to [0, 1] (constant features map to 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MinMax {
    min: Vec<f64>,
    max: Vec<f64>,
}

impl MinMax {
    fn learn(&mut self, x: &[f64]) {
        // `min` and `max` have one length (`is_consistent` refuses a state where not).
        if self.min.len() < x.len() {
            self.min.resize(x.len(), f64::INFINITY);
            self.max.resize(x.len(), f64::NEG_INFINITY);
        }
        for (i, &v) in x.iter().enumerate() {
            if v.is_finite() {
                self.min[i] = self.min[i].min(v);
                self.max[i] = self.max[i].max(v);
            }
        }
    }

    fn scale(&self, i: usize, v: f64) -> f64 {
        let (lo, hi) = (
            self.min.get(i).copied().unwrap_or(0.0),
            self.max.get(i).copied().unwrap_or(0.0),
        );
        if !v.is_finite() || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            return 0.0;
        }
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    }
}

/// Streaming Half-Space Trees with a min–max scaler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HalfSpaceTrees {
    config: HstConfig,
    features: usize,
    trees: Vec<Tree>,
    scaler: MinMax,
    counter: u32,
    first_window: bool,
}

/// xorshift64* step: our own small deterministic RNG.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn unit(state: &mut u64) -> f64 {
    (next(state) >> 11) as f64 / (1u64 << 53) as f64
}

impl HalfSpaceTrees {
    /// A detector over `features` numeric features.
    pub fn new(features: usize, config: HstConfig) -> Self {
        let features = features.max(1);
        let height = config.height.clamp(1, 20);
        let mut rng = config.seed ^ 0x9E37_79B9_7F4A_7C15;
        if rng == 0 {
            rng = 1;
        }
        let trees = (0..config.trees.max(1))
            .map(|_| {
                let n = (1usize << (height + 1)) - 1;
                let mut nodes = Vec::with_capacity(n);
                // Node i's range per feature, rebuilt from the root (breadth-first order).
                let mut limits: Vec<Vec<(f64, f64)>> = vec![vec![(0.0, 1.0); features]];
                for i in 0..n {
                    let lim = limits[i].clone();
                    let feature = (next(&mut rng) % features as u64) as usize;
                    let (a, b) = lim[feature];
                    let threshold = a + (b - a) * (0.15 + 0.7 * unit(&mut rng));
                    nodes.push(Node {
                        feature,
                        threshold,
                        l_mass: 0,
                        r_mass: 0,
                    });
                    let mut left = lim.clone();
                    left[feature].1 = threshold;
                    let mut right = lim;
                    right[feature].0 = threshold;
                    limits.push(left);
                    limits.push(right);
                }
                Tree { nodes }
            })
            .collect();
        HalfSpaceTrees {
            config: HstConfig { height, ..config },
            features,
            trees,
            scaler: MinMax::default(),
            counter: 0,
            first_window: true,
        }
    }

    fn path(&self, tree: &Tree, x: &[f64], mut visit: impl FnMut(usize, usize) -> bool) {
        let mut i = 0;
        for depth in 0..=self.config.height as usize {
            if !visit(i, depth) || depth == self.config.height as usize {
                return;
            }
            let n = &tree.nodes[i];
            let v = self
                .scaler
                .scale(n.feature, x.get(n.feature).copied().unwrap_or(0.0));
            i = if v < n.threshold {
                2 * i + 1
            } else {
                2 * i + 2
            };
        }
    }

    /// The number of features it was built for.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Whether a deserialized detector has the shape its configuration promises (every
    /// tree complete for its height, its features and the scaler's within the feature
    /// count, finite split points), so learning and scoring cannot index out of bounds.
    pub fn is_consistent(&self) -> bool {
        let h = self.config.height;
        (1..=20).contains(&h)
            && self.config.window >= 1
            && !self.trees.is_empty()
            && self.scaler.min.len() == self.scaler.max.len()
            && self.scaler.min.len() <= self.features
            && self.trees.iter().all(|t| {
                t.nodes.len() == (1usize << (h + 1)) - 1
                    && t.nodes
                        .iter()
                        .all(|n| n.feature < self.features && n.threshold.is_finite())
            })
    }

    /// Anomaly score in [0, 1] (higher = more anomalous); 0 during the first window.
    pub fn score(&self, x: &[f64]) -> f64 {
        if self.first_window {
            return 0.0;
        }
        let size_limit = f64::from(self.config.window) * 0.1;
        let mut s = 0.0;
        for t in &self.trees {
            self.path(t, x, |i, depth| {
                let m = f64::from(t.nodes[i].r_mass);
                s += m * (1u64 << depth) as f64;
                m >= size_limit
            });
        }
        let max = self.trees.len() as f64
            * f64::from(self.config.window)
            * ((1u64 << (self.config.height + 1)) - 1) as f64;
        (1.0 - s / max).clamp(0.0, 1.0)
    }

    /// Learns one point (extra features beyond the configured count are ignored).
    pub fn learn(&mut self, x: &[f64]) {
        self.scaler.learn(&x[..x.len().min(self.features)]);
        let mut trees = std::mem::take(&mut self.trees);
        for t in &mut trees {
            let mut visited = Vec::with_capacity(self.config.height as usize + 1);
            self.path(t, x, |i, _| {
                visited.push(i);
                true
            });
            for i in visited {
                t.nodes[i].l_mass += 1;
            }
        }
        self.trees = trees;
        self.counter += 1;
        if self.counter >= self.config.window.max(1) {
            for t in &mut self.trees {
                for n in &mut t.nodes {
                    n.r_mass = n.l_mass;
                    n.l_mass = 0;
                }
            }
            self.first_window = false;
            self.counter = 0;
        }
    }
}

/// Exact ROC AUC of `(score, is_anomaly)` pairs (ties count one half); `None` when one
/// class is absent. River's `RollingROCAUC` is this over its last `window` pairs.
#[cfg(feature = "eval")]
pub fn roc_auc(pairs: &[(f64, bool)]) -> Option<f64> {
    let mut v: Vec<(f64, bool)> = pairs.iter().filter(|p| !p.0.is_nan()).copied().collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = v.iter().filter(|p| p.1).count() as f64;
    let neg = v.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Mann–Whitney U with mid-ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let mid = (i + j + 1) as f64 / 2.0;
        rank_sum += mid * v[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "eval")]
    fn auc_by_hand() {
        assert_eq!(roc_auc(&[(0.1, false), (0.9, true)]), Some(1.0));
        assert_eq!(roc_auc(&[(0.9, false), (0.1, true)]), Some(0.0));
        assert_eq!(roc_auc(&[(0.5, false), (0.5, true)]), Some(0.5));
        // Positives 0.8, 0.4; negatives 0.6, 0.2: 3 of 4 pairs ordered.
        assert_eq!(
            roc_auc(&[(0.8, true), (0.4, true), (0.6, false), (0.2, false)]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[(0.5, true)]), None);
    }

    #[test]
    fn outlier_scores_higher_than_cluster() {
        let mut h = HalfSpaceTrees::new(2, HstConfig::default());
        let mut s = 7u64;
        // Fix the scaler's range first, then a dense cluster.
        h.learn(&[0.0, 0.0]);
        h.learn(&[1.0, 1.0]);
        for _ in 0..1_000 {
            let x = [0.5 + 0.05 * unit(&mut s), 0.5 + 0.05 * unit(&mut s)];
            h.learn(&x);
        }
        assert!(h.score(&[1.0, 0.0]) > h.score(&[0.52, 0.52]) + 0.2);
        assert!(h.score(&[f64::NAN, f64::INFINITY]).is_finite());
    }
}

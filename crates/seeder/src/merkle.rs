//! BEP 52 hash requests answered from a file's piece layer.
//!
//! The tree above the piece layer is padded to a power of two with the hash of an all-zero
//! piece (a subtree whose 16 KiB leaves are all 32 zero bytes); each layer above hashes two
//! children. [`PieceTree`] keeps every layer above the piece layer (about as many hashes as the
//! piece layer itself) so one request costs only the hashes it returns; a [`TreeCache`] shares
//! one tree between all connections of the same file while any of them holds it.
//!
//! Request semantics, as libtorrent implements them: `base layer` counts up from the 16 KiB
//! leaves, so the piece layer is `log2(piece length / 16 KiB)`. `length` hashes from `index`
//! (a power of two, `index` a multiple of it) form a subtree of height `log2(length)`; the
//! answer is those hashes, then one uncle (sibling) hash for each height from `log2(length)` up
//! to `proof layers` above the base layer, lowest first. With `proof layers` = the tree height
//! above the base minus one, hashing up through the uncles gives the `pieces root`.

use seedbucket_torrent::BLOCK;
use seedbucket_wire::peer::HashRequest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest as _, Sha256};

/// Most hashes one request may ask for from the base layer (libtorrent's limit).
pub(crate) const MAX_HASHES: u32 = 8192;

fn hash_pair(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// The merkle tree of one file from its piece layer up to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PieceTree {
    /// The piece layer's index counted from the leaves: log2(piece length / 16 KiB).
    base_layer: u32,
    /// `layers[0]` is the piece layer; `layers[h]` the real (unpadded) nodes `h` layers above.
    layers: Vec<Vec<[u8; 32]>>,
    /// `pads[h]`: the value of a node `h` layers above the piece layer covering only padding.
    pads: Vec<[u8; 32]>,
}

impl PieceTree {
    /// The tree over `piece_layer` for pieces of `piece_length` bytes; `None` when the layer is
    /// empty or the piece length is not a power of two of at least 16 KiB.
    pub(crate) fn build(piece_layer: &[[u8; 32]], piece_length: u64) -> Option<Self> {
        let block = BLOCK as u64;
        if piece_layer.is_empty() || !piece_length.is_power_of_two() || piece_length < block {
            return None;
        }
        let base_layer = (piece_length / block).trailing_zeros();
        // The zero piece: `base_layer` levels of hashing above zero leaves.
        let mut pad = [0u8; 32];
        for _ in 0..base_layer {
            pad = hash_pair(&pad, &pad);
        }
        let height = piece_layer.len().next_power_of_two().trailing_zeros();
        let mut layers = vec![piece_layer.to_vec()];
        let mut pads = vec![pad];
        for _ in 0..height {
            let below = layers.last()?;
            let pad_below = *pads.last()?;
            let next: Vec<[u8; 32]> = below
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => hash_pair(a, b),
                    [a] => hash_pair(a, &pad_below),
                    _ => pad_below,
                })
                .collect();
            layers.push(next);
            pads.push(hash_pair(&pad_below, &pad_below));
        }
        Some(Self {
            base_layer,
            layers,
            pads,
        })
    }

    /// The pieces root this tree hashes to.
    pub(crate) fn root(&self) -> [u8; 32] {
        self.node(self.height(), 0).unwrap_or([0; 32])
    }

    /// Layers above the piece layer up to the root.
    fn height(&self) -> u32 {
        u32::try_from(self.layers.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Node `index` of the layer `h` above the piece layer, padding included; `None` past the
    /// padded width.
    fn node(&self, h: u32, index: u64) -> Option<[u8; 32]> {
        let hi = usize::try_from(h).ok()?;
        let width = 1u64 << (self.height() - h.min(self.height()));
        if h > self.height() || index >= width {
            return None;
        }
        let layer = self.layers.get(hi)?;
        Some(
            usize::try_from(index)
                .ok()
                .and_then(|i| layer.get(i))
                .copied()
                .unwrap_or(*self.pads.get(hi)?),
        )
    }

    /// The hashes (requested, then uncles) answering `req`, or `None` for a `hash reject`:
    /// wrong layer, a length that is not a power of two up to [`MAX_HASHES`], an unaligned
    /// index, a range past the padded layer, or more proof layers than the tree has.
    pub(crate) fn answer(&self, req: &HashRequest) -> Option<Vec<u8>> {
        if req.base_layer != self.base_layer
            || req.length == 0
            || req.length > MAX_HASHES
            || !req.length.is_power_of_two()
            || !req.index.is_multiple_of(req.length)
            || req.proof_layers >= self.height()
        {
            return None;
        }
        let index = u64::from(req.index);
        let end = index + u64::from(req.length);
        let width = 1u64 << self.height();
        if end > width {
            return None;
        }
        let span_height = req.length.trailing_zeros();
        let uncles = (req.proof_layers + 1).saturating_sub(span_height);
        let mut out = Vec::with_capacity(32 * (req.length as usize + uncles as usize));
        for i in index..end {
            out.extend_from_slice(&self.node(0, i)?);
        }
        for h in span_height..=req.proof_layers {
            out.extend_from_slice(&self.node(h, (index >> h) ^ 1)?);
        }
        Some(out)
    }
}

type TreeMap = HashMap<([u8; 32], u64), Weak<PieceTree>>;

/// The trees in use, by (pieces root, piece length); an entry lives as long as a connection
/// holds its tree.
#[derive(Debug, Default)]
pub(crate) struct TreeCache {
    trees: Mutex<TreeMap>,
}

impl TreeCache {
    /// The tree over `piece_layer`, shared if another connection built it already. `None` when
    /// no tree can be built or it does not hash to `pieces_root`.
    pub(crate) fn get(
        &self,
        pieces_root: [u8; 32],
        piece_layer: &[[u8; 32]],
        piece_length: u64,
    ) -> Option<Arc<PieceTree>> {
        let key = (pieces_root, piece_length);
        if let Some(tree) = self.lock().get(&key).and_then(Weak::upgrade) {
            return Some(tree);
        }
        // Built outside the lock: two connections may race to build the same tree, which only
        // costs the loser some hashing.
        let tree = Arc::new(PieceTree::build(piece_layer, piece_length)?);
        if tree.root() != pieces_root {
            return None;
        }
        let mut trees = self.lock();
        trees.retain(|_, t| t.strong_count() > 0);
        trees.insert(key, Arc::downgrade(&tree));
        Some(tree)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TreeMap> {
        match self.trees.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedbucket_torrent::{PieceHasher, merkle_root};

    /// Hashes `data` in pieces of `piece_length`: (piece layer, pieces root).
    fn hashes(data: &[u8], piece_length: u64) -> (Vec<[u8; 32]>, [u8; 32]) {
        let mut h = PieceHasher::new(piece_length, false, true);
        h.update(data);
        let done = h.finish();
        let layer = done
            .v2_layer
            .unwrap()
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap())
            .collect();
        (layer, done.v2_root.unwrap())
    }

    /// Hashes the answer back up to the node at height `proof_layers + 1`.
    fn verify(req: &HashRequest, answer: &[u8]) -> [u8; 32] {
        let hs: Vec<[u8; 32]> = answer
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap())
            .collect();
        let (base, uncles) = hs.split_at(req.length as usize);
        let mut level = base.to_vec();
        while level.len() > 1 {
            level = level.chunks(2).map(|p| hash_pair(&p[0], &p[1])).collect();
        }
        let mut node = level[0];
        let span = req.length.trailing_zeros();
        for (k, u) in uncles.iter().enumerate() {
            let h = span + k as u32;
            node = if (req.index >> h) & 1 == 0 {
                hash_pair(&node, u)
            } else {
                hash_pair(u, &node)
            };
        }
        node
    }

    #[test]
    fn root_matches_the_torrent_crate() {
        for (len, piece) in [
            (5 * 16384 + 7, 16384u64),
            (3 * 65536, 65536),
            (200_000, 32768),
            (9 * 65536 + 1, 65536),
            (2 * 16384, 16384),
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (layer, root) = hashes(&data, piece);
            let tree = PieceTree::build(&layer, piece).unwrap();
            assert_eq!(tree.root(), root, "{len} {piece}");
            // The leaves' own root agrees too.
            let mut leaves = Vec::new();
            for c in data.chunks(16384) {
                leaves.push(<[u8; 32]>::from(Sha256::digest(c)));
            }
            assert_eq!(merkle_root(&leaves, piece), root);
        }
    }

    #[test]
    fn every_aligned_request_proves_the_root() {
        let piece = 32768u64;
        let data: Vec<u8> = (0..(11 * piece as usize + 100))
            .map(|i| (i % 253) as u8)
            .collect();
        let (layer, root) = hashes(&data, piece);
        assert_eq!(layer.len(), 12);
        let tree = PieceTree::build(&layer, piece).unwrap();
        let height = 4; // 12 pieces pad to 16
        for span in 0..=height {
            let length = 1u32 << span;
            for index in (0..16u32).step_by(length as usize) {
                for proof_layers in 0..height {
                    let req = HashRequest {
                        pieces_root: root,
                        base_layer: 1,
                        index,
                        length,
                        proof_layers,
                    };
                    let Some(a) = tree.answer(&req) else {
                        panic!("rejected {req:?}");
                    };
                    let uncles = (proof_layers + 1).saturating_sub(span);
                    assert_eq!(a.len(), 32 * (length + uncles) as usize);
                    // The requested hashes are the layer's, then padding.
                    for (k, h) in a.chunks_exact(32).take(length as usize).enumerate() {
                        let i = index as usize + k;
                        let want = layer.get(i).copied().unwrap_or(tree.pads[0]);
                        assert_eq!(h, want);
                    }
                    if proof_layers == height - 1 {
                        assert_eq!(verify(&req, &a), root, "{req:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn rejects() {
        let piece = 16384u64;
        let data = vec![1u8; 5 * 16384];
        let (layer, root) = hashes(&data, piece);
        let tree = PieceTree::build(&layer, piece).unwrap();
        let ok = HashRequest {
            pieces_root: root,
            base_layer: 0,
            index: 0,
            length: 8,
            proof_layers: 2,
        };
        assert!(tree.answer(&ok).is_some());
        for bad in [
            HashRequest {
                base_layer: 1,
                ..ok
            },
            HashRequest { length: 0, ..ok },
            HashRequest { length: 3, ..ok },
            HashRequest { length: 16, ..ok },
            HashRequest { index: 4, ..ok },
            HashRequest {
                index: 2,
                length: 4,
                ..ok
            },
            HashRequest {
                index: 8,
                length: 1,
                ..ok
            },
            HashRequest {
                proof_layers: 3,
                ..ok
            },
            HashRequest {
                index: u32::MAX,
                length: 1,
                ..ok
            },
            HashRequest {
                length: 1 << 31,
                ..ok
            },
        ] {
            assert_eq!(tree.answer(&bad), None, "{bad:?}");
        }
        assert!(PieceTree::build(&[], piece).is_none());
        assert!(PieceTree::build(&layer, 1000).is_none());
        assert!(PieceTree::build(&layer, 8192).is_none());
    }

    #[test]
    fn cache_shares_while_held() {
        let data = vec![3u8; 7 * 16384];
        let (layer, root) = hashes(&data, 16384);
        let cache = TreeCache::default();
        let a = cache.get(root, &layer, 16384).unwrap();
        let b = cache.get(root, &layer, 16384).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // A layer that does not hash to the root is refused.
        assert!(cache.get([0; 32], &layer, 16384).is_none());
        drop((a, b));
        let other = hashes(&vec![4u8; 3 * 16384], 16384);
        let _c = cache.get(other.1, &other.0, 16384).unwrap();
        // The dead entry was pruned when the new one went in.
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn zero_piece_pad() {
        // A piece of 4 zero leaves hashes to H(H(0,0),H(0,0)).
        let tree = PieceTree::build(&[[1; 32], [2; 32], [3; 32]], 65536).unwrap();
        let z1 = hash_pair(&[0; 32], &[0; 32]);
        assert_eq!(tree.pads[0], hash_pair(&z1, &z1));
        assert_eq!(
            tree.root(),
            hash_pair(
                &hash_pair(&[1; 32], &[2; 32]),
                &hash_pair(&[3; 32], &tree.pads[0])
            )
        );
    }
}

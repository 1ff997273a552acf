//! Piece hashing as bytes stream by: v1 SHA-1 per piece, v2 SHA-256 per 16 KiB block (the
//! merkle leaves), and from the leaves the v2 piece layer and pieces root.

use sha1::{Digest as _, Sha1};
use sha2::Sha256;

/// BEP 52 block size: the merkle leaves cover 16 KiB each.
pub const BLOCK: usize = 16 * 1024;

/// What a finished [`PieceHasher`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceHashes {
    pub length: u64,
    pub piece_length: u64,
    /// v1: 20-byte SHA-1 of each piece, concatenated (empty for an empty file).
    pub v1_pieces: Option<Vec<u8>>,
    /// v2: the pieces root (absent for an empty file, as BEP 52 says).
    pub v2_root: Option<[u8; 32]>,
    /// v2: the piece layer, 32 bytes per piece; empty when the file is at most one piece.
    pub v2_layer: Option<Vec<u8>>,
}

/// Incremental hasher: feed the bytes in order with [`update`](Self::update), in chunks of any
/// size, then [`finish`](Self::finish).
#[derive(Clone)]
pub struct PieceHasher {
    piece_length: u64,
    length: u64,
    v1: Option<(Sha1, u64, Vec<u8>)>,
    v2: Option<(Sha256, usize, Vec<[u8; 32]>)>,
}

impl PieceHasher {
    /// `piece_length` must be a power of two of at least 16 KiB.
    pub fn new(piece_length: u64, v1: bool, v2: bool) -> Self {
        debug_assert!(piece_length.is_power_of_two() && piece_length >= BLOCK as u64);
        Self {
            piece_length,
            length: 0,
            v1: v1.then(|| (Sha1::new(), 0, Vec::new())),
            v2: v2.then(|| (Sha256::new(), 0, Vec::new())),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        if let Some((sha, filled, pieces)) = &mut self.v1 {
            let mut d = data;
            while !d.is_empty() {
                let room = usize::try_from(self.piece_length - *filled).unwrap_or(usize::MAX);
                let take = room.min(d.len());
                sha.update(&d[..take]);
                *filled += take as u64;
                d = &d[take..];
                if *filled == self.piece_length {
                    pieces.extend_from_slice(&sha.finalize_reset());
                    *filled = 0;
                }
            }
        }
        if let Some((sha, filled, leaves)) = &mut self.v2 {
            while !data.is_empty() {
                let take = (BLOCK - *filled).min(data.len());
                sha.update(&data[..take]);
                *filled += take;
                data = &data[take..];
                if *filled == BLOCK {
                    leaves.push(sha.finalize_reset().into());
                    *filled = 0;
                }
            }
        }
    }

    /// How many bytes have been fed so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    pub fn finish(self) -> PieceHashes {
        let (length, piece_length) = (self.length, self.piece_length);
        let (v1, leaves) = self.finish_raw();
        PieceHashes::assemble(length, piece_length, v1, leaves.as_deref())
    }

    /// The v1 piece hashes and the v2 leaves of the bytes fed so far, without the tree on top:
    /// hashers that each took a piece-aligned range of a file can be joined in order and
    /// finished with [`PieceHashes::assemble`] (how `torrent create` hashes on every core).
    pub fn finish_raw(self) -> (Option<Vec<u8>>, Option<Vec<[u8; 32]>>) {
        let v1_pieces = self.v1.map(|(sha, filled, mut pieces)| {
            if filled > 0 {
                pieces.extend_from_slice(&sha.finalize());
            }
            pieces
        });
        let leaves = self.v2.map(|(sha, filled, mut leaves)| {
            if filled > 0 {
                leaves.push(sha.finalize().into());
            }
            leaves
        });
        (v1_pieces, leaves)
    }
}

impl PieceHashes {
    /// The hashes of a whole file from its v1 piece hashes and its v2 leaves, in order.
    pub fn assemble(
        length: u64,
        piece_length: u64,
        v1_pieces: Option<Vec<u8>>,
        leaves: Option<&[[u8; 32]]>,
    ) -> Self {
        let (v2_root, v2_layer) = match leaves {
            None => (None, None),
            Some(_) if length == 0 => (None, Some(Vec::new())),
            Some(leaves) => {
                let layer = if length > piece_length {
                    piece_layer(leaves, piece_length)
                } else {
                    Vec::new()
                };
                (Some(merkle_root(leaves, piece_length)), Some(layer))
            }
        };
        PieceHashes {
            length,
            piece_length,
            v1_pieces,
            v2_root,
            v2_layer,
        }
    }
}

fn hash_pair(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// Root of a complete binary tree over `leaves` padded with `pad` to `width` (a power of two).
fn root_padded(leaves: &[[u8; 32]], width: usize, pad: [u8; 32]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = leaves.to_vec();
    let mut pad = pad;
    let mut width = width.max(1);
    if level.is_empty() {
        level.push(pad);
    }
    while width > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            let right = pair.get(1).unwrap_or(&pad);
            next.push(hash_pair(&pair[0], right));
        }
        pad = hash_pair(&pad, &pad);
        level = next;
        width /= 2;
    }
    level[0]
}

/// Leaves per piece.
fn blocks_per_piece(piece_length: u64) -> usize {
    usize::try_from(piece_length / BLOCK as u64)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The hashes of the piece layer: one per piece, each the root of that piece's subtree with
/// leaves past the end of the file taken as zero hashes.
pub fn piece_layer(leaves: &[[u8; 32]], piece_length: u64) -> Vec<u8> {
    let per = blocks_per_piece(piece_length);
    let mut out = Vec::with_capacity(leaves.len().div_ceil(per) * 32);
    for piece in leaves.chunks(per) {
        out.extend_from_slice(&root_padded(piece, per, [0; 32]));
    }
    out
}

/// The pieces root of a file from its leaves (BEP 52): a binary tree over the leaves padded
/// with zero hashes to a power of two; above the piece layer, when the file spans more than
/// one piece, the padding is the root of an all-zero piece.
pub fn merkle_root(leaves: &[[u8; 32]], piece_length: u64) -> [u8; 32] {
    let per = blocks_per_piece(piece_length);
    if leaves.len() <= per {
        return root_padded(leaves, leaves.len().next_power_of_two(), [0; 32]);
    }
    let layer: Vec<[u8; 32]> = leaves
        .chunks(per)
        .map(|p| root_padded(p, per, [0; 32]))
        .collect();
    let zero_piece = root_padded(&[], per, [0; 32]);
    root_padded(&layer, layer.len().next_power_of_two(), zero_piece)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    #[test]
    fn chunking_does_not_matter() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = {
            let mut h = PieceHasher::new(32 * 1024, true, true);
            h.update(&data);
            h.finish()
        };
        for step in [1usize, 7, 16 * 1024, 65_537] {
            let mut h = PieceHasher::new(32 * 1024, true, true);
            for c in data.chunks(step) {
                h.update(c);
            }
            assert_eq!(h.finish(), whole, "step {step}");
        }
        assert_eq!(whole.v1_pieces.as_ref().map(Vec::len), Some(7 * 20));
        // Piece-aligned ranges hashed apart and joined give the same result.
        let (mut v1, mut leaves) = (Vec::new(), Vec::new());
        for range in data.chunks(3 * 32 * 1024) {
            let mut h = PieceHasher::new(32 * 1024, true, true);
            h.update(range);
            let (a, b) = h.finish_raw();
            v1.extend(a.unwrap());
            leaves.extend(b.unwrap());
        }
        assert_eq!(
            PieceHashes::assemble(data.len() as u64, 32 * 1024, Some(v1), Some(&leaves)),
            whole
        );
        assert_eq!(whole.v2_layer.as_ref().map(Vec::len), Some(7 * 32));
    }

    #[test]
    fn small_trees_by_hand() {
        let a = leaf(b"a");
        // One block: the root is the leaf itself.
        assert_eq!(merkle_root(&[a], 1 << 14), a);
        // Three blocks in one 64 KiB piece: padded with a zero leaf.
        let (b, c) = (leaf(b"b"), leaf(b"c"));
        let expect = hash_pair(&hash_pair(&a, &b), &hash_pair(&c, &[0; 32]));
        assert_eq!(merkle_root(&[a, b, c], 1 << 16), expect);
        // Three one-block pieces: the pad above the piece layer is a zero piece (a zero hash
        // when pieces are one block).
        assert_eq!(merkle_root(&[a, b, c], 1 << 14), expect);
        // Two-block pieces, three leaves: pieces (a,b) and (c,0); root over the two.
        let p1 = hash_pair(&a, &b);
        let p2 = hash_pair(&c, &[0; 32]);
        assert_eq!(piece_layer(&[a, b, c], 1 << 15), [p1, p2].concat());
        assert_eq!(merkle_root(&[a, b, c], 1 << 15), hash_pair(&p1, &p2));
    }
}

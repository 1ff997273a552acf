//! The BitTorrent peer wire protocol, without IO.
//!
//! A connection starts with a [`Handshake`] (BEP 3; its [`Reserved`] bytes announce BEP 6, BEP 10,
//! BEP 52 and DHT support), then carries length-prefixed [`Message`]s: those of BEP 3, the fast
//! extension (BEP 6), the extension protocol's `extended` message (BEP 10) and the v2 hash
//! messages (BEP 52). Inside `extended` messages travel the [`ExtensionHandshake`] (BEP 10) and
//! [`MetadataMsg`] (BEP 9 `ut_metadata`).
//!
//! Every parser takes the bytes received so far and returns `Ok(Some((value, bytes_used)))`,
//! `Ok(None)` when more bytes are needed, or an error for input that can never become valid. No
//! parser panics or allocates more than the input it was given; message length prefixes are
//! checked against the caller's `max_message_len` as soon as the 4 prefix bytes arrive.
//!
//! On the seeder's data path: [`Message::parse_bytes`] gives a `Request`, [`block_offset`] turns
//! it into a validated byte offset in the object, and [`encode_piece_header`] makes the 13 bytes
//! to write before the block, which is written from the store without another copy.

mod bitfield;
mod block;
mod extension;
mod handshake;
mod message;
mod metadata;
pub mod mse;

pub use bitfield::Bitfield;
pub use block::{BlockError, MAX_BLOCK_LEN, block_offset};
pub use extension::{EXTENSION_HANDSHAKE_ID, ExtensionError, ExtensionHandshake, UT_METADATA};
pub use handshake::{
    HANDSHAKE_LEN, HANDSHAKE_PREFIX_LEN, Handshake, HandshakePrefix, PSTR, Reserved,
};
pub use message::{
    HASHES_HEADER_LEN, HashRequest, Message, PIECE_HEADER_LEN, PeerError, encode_hashes_header,
    encode_piece_header, frame_size, recommended_max_message_len,
};
pub use metadata::{
    METADATA_PIECE_LEN, MetadataMsg, encode_metadata_data_header, metadata_piece_count,
    metadata_piece_range,
};

use bytes::Bytes;

/// Where variable-length payloads come from: a borrowed slice (copied into a [`Bytes`]) or a
/// [`Bytes`] (shared, no copy). Lets one decoder serve both entry points.
trait Source: AsRef<[u8]> {
    /// The bytes from `from` to the end (empty if `from` is past the end).
    fn tail(&self, from: usize) -> Bytes;
}

impl Source for &[u8] {
    fn tail(&self, from: usize) -> Bytes {
        Bytes::copy_from_slice(self.get(from..).unwrap_or_default())
    }
}

impl Source for Bytes {
    fn tail(&self, from: usize) -> Bytes {
        if from <= self.len() {
            self.slice(from..)
        } else {
            Bytes::new()
        }
    }
}

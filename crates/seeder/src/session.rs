//! One peer's protocol state, without IO: messages in, outputs out.
//!
//! The connection feeds every parsed [`Message`] to [`Session::on_message`] and every choke
//! decision to [`Session::set_choked`]; it writes the [`Output`]s in order, takes blocks to read
//! with [`Session::next_block`] and reports each read done with [`Session::block_done`]. Any
//! [`Violation`] ends the connection.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use seedbucket_bencode::{decode_lenient, decode_prefix_lenient, encode};
use seedbucket_wire::peer::{
    Bitfield, BlockError, EXTENSION_HANDSHAKE_ID, ExtensionError, ExtensionHandshake, HashRequest,
    Message, MetadataMsg, PeerError, Reserved, UT_METADATA, block_offset, metadata_piece_range,
};

use crate::merkle::{PieceTree, TreeCache};
use crate::{CLIENT_VERSION, SeedTorrent};

/// The `extended` message id we receive `ut_metadata` on.
pub(crate) const OUR_UT_METADATA_ID: u8 = 1;

/// `ut_metadata` requests one connection may make per metadata piece; one more closes it. A
/// client asks for each piece once, and again after a reject or a lost answer at most.
pub(crate) const METADATA_REQUESTS_PER_PIECE: usize = 4;

/// Why a peer is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    #[error("malformed message: {0}")]
    Malformed(#[from] PeerError),
    #[error("bad block request: {0}")]
    BadRequest(#[from] BlockError),
    #[error("more than {0} outstanding requests")]
    QueueFull(usize),
    #[error("message id {0} was not negotiated")]
    NotNegotiated(u8),
    #[error("have for piece {0}, past the end")]
    BadHave(u32),
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
    #[error("bad extension message: {0}")]
    Extension(#[from] ExtensionError),
    #[error("more than {0} ut_metadata requests")]
    MetadataFlood(usize),
}

/// A validated block request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
    /// Byte offset in the torrent's content.
    pub offset: u64,
}

/// What the connection does next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// Write this message.
    Send(Message),
    /// Write `ut_metadata` data for metadata piece `piece` on the peer's extension id `ext_id`
    /// (header, then the info dictionary's bytes, without copying them).
    Metadata { ext_id: u8, piece: u32 },
    /// Tell the choker the peer's interest changed.
    Interest(bool),
}

/// What the session needs to know besides the torrent.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    /// The peer's reserved handshake bytes.
    pub peer_reserved: Reserved,
    /// The peer's address, echoed as `yourip`.
    pub peer_ip: Option<IpAddr>,
    /// Most outstanding requests (queued and being read).
    pub max_request_queue: usize,
    /// Where BEP 52 hash requests find the file's merkle tree.
    pub trees: Arc<TreeCache>,
}

pub(crate) struct Session {
    torrent: Arc<SeedTorrent>,
    piece_count: u32,
    fast: bool,
    extensions: bool,
    peer_ip: Option<IpAddr>,
    max_queue: usize,
    /// The peer's id for `ut_metadata`, from its extension handshake.
    peer_ut_metadata: Option<u8>,
    peer_interested: bool,
    choked: bool,
    /// Requests not yet started.
    queue: VecDeque<Block>,
    /// Requests being read, oldest first; `false` once they should not be sent any more.
    in_flight: VecDeque<(Block, bool)>,
    trees: Arc<TreeCache>,
    /// Fetched from `trees` on the first hash request.
    tree: Option<Option<Arc<PieceTree>>>,
    /// Requests of any kind (blocks, metadata, hashes) received so far.
    requests_seen: u64,
    /// `ut_metadata` requests received, and how many are allowed.
    metadata_requests: usize,
    max_metadata_requests: usize,
}

/// The reserved bits we send for `torrent`: fast extension, extension protocol, and the v2
/// upgrade bit when the torrent has v2 keys.
pub(crate) fn our_reserved(torrent: &SeedTorrent) -> Reserved {
    Reserved::NONE
        .with_fast(true)
        .with_extension_protocol(true)
        .with_v2_upgrade(torrent.info_hash_v2.is_some())
}

impl Session {
    /// `None` when the torrent's geometry is unusable.
    pub(crate) fn new(torrent: Arc<SeedTorrent>, config: &SessionConfig) -> Option<Self> {
        let piece_count = torrent.piece_count()?;
        Some(Self {
            piece_count,
            fast: config.peer_reserved.fast(),
            extensions: config.peer_reserved.extension_protocol(),
            peer_ip: config.peer_ip,
            max_queue: config.max_request_queue.max(1),
            peer_ut_metadata: None,
            peer_interested: false,
            choked: true,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            trees: Arc::clone(&config.trees),
            tree: None,
            requests_seen: 0,
            metadata_requests: 0,
            max_metadata_requests: torrent_metadata_pieces(&torrent)
                .saturating_mul(METADATA_REQUESTS_PER_PIECE),
            torrent,
        })
    }

    pub(crate) fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Whether the peer supports the fast extension (BEP 6).
    pub(crate) fn fast(&self) -> bool {
        self.fast
    }

    /// The messages right after the handshake: our extension handshake (BEP 10), then
    /// `have all` (BEP 6) or a full bitfield.
    pub(crate) fn start(&mut self, out: &mut Vec<Output>) {
        if self.extensions {
            let hs = ExtensionHandshake {
                m: [(UT_METADATA.to_owned(), OUR_UT_METADATA_ID)].into(),
                metadata_size: Some(self.torrent.info.len()),
                p: None,
                reqq: u32::try_from(self.max_queue).ok(),
                v: Some(CLIENT_VERSION.to_owned()),
                yourip: self.peer_ip,
            };
            out.push(Output::Send(Message::Extended {
                id: EXTENSION_HANDSHAKE_ID,
                payload: Bytes::from(hs.encode()),
            }));
        }
        out.push(Output::Send(if self.fast {
            Message::HaveAll
        } else {
            Bitfield::full(self.piece_count).to_message()
        }));
    }

    fn outstanding(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Whether the peer has block requests queued or being read.
    pub(crate) fn busy(&self) -> bool {
        self.outstanding() > 0
    }

    /// Whether the peer waits for an upload slot: interested, and choked by us.
    pub(crate) fn waiting(&self) -> bool {
        self.peer_interested && self.choked
    }

    /// Requests of any kind (blocks, metadata, hashes) received so far: the connection
    /// watches it to tell an active peer from an idle one.
    pub(crate) fn requests_seen(&self) -> u64 {
        self.requests_seen
    }

    fn reject(&self, b: &Block, out: &mut Vec<Output>) {
        if self.fast {
            out.push(Output::Send(Message::Reject {
                index: b.index,
                begin: b.begin,
                length: b.length,
            }));
        }
    }

    fn require_fast(&self, id: u8) -> Result<(), Violation> {
        if self.fast {
            Ok(())
        } else {
            Err(Violation::NotNegotiated(id))
        }
    }

    /// Handles one message from the peer.
    pub(crate) fn on_message(
        &mut self,
        msg: Message,
        out: &mut Vec<Output>,
    ) -> Result<(), Violation> {
        match msg {
            Message::KeepAlive | Message::Choke | Message::Unchoke | Message::Port(_) => {}
            Message::Interested => {
                if !self.peer_interested {
                    self.peer_interested = true;
                    out.push(Output::Interest(true));
                }
            }
            Message::NotInterested => {
                if self.peer_interested {
                    self.peer_interested = false;
                    out.push(Output::Interest(false));
                }
            }
            Message::Have(i) => {
                if i >= self.piece_count {
                    return Err(Violation::BadHave(i));
                }
            }
            Message::Bitfield(b) => {
                Bitfield::from_peer(&b, self.piece_count)?;
            }
            Message::HaveAll | Message::HaveNone => self.require_fast(msg_id(&msg))?,
            Message::Suggest(_) | Message::AllowedFast(_) | Message::Reject { .. } => {
                self.require_fast(msg_id(&msg))?;
            }
            Message::Request {
                index,
                begin,
                length,
            } => {
                self.requests_seen += 1;
                self.on_request(index, begin, length, out)?;
            }
            Message::Cancel {
                index,
                begin,
                length,
            } => {
                // A queued request is dropped (and, with BEP 6, rejected); one being read is
                // sent anyway, which BEP 6 also allows.
                if let Some(pos) = self
                    .queue
                    .iter()
                    .position(|b| (b.index, b.begin, b.length) == (index, begin, length))
                    && let Some(b) = self.queue.remove(pos)
                {
                    self.reject(&b, out);
                }
            }
            Message::Piece { .. } => return Err(Violation::Unexpected("piece")),
            Message::Extended { id, payload } => {
                if !self.extensions {
                    return Err(Violation::NotNegotiated(20));
                }
                self.on_extended(id, &payload, out)?;
            }
            Message::HashRequest(req) => {
                self.requests_seen += 1;
                out.push(Output::Send(self.on_hash_request(req)));
            }
            // We never ask for hashes; a stray answer is harmless.
            Message::Hashes { .. } | Message::HashReject(_) => {}
            Message::Unknown { id, .. } => return Err(Violation::NotNegotiated(id)),
        }
        Ok(())
    }

    fn on_request(
        &mut self,
        index: u32,
        begin: u32,
        length: u32,
        out: &mut Vec<Output>,
    ) -> Result<(), Violation> {
        let offset = block_offset(
            self.torrent.total_length,
            self.torrent.piece_length,
            index,
            begin,
            length,
        )?;
        let block = Block {
            index,
            begin,
            length,
            offset,
        };
        if self.choked {
            self.reject(&block, out);
            return Ok(());
        }
        if self.outstanding() >= self.max_queue {
            return Err(Violation::QueueFull(self.max_queue));
        }
        self.queue.push_back(block);
        Ok(())
    }

    fn on_extended(
        &mut self,
        id: u8,
        payload: &Bytes,
        out: &mut Vec<Output>,
    ) -> Result<(), Violation> {
        if id == EXTENSION_HANDSHAKE_ID {
            // Peers' dictionaries are read leniently (any key order), then canonically.
            let canonical = encode(&decode_lenient(payload).map_err(ExtensionError::from)?);
            let hs = ExtensionHandshake::parse(&canonical)?;
            // A later handshake may update or disable the extension.
            self.peer_ut_metadata = hs.id_of(UT_METADATA);
            return Ok(());
        }
        if id != OUR_UT_METADATA_ID {
            // An extension we never offered: ignore, as BEP 10 clients do.
            return Ok(());
        }
        let (value, used) = decode_prefix_lenient(payload).map_err(ExtensionError::from)?;
        let mut canonical = encode(&value);
        canonical.extend_from_slice(payload.get(used..).unwrap_or_default());
        match MetadataMsg::parse(&canonical)? {
            MetadataMsg::Request { piece } => {
                self.requests_seen += 1;
                let Some(ext_id) = self.peer_ut_metadata else {
                    // We cannot answer on an id the peer never gave us.
                    return Ok(());
                };
                // Every answer (data or reject) counts against the connection's allowance.
                self.metadata_requests += 1;
                if self.metadata_requests > self.max_metadata_requests {
                    return Err(Violation::MetadataFlood(self.max_metadata_requests));
                }
                if metadata_piece_range(self.torrent.info.len(), piece).is_ok() {
                    out.push(Output::Metadata { ext_id, piece });
                } else {
                    let reject = MetadataMsg::Reject { piece }.to_message(ext_id)?;
                    out.push(Output::Send(reject));
                }
            }
            // Data and rejects answer requests we never make; unknown types are ignored.
            MetadataMsg::Data { .. } | MetadataMsg::Reject { .. } | MetadataMsg::Unknown { .. } => {
            }
        }
        Ok(())
    }

    fn on_hash_request(&mut self, req: HashRequest) -> Message {
        let torrent = &self.torrent;
        let trees = &self.trees;
        let tree = self.tree.get_or_insert_with(|| {
            let tree = trees.get(
                torrent.pieces_root?,
                torrent.v2_piece_layer.as_deref()?,
                torrent.piece_length,
            );
            if tree.is_none() {
                tracing::warn!(
                    key = %torrent.key,
                    "piece layer does not hash to the pieces root; refusing hash requests"
                );
            }
            tree
        });
        let answer = match tree {
            Some(tree) if Some(req.pieces_root) == self.torrent.pieces_root => tree.answer(&req),
            _ => None,
        };
        tracing::debug!(
            base_layer = req.base_layer,
            index = req.index,
            length = req.length,
            proof_layers = req.proof_layers,
            answered = answer.is_some(),
            "hash request"
        );
        match answer {
            Some(hashes) => Message::Hashes {
                request: req,
                hashes: Bytes::from(hashes),
            },
            None => Message::HashReject(req),
        }
    }

    /// Our choke decision changed. Choking rejects every queued request (BEP 6) or forgets it
    /// (BEP 3); blocks being read are still sent to fast peers, dropped for others.
    pub(crate) fn set_choked(&mut self, choked: bool, out: &mut Vec<Output>) {
        if choked == self.choked {
            return;
        }
        self.choked = choked;
        if !choked {
            out.push(Output::Send(Message::Unchoke));
            return;
        }
        out.push(Output::Send(Message::Choke));
        let queued: Vec<Block> = self.queue.drain(..).collect();
        for b in &queued {
            self.reject(b, out);
        }
        if !self.fast {
            for (_, send) in &mut self.in_flight {
                *send = false;
            }
        }
    }

    /// The next block to read, now counted as in flight.
    pub(crate) fn next_block(&mut self) -> Option<Block> {
        let b = self.queue.pop_front()?;
        self.in_flight.push_back((b, true));
        Some(b)
    }

    /// The oldest in-flight read finished: the block, if it should still be sent.
    pub(crate) fn block_done(&mut self) -> Option<Block> {
        let (b, send) = self.in_flight.pop_front()?;
        send.then_some(b)
    }
}

/// The number of 16 KiB pieces of the torrent's info dictionary (at least 1).
fn torrent_metadata_pieces(torrent: &SeedTorrent) -> usize {
    torrent.info.len().div_ceil(16 * 1024).max(1)
}

fn msg_id(m: &Message) -> u8 {
    m.id().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedbucket_torrent::{Format, PieceHasher};

    fn torrent(len: usize, piece: u64, format: Format) -> Arc<SeedTorrent> {
        let data: Vec<u8> = (0..len).map(|i| (i % 199) as u8).collect();
        let mut h = PieceHasher::new(piece, true, true);
        h.update(&data);
        Arc::new(SeedTorrent::build("k", "f.bin", &h.finish(), format, false).unwrap())
    }

    fn session(fast: bool, ext: bool) -> Session {
        let t = torrent(100_000, 32768, Format::Hybrid);
        Session::new(
            t,
            &SessionConfig {
                peer_reserved: Reserved::NONE.with_fast(fast).with_extension_protocol(ext),
                peer_ip: None,
                max_request_queue: 3,
                trees: Arc::default(),
            },
        )
        .unwrap()
    }

    fn req(index: u32, begin: u32, length: u32) -> Message {
        Message::Request {
            index,
            begin,
            length,
        }
    }

    #[test]
    fn start_messages() {
        let mut s = session(true, true);
        let mut out = Vec::new();
        s.start(&mut out);
        assert_eq!(out.len(), 2);
        let Output::Send(Message::Extended { id: 0, payload }) = &out[0] else {
            panic!("{out:?}")
        };
        let hs = ExtensionHandshake::parse(payload).unwrap();
        assert_eq!(hs.id_of(UT_METADATA), Some(OUR_UT_METADATA_ID));
        assert_eq!(hs.metadata_size, Some(s.torrent.info.len()));
        assert_eq!(hs.reqq, Some(3));
        assert_eq!(out[1], Output::Send(Message::HaveAll));

        let mut s = session(false, false);
        let mut out = Vec::new();
        s.start(&mut out);
        // 100 000 bytes in 32 KiB pieces: 4 pieces.
        assert_eq!(
            out,
            [Output::Send(Message::Bitfield(Bytes::from_static(&[0xF0])))]
        );
    }

    #[test]
    fn requests_flow() {
        let mut s = session(true, true);
        let mut out = Vec::new();
        // Choked: rejected, not queued.
        s.on_message(req(0, 0, 16384), &mut out).unwrap();
        assert_eq!(
            out,
            [Output::Send(Message::Reject {
                index: 0,
                begin: 0,
                length: 16384
            })]
        );
        out.clear();
        s.on_message(Message::Interested, &mut out).unwrap();
        assert_eq!(out, [Output::Interest(true)]);
        out.clear();
        s.set_choked(false, &mut out);
        assert_eq!(out, [Output::Send(Message::Unchoke)]);
        out.clear();
        s.on_message(req(0, 0, 16384), &mut out).unwrap();
        s.on_message(req(3, 0, 100_000 - 3 * 32768), &mut out)
            .unwrap();
        s.on_message(req(1, 16384, 16384), &mut out).unwrap();
        assert!(out.is_empty());
        // A fourth outstanding request overflows the queue of 3.
        assert_eq!(
            s.on_message(req(1, 0, 16384), &mut Vec::new()),
            Err(Violation::QueueFull(3))
        );
        let b = s.next_block().unwrap();
        assert_eq!((b.index, b.offset), (0, 0));
        // Cancel of a queued request: rejected; of one in flight: sent anyway.
        s.on_message(
            Message::Cancel {
                index: 3,
                begin: 0,
                length: 100_000 - 3 * 32768,
            },
            &mut out,
        )
        .unwrap();
        assert!(matches!(
            out[..],
            [Output::Send(Message::Reject { index: 3, .. })]
        ));
        out.clear();
        s.on_message(
            Message::Cancel {
                index: 0,
                begin: 0,
                length: 16384,
            },
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        assert_eq!(s.block_done(), Some(b));
        let b = s.next_block().unwrap();
        assert_eq!(b.offset, 32768 + 16384);
        assert_eq!(s.next_block(), None);
        assert_eq!(s.block_done(), Some(b));
        assert_eq!(s.block_done(), None);
    }

    #[test]
    fn invalid_requests_are_violations() {
        let mut s = session(true, true);
        s.set_choked(false, &mut Vec::new());
        for m in [
            req(4, 0, 16384),
            req(0, 0, 16385),
            req(0, 0, 0),
            req(3, 0, 100_000 - 3 * 32768 + 1),
            req(0, 32768 - 100, 16384),
        ] {
            assert!(
                matches!(
                    s.on_message(m.clone(), &mut Vec::new()),
                    Err(Violation::BadRequest(_))
                ),
                "{m:?}"
            );
        }
    }

    #[test]
    fn choke_rejects_queue_fast_or_forgets() {
        for fast in [true, false] {
            let mut s = session(fast, false);
            s.set_choked(false, &mut Vec::new());
            for i in 0..3 {
                s.on_message(req(i, 0, 16384), &mut Vec::new()).unwrap();
            }
            let first = s.next_block().unwrap();
            let mut out = Vec::new();
            s.set_choked(true, &mut out);
            assert_eq!(out[0], Output::Send(Message::Choke));
            assert_eq!(out.len(), if fast { 3 } else { 1 });
            assert_eq!(s.next_block(), None);
            // The block being read is still sent to a fast peer only.
            assert_eq!(s.block_done(), fast.then_some(first));
            // Requests while choked: rejected (fast) or ignored.
            let mut out = Vec::new();
            s.on_message(req(0, 0, 10), &mut out).unwrap();
            assert_eq!(out.len(), usize::from(fast));
            assert_eq!(s.next_block(), None);
        }
    }

    #[test]
    fn negotiation_is_enforced() {
        let mut s = session(false, false);
        for m in [
            Message::HaveAll,
            Message::HaveNone,
            Message::Suggest(0),
            Message::AllowedFast(0),
            Message::Reject {
                index: 0,
                begin: 0,
                length: 1,
            },
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"de"),
            },
            Message::Unknown {
                id: 99,
                payload: Bytes::new(),
            },
        ] {
            assert!(
                matches!(
                    s.on_message(m.clone(), &mut Vec::new()),
                    Err(Violation::NotNegotiated(_))
                ),
                "{m:?}"
            );
        }
        assert_eq!(
            s.on_message(Message::Have(4), &mut Vec::new()),
            Err(Violation::BadHave(4))
        );
        s.on_message(Message::Have(3), &mut Vec::new()).unwrap();
        assert!(
            s.on_message(
                Message::Bitfield(Bytes::from_static(&[0xF8])),
                &mut Vec::new()
            )
            .is_err()
        );
        s.on_message(
            Message::Bitfield(Bytes::from_static(&[0x00])),
            &mut Vec::new(),
        )
        .unwrap();
        assert!(
            s.on_message(
                Message::Piece {
                    index: 0,
                    begin: 0,
                    block: Bytes::new()
                },
                &mut Vec::new()
            )
            .is_err()
        );
    }

    #[test]
    fn metadata_requests() {
        let mut s = session(true, true);
        let request = |piece: u32| Message::Extended {
            id: OUR_UT_METADATA_ID,
            payload: Bytes::from(format!("d8:msg_typei0e5:piecei{piece}ee")),
        };
        // Before the peer's handshake there is no id to answer on.
        let mut out = Vec::new();
        s.on_message(request(0), &mut out).unwrap();
        assert!(out.is_empty());
        // An unsorted handshake is accepted.
        s.on_message(
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"d1:v3:abc1:md11:ut_metadatai7eee"),
            },
            &mut out,
        )
        .unwrap();
        s.on_message(request(0), &mut out).unwrap();
        assert_eq!(
            out,
            [Output::Metadata {
                ext_id: 7,
                piece: 0
            }]
        );
        out.clear();
        // Out of range: rejected on the peer's id.
        s.on_message(request(1), &mut out).unwrap();
        assert_eq!(
            out,
            [Output::Send(
                MetadataMsg::Reject { piece: 1 }.to_message(7).unwrap()
            )]
        );
        out.clear();
        // Unsorted request keys are fine too.
        s.on_message(
            Message::Extended {
                id: OUR_UT_METADATA_ID,
                payload: Bytes::from_static(b"d5:piecei0e8:msg_typei0ee"),
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            [Output::Metadata {
                ext_id: 7,
                piece: 0
            }]
        );
        // Garbage is a violation; other extension ids are ignored.
        assert!(
            s.on_message(
                Message::Extended {
                    id: OUR_UT_METADATA_ID,
                    payload: Bytes::from_static(b"d5:piecei0e"),
                },
                &mut Vec::new()
            )
            .is_err()
        );
        assert!(
            s.on_message(
                Message::Extended {
                    id: 0,
                    payload: Bytes::from_static(b"d1:ai1e1:ai2ee"),
                },
                &mut Vec::new()
            )
            .is_err()
        );
        s.on_message(
            Message::Extended {
                id: 9,
                payload: Bytes::from_static(b"garbage"),
            },
            &mut Vec::new(),
        )
        .unwrap();
        // Disabling ut_metadata stops answers.
        let mut out = Vec::new();
        s.on_message(
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"d1:md11:ut_metadatai0eee"),
            },
            &mut out,
        )
        .unwrap();
        s.on_message(request(0), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn metadata_requests_are_limited_per_connection() {
        let mut s = session(true, true);
        let request = |piece: u32| Message::Extended {
            id: OUR_UT_METADATA_ID,
            payload: Bytes::from(format!("d8:msg_typei0e5:piecei{piece}ee")),
        };
        s.on_message(
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"d1:md11:ut_metadatai3eee"),
            },
            &mut Vec::new(),
        )
        .unwrap();
        // The info dictionary is one metadata piece: 4 answers, then the peer is dropped.
        assert_eq!(torrent_metadata_pieces(&s.torrent), 1);
        let before = s.requests_seen();
        for i in 0..METADATA_REQUESTS_PER_PIECE {
            let mut out = Vec::new();
            s.on_message(request(u32::from(i % 2 == 1)), &mut out)
                .unwrap();
            assert_eq!(out.len(), 1);
        }
        assert_eq!(s.requests_seen(), before + 4);
        assert_eq!(
            s.on_message(request(0), &mut Vec::new()),
            Err(Violation::MetadataFlood(METADATA_REQUESTS_PER_PIECE))
        );
    }

    #[test]
    fn waiting_and_busy() {
        let mut s = session(true, false);
        let mut out = Vec::new();
        assert!(!s.waiting() && !s.busy());
        s.on_message(Message::Interested, &mut out).unwrap();
        assert!(s.waiting());
        s.set_choked(false, &mut out);
        assert!(!s.waiting());
        s.on_message(req(0, 0, 16384), &mut out).unwrap();
        assert!(s.busy());
        assert_eq!(s.requests_seen(), 1);
    }

    #[test]
    fn hash_requests() {
        // 100 000 bytes, 32 KiB pieces: 4 pieces, base layer 1, tree height 2.
        let mut s = session(true, true);
        let root = s.torrent.pieces_root.unwrap();
        let good = HashRequest {
            pieces_root: root,
            base_layer: 1,
            index: 0,
            length: 4,
            proof_layers: 0,
        };
        let mut out = Vec::new();
        s.on_message(Message::HashRequest(good), &mut out).unwrap();
        let Output::Send(Message::Hashes { request, hashes }) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(*request, good);
        let layer = s.torrent.v2_piece_layer.clone().unwrap();
        assert_eq!(hashes[..], layer.concat()[..]);
        for bad in [
            HashRequest {
                pieces_root: [1; 32],
                ..good
            },
            HashRequest {
                base_layer: 0,
                ..good
            },
        ] {
            let mut out = Vec::new();
            s.on_message(Message::HashRequest(bad), &mut out).unwrap();
            assert_eq!(out, [Output::Send(Message::HashReject(bad))]);
        }
        // A v1 torrent rejects every hash request.
        let t = torrent(100_000, 32768, Format::V1);
        let mut s = Session::new(
            t,
            &SessionConfig {
                peer_reserved: Reserved::NONE,
                peer_ip: None,
                max_request_queue: 3,
                trees: Arc::default(),
            },
        )
        .unwrap();
        let mut out = Vec::new();
        s.on_message(Message::HashRequest(good), &mut out).unwrap();
        assert_eq!(out, [Output::Send(Message::HashReject(good))]);
    }

    #[test]
    fn reserved_bits() {
        let v1 = torrent(10, 16384, Format::V1);
        let hy = torrent(10, 16384, Format::Hybrid);
        assert!(our_reserved(&v1).fast() && our_reserved(&v1).extension_protocol());
        assert!(!our_reserved(&v1).v2_upgrade());
        assert!(our_reserved(&hy).v2_upgrade());
    }
}

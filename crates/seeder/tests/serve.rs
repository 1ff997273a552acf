//! End-to-end: `serve` on 127.0.0.1 with an in-memory library, and clients speaking the wire
//! codec: handshake, metadata, every block, v2 hashes, misbehaviour, choking rotation.

// Test helpers outside `#[test]` functions panic on purpose too.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use seedbucket_seeder::{Encryption, MemoryLibrary, SeedTorrent, Seeder, SeederOptions};
use seedbucket_torrent::{Format, PieceHasher};
use seedbucket_wire::peer::mse::{self, CryptoMethod, Initiator, Rc4Stream};
use seedbucket_wire::peer::{
    ExtensionHandshake, Handshake, HashRequest, Message, MetadataMsg, Reserved, UT_METADATA,
    metadata_piece_count,
};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);
const MAX_MSG: usize = 1 << 20;

fn content(len: usize, seed: u32) -> Bytes {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn make_torrent(data: &[u8], piece_length: u64, format: Format) -> SeedTorrent {
    let mut h = PieceHasher::new(piece_length, true, true);
    h.update(data);
    SeedTorrent::build("bucket/key", "file.bin", &h.finish(), format, false).unwrap()
}

struct Server {
    addr: SocketAddr,
    seeder: Seeder,
    library: Arc<MemoryLibrary>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(options: SeederOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let library = Arc::new(MemoryLibrary::new());
        let seeder = Seeder::new(library.clone(), options);
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let seeder = seeder.clone();
            async move {
                seeder
                    .serve(listener, async {
                        let _ = rx.await;
                    })
                    .await
            }
        });
        Self {
            addr,
            seeder,
            library,
            stop: Some(stop),
            task,
        }
    }

    fn add(&self, data: &Bytes, piece_length: u64, format: Format) -> Arc<SeedTorrent> {
        self.library
            .insert(make_torrent(data, piece_length, format), data.clone())
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

struct Client {
    s: TcpStream,
    buf: BytesMut,
    theirs: Handshake,
    /// After an encrypted handshake that selected RC4: our stream and the seeder's.
    rc4: Option<(Rc4Stream, Rc4Stream)>,
}

fn all_bits() -> Reserved {
    Reserved::NONE
        .with_fast(true)
        .with_extension_protocol(true)
        .with_v2_upgrade(true)
}

impl Client {
    async fn connect(addr: SocketAddr, info_hash: [u8; 20], reserved: Reserved) -> Self {
        Self::connect_expecting(addr, info_hash, reserved, info_hash).await
    }

    /// Connects naming `info_hash`; the seeder's handshake must name `reply`.
    async fn connect_expecting(
        addr: SocketAddr,
        info_hash: [u8; 20],
        reserved: Reserved,
        reply: [u8; 20],
    ) -> Self {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let ours = Handshake {
            reserved,
            info_hash,
            peer_id: *b"-TT0001-testclient01",
        };
        s.write_all(&ours.encode()).await.unwrap();
        let mut hs = [0u8; 68];
        tokio::time::timeout(WAIT, s.read_exact(&mut hs))
            .await
            .unwrap()
            .unwrap();
        let (theirs, _) = Handshake::parse(&hs).unwrap().unwrap();
        assert_eq!(theirs.info_hash, reply);
        assert_eq!(&theirs.peer_id[..8], b"-SB0100-");
        Self {
            s,
            buf: BytesMut::new(),
            theirs,
            rc4: None,
        }
    }

    /// Connects with a Message Stream Encryption exchange offering `provide` (1 plaintext,
    /// 2 RC4, 3 both), with the BitTorrent handshake as its initial payload. Returns the
    /// method the seeder selected.
    async fn connect_encrypted(
        addr: SocketAddr,
        info_hash: [u8; 20],
        provide: u32,
    ) -> Result<(Self, CryptoMethod), String> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut a = Initiator::new([0x42; 20], info_hash);
        s.write_all(&a.hello(&[0x17; 100])).await.unwrap();
        let mut yb = [0u8; mse::KEY_LEN];
        tokio::time::timeout(WAIT, s.read_exact(&mut yb))
            .await
            .unwrap()
            .map_err(|e| e.to_string())?;
        let ours = Handshake {
            reserved: all_bits(),
            info_hash,
            peer_id: *b"-TT0001-testclient02",
        };
        let step3 = a
            .request(&yb, provide, &[0x99; 33], &ours.encode())
            .map_err(|e| e.to_string())?;
        s.write_all(&step3).await.unwrap();
        let mut buf = BytesMut::new();
        let (method, used) = loop {
            if let Some(done) = a.confirm(&buf).map_err(|e| e.to_string())? {
                break done;
            }
            let n = tokio::time::timeout(WAIT, s.read_buf(&mut buf))
                .await
                .unwrap()
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during the exchange".into());
            }
        };
        let _ = buf.split_to(used);
        let mut c = Self {
            s,
            buf: BytesMut::new(),
            theirs: ours,
            rc4: None,
        };
        if method == CryptoMethod::Rc4 {
            c.rc4 = a.into_streams();
        }
        c.decrypt_into_buf(&mut buf);
        let mut hs = [0u8; 68];
        while c.buf.len() < 68 {
            c.read_some().await.ok_or("closed before the handshake")?;
        }
        hs.copy_from_slice(&c.buf.split_to(68));
        let (theirs, _) = Handshake::parse(&hs).unwrap().unwrap();
        assert_eq!(theirs.info_hash, info_hash);
        c.theirs = theirs;
        Ok((c, method))
    }

    fn decrypt_into_buf(&mut self, fresh: &mut [u8]) {
        if let Some((_, theirs)) = &mut self.rc4 {
            theirs.apply(fresh);
        }
        self.buf.extend_from_slice(fresh);
    }

    /// Reads what arrived into `buf` (decrypted); `None` at end of stream.
    async fn read_some(&mut self) -> Option<usize> {
        let mut fresh = BytesMut::with_capacity(65536);
        let n = tokio::time::timeout(WAIT, self.s.read_buf(&mut fresh))
            .await
            .expect("data within the wait")
            .unwrap_or(0);
        self.decrypt_into_buf(&mut fresh);
        (n > 0).then_some(n)
    }

    async fn send(&mut self, m: &Message) {
        let mut bytes = m.to_vec().unwrap();
        if let Some((ours, _)) = &mut self.rc4 {
            ours.apply(&mut bytes);
        }
        self.s.write_all(&bytes).await.unwrap();
    }

    /// The next message (keep-alives included), or `None` at end of stream.
    async fn next(&mut self) -> Option<Message> {
        loop {
            let frozen = Bytes::copy_from_slice(&self.buf);
            if let Some((m, used)) = Message::parse_bytes(&frozen, MAX_MSG).unwrap() {
                let _ = self.buf.split_to(used);
                return Some(m);
            }
            self.read_some().await?;
        }
    }

    /// The next message that is not a keep-alive.
    async fn recv(&mut self) -> Message {
        loop {
            match self.next().await {
                Some(Message::KeepAlive) => {}
                Some(m) => return m,
                None => panic!("connection closed"),
            }
        }
    }

    /// Reads until the server closes the connection; panics if it does not within the wait.
    async fn expect_closed(&mut self) {
        let mut scratch = vec![0u8; 65536];
        loop {
            match tokio::time::timeout(WAIT, self.s.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("server did not close the connection"),
            }
        }
    }
}

/// Every block of a torrent, requested with at most `window` outstanding; returns the content.
async fn download(c: &mut Client, t: &SeedTorrent, window: usize) -> Vec<u8> {
    let mut blocks = Vec::new();
    let pieces = t.total_length.div_ceil(t.piece_length);
    for index in 0..pieces {
        let this = t.piece_length.min(t.total_length - index * t.piece_length);
        let mut begin = 0;
        while begin < this {
            let len = (this - begin).min(16384);
            blocks.push((index as u32, begin as u32, len as u32));
            begin += len;
        }
    }
    let mut out = vec![0u8; t.total_length as usize];
    let mut next = 0;
    let mut received = 0;
    while received < blocks.len() {
        while next < blocks.len() && next - received < window {
            let (index, begin, length) = blocks[next];
            c.send(&Message::Request {
                index,
                begin,
                length,
            })
            .await;
            next += 1;
        }
        match c.recv().await {
            Message::Piece {
                index,
                begin,
                block,
            } => {
                // Served in request order.
                let (i, b, l) = blocks[received];
                assert_eq!((index, begin, block.len()), (i, b, l as usize));
                let at = (u64::from(index) * t.piece_length + u64::from(begin)) as usize;
                out[at..at + block.len()].copy_from_slice(&block);
                received += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// Interested, then waits for the unchoke.
async fn get_unchoked(c: &mut Client) {
    c.send(&Message::Interested).await;
    loop {
        match c.recv().await {
            Message::Unchoke => return,
            Message::Choke => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn hash_pair(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// Hashes a `hashes` answer up through its uncles.
fn proof_root(req: &HashRequest, hashes: &[u8]) -> [u8; 32] {
    let hs: Vec<[u8; 32]> = hashes
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();
    let (base, uncles) = hs.split_at(req.length as usize);
    let mut level = base.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| hash_pair(&p[0], &p[1])).collect();
    }
    let mut node = level[0];
    for (k, u) in uncles.iter().enumerate() {
        let h = req.length.trailing_zeros() + k as u32;
        node = if (req.index >> h) & 1 == 0 {
            hash_pair(&node, u)
        } else {
            hash_pair(u, &node)
        };
    }
    node
}

#[tokio::test]
async fn hybrid_torrent_end_to_end() {
    let server = Server::start(SeederOptions::default()).await;
    // 33 pieces of 32 KiB and a bit: the piece layer pads to 64.
    let piece = 32768u64;
    let data = content(32 * 32768 + 20_000, 1);
    let t = server.add(&data, piece, Format::Hybrid);
    let ih = t.info_hash_v1.unwrap();

    // Named by its v1 hash with the upgrade bit (BEP 52): the seeder answers with the v2 hash.
    let v2 = t.info_hash_v2_truncated().unwrap();
    let mut c = Client::connect_expecting(server.addr, ih, all_bits(), v2).await;
    assert!(c.theirs.reserved.fast());
    assert!(c.theirs.reserved.extension_protocol());
    assert!(c.theirs.reserved.v2_upgrade());

    // Extension handshake, then have_all.
    let Message::Extended { id: 0, payload } = c.recv().await else {
        panic!("expected the extension handshake")
    };
    let theirs = ExtensionHandshake::parse(&payload).unwrap();
    assert_eq!(theirs.metadata_size, Some(t.info.len()));
    assert_eq!(theirs.reqq, Some(2048));
    assert!(theirs.v.as_deref().unwrap().starts_with("seedbucket/"));
    assert_eq!(theirs.yourip, Some(std::net::IpAddr::from([127, 0, 0, 1])));
    let ut = theirs.id_of(UT_METADATA).unwrap();
    assert_eq!(c.recv().await, Message::HaveAll);

    // Our extension handshake with its keys out of order, as some clients send them.
    c.send(&Message::Extended {
        id: 0,
        payload: Bytes::from_static(b"d1:v4:test1:md11:ut_metadatai3eee"),
    })
    .await;
    // The info dictionary over ut_metadata.
    let count = metadata_piece_count(t.info.len()).unwrap();
    for piece in 0..count {
        c.send(&MetadataMsg::Request { piece }.to_message(ut).unwrap())
            .await;
    }
    c.send(
        &MetadataMsg::Request { piece: count }
            .to_message(ut)
            .unwrap(),
    )
    .await;
    let mut info = Vec::new();
    for piece in 0..=count {
        let Message::Extended { id: 3, payload } = c.recv().await else {
            panic!("expected ut_metadata on our id")
        };
        match MetadataMsg::parse_bytes(&payload).unwrap() {
            MetadataMsg::Data {
                piece: p,
                total_size,
                data,
            } => {
                assert_eq!((p, total_size), (piece, t.info.len()));
                info.extend_from_slice(&data);
            }
            MetadataMsg::Reject { piece: p } => assert_eq!(p, count),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(info, t.info);
    assert_eq!(<[u8; 20]>::from(Sha1::digest(&info)), ih);

    // Every block.
    get_unchoked(&mut c).await;
    let got = download(&mut c, &t, 64).await;
    assert_eq!(got, data);

    // BEP 52: the whole padded piece layer, then a span with uncles, each proving the root.
    let root = t.pieces_root.unwrap();
    let layer = t.v2_piece_layer.clone().unwrap();
    assert_eq!(layer.len(), 33);
    for (index, length, proof_layers) in [(0, 64, 5), (8, 8, 5), (32, 2, 5), (0, 512, 5)] {
        let req = HashRequest {
            pieces_root: root,
            base_layer: 1,
            index,
            length,
            proof_layers,
        };
        c.send(&Message::HashRequest(req)).await;
        match c.recv().await {
            Message::Hashes { request, hashes } if length <= 64 => {
                assert_eq!(request, req);
                let uncles = (proof_layers + 1).saturating_sub(length.trailing_zeros());
                assert_eq!(hashes.len(), 32 * (length + uncles) as usize);
                assert_eq!(&hashes[..32], &layer[index as usize]);
                assert_eq!(proof_root(&req, &hashes), root, "{req:?}");
            }
            Message::HashReject(r) if length > 64 => assert_eq!(r, req),
            other => panic!("unexpected {other:?} for {req:?}"),
        }
    }
    // A request for the leaf layer is refused: we keep only the piece layer.
    let leaf = HashRequest {
        pieces_root: root,
        base_layer: 0,
        index: 0,
        length: 2,
        proof_layers: 0,
    };
    c.send(&Message::HashRequest(leaf)).await;
    assert_eq!(c.recv().await, Message::HashReject(leaf));

    assert_eq!(server.library.uploaded_bytes(), data.len() as u64);
    let stats = server.seeder.stats();
    assert_eq!(stats.uploaded_bytes, data.len() as u64);
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.unchoked, 1);

    // Not interested frees the slot: we are choked.
    c.send(&Message::NotInterested).await;
    assert_eq!(c.recv().await, Message::Choke);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn v1_peer_without_extensions_and_v2_hash_handshake() {
    let server = Server::start(SeederOptions::default()).await;
    let data = content(5 * 16384 + 3, 2);
    let t = server.add(&data, 16384, Format::Hybrid);

    // A plain BEP 3 peer: full bitfield, no extension handshake, ignored requests when choked.
    let mut c = Client::connect(server.addr, t.info_hash_v1.unwrap(), Reserved::NONE).await;
    assert_eq!(
        c.recv().await,
        Message::Bitfield(Bytes::from_static(&[0xFC]))
    );
    c.send(&Message::Request {
        index: 0,
        begin: 0,
        length: 16384,
    })
    .await;
    get_unchoked(&mut c).await;
    assert_eq!(download(&mut c, &t, 3).await, data);

    // The same torrent by its truncated v2 hash: answered under the same 20 bytes.
    let v2 = t.info_hash_v2_truncated().unwrap();
    let mut c2 = Client::connect(server.addr, v2, Reserved::NONE.with_fast(true)).await;
    assert!(c2.theirs.reserved.v2_upgrade());
    assert_eq!(c2.recv().await, Message::HaveAll);
    // A fast peer's request while choked is rejected.
    let r = (1, 0, 16384);
    c2.send(&Message::Request {
        index: r.0,
        begin: r.1,
        length: r.2,
    })
    .await;
    assert_eq!(
        c2.recv().await,
        Message::Reject {
            index: r.0,
            begin: r.1,
            length: r.2
        }
    );
    get_unchoked(&mut c2).await;
    assert_eq!(download(&mut c2, &t, 10).await, data);

    // A v1-only torrent does not set the v2 bit.
    let t1 = server.add(&content(1000, 3), 16384, Format::V1);
    let c3 = Client::connect(server.addr, t1.info_hash_v1.unwrap(), all_bits()).await;
    assert!(!c3.theirs.reserved.v2_upgrade());
    server.stop().await;
}

#[tokio::test]
async fn misbehaving_peers_are_dropped_alone() {
    let server = Server::start(SeederOptions {
        handshake_timeout: Duration::from_millis(500),
        ..SeederOptions::default()
    })
    .await;
    let data = content(40 * 16384, 4);
    let t = server.add(&data, 65536, Format::Hybrid);
    let ih = t.info_hash_v2_truncated().unwrap();

    let good = tokio::spawn({
        let t = Arc::clone(&t);
        let data = data.clone();
        let addr = server.addr;
        async move {
            let mut c = Client::connect(addr, ih, all_bits()).await;
            get_unchoked_after_start(&mut c).await;
            // Slow and steady, so the bad peers come and go meanwhile.
            assert_eq!(download(&mut c, &t, 2).await, data);
        }
    });

    // A request past the end of a piece, once unchoked.
    let mut bad = Client::connect(server.addr, ih, all_bits()).await;
    get_unchoked_after_start(&mut bad).await;
    bad.send(&Message::Request {
        index: 0,
        begin: 65536 - 100,
        length: 16384,
    })
    .await;
    bad.expect_closed().await;

    // A request for a piece that does not exist, even while choked.
    let mut bad = Client::connect(server.addr, ih, all_bits()).await;
    bad.send(&Message::Request {
        index: 10,
        begin: 0,
        length: 16384,
    })
    .await;
    bad.expect_closed().await;

    // An oversized length prefix.
    let mut bad = Client::connect(server.addr, ih, all_bits()).await;
    bad.s.write_all(&[0xFF, 0xFF, 0xFF, 0xF0, 7]).await.unwrap();
    bad.expect_closed().await;

    // An unknown message id (not negotiated).
    let mut bad = Client::connect(server.addr, ih, all_bits()).await;
    bad.s.write_all(&[0, 0, 0, 2, 99, 0]).await.unwrap();
    bad.expect_closed().await;

    // A malformed known message (have with 3 bytes).
    let mut bad = Client::connect(server.addr, ih, all_bits()).await;
    bad.s.write_all(&[0, 0, 0, 4, 4, 0, 0, 0]).await.unwrap();
    bad.expect_closed().await;

    // Garbage instead of a handshake.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    expect_eof(&mut s).await;

    // An info-hash nobody serves.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let h = Handshake {
        reserved: all_bits(),
        info_hash: [9; 20],
        peer_id: [1; 20],
    };
    s.write_all(&h.encode()).await.unwrap();
    expect_eof(&mut s).await;

    // Silence after connecting: the handshake timeout.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    expect_eof(&mut s).await;

    // Flooding requests past the queue limit (2048 by default).
    let mut bad = Client::connect(server.addr, ih, all_bits()).await;
    get_unchoked_after_start(&mut bad).await;
    let mut flood = Vec::new();
    for i in 0..5000u32 {
        let m = Message::Request {
            index: i % 10,
            begin: 0,
            length: 16384,
        };
        flood.extend_from_slice(&m.to_vec().unwrap());
    }
    let _ = bad.s.write_all(&flood).await;
    bad.expect_closed().await;

    tokio::time::timeout(WAIT, good)
        .await
        .expect("the good peer finishes")
        .unwrap();
    server.stop().await;
}

/// Skips the extension handshake and have_all, then gets unchoked.
async fn get_unchoked_after_start(c: &mut Client) {
    assert!(matches!(c.recv().await, Message::Extended { id: 0, .. }));
    assert_eq!(c.recv().await, Message::HaveAll);
    get_unchoked(c).await;
}

async fn expect_eof(s: &mut TcpStream) {
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("server did not close the connection"),
        }
    }
}

#[tokio::test]
async fn one_slot_rotates_between_two_peers() {
    let server = Server::start(SeederOptions {
        max_unchoked: 1,
        rotate_every: Duration::from_millis(300),
        ..SeederOptions::default()
    })
    .await;
    let data = content(4 * 16384, 5);
    let t = server.add(&data, 16384, Format::V1);
    let ih = t.info_hash_v1.unwrap();

    let mut a = Client::connect(server.addr, ih, all_bits()).await;
    let mut b = Client::connect(server.addr, ih, all_bits()).await;
    for c in [&mut a, &mut b] {
        assert!(matches!(c.recv().await, Message::Extended { id: 0, .. }));
        assert_eq!(c.recv().await, Message::HaveAll);
    }
    a.send(&Message::Interested).await;
    assert_eq!(a.recv().await, Message::Unchoke);
    b.send(&Message::Interested).await;
    // b waits, then a rotation hands it the slot and chokes a.
    assert_eq!(b.recv().await, Message::Unchoke);
    assert_eq!(a.recv().await, Message::Choke);
    let stats = server.seeder.stats();
    assert_eq!((stats.unchoked, stats.waiting), (1, 1));
    // And back again.
    assert_eq!(a.recv().await, Message::Unchoke);
    assert_eq!(b.recv().await, Message::Choke);
    // Leaving frees the slot for the other at once.
    a.send(&Message::NotInterested).await;
    assert_eq!(a.recv().await, Message::Choke);
    assert_eq!(b.recv().await, Message::Unchoke);
    assert_eq!(download(&mut b, &t, 4).await, data);
    server.stop().await;
}

#[tokio::test]
async fn per_peer_rate_limit_and_connection_cap() {
    let server = Server::start(SeederOptions {
        upload_rate_limit_per_peer: Some(128 * 1024),
        max_connections: 1,
        ..SeederOptions::default()
    })
    .await;
    let data = content(256 * 1024, 6);
    let t = server.add(&data, 65536, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    let mut c = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(c.recv().await, Message::HaveAll);
    get_unchoked(&mut c).await;
    let start = std::time::Instant::now();
    // All 16 blocks requested: the rate limit keeps them outstanding for about a second, so
    // the one connection is busy and keeps its slot.
    for i in 0..16u32 {
        c.send(&Message::Request {
            index: i / 4,
            begin: (i % 4) * 16384,
            length: 16384,
        })
        .await;
    }

    // A second connection is over the cap: closed before any handshake.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let _ = s
        .write_all(
            &Handshake {
                reserved: Reserved::NONE,
                info_hash: ih,
                peer_id: [2; 20],
            }
            .encode(),
        )
        .await;
    expect_eof(&mut s).await;

    let mut got = Vec::new();
    for _ in 0..16 {
        match c.recv().await {
            Message::Piece { block, .. } => got.extend_from_slice(&block),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, data);
    // The first second's worth is the bucket; the second takes a second.
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert_eq!(server.seeder.stats().connections_refused, 1);
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_give_their_slots_to_new_ones() {
    let server = Server::start(SeederOptions {
        max_connections: 3,
        max_connections_per_address: 2,
        ..SeederOptions::default()
    })
    .await;
    let data = content(64 * 1024, 9);
    let t = server.add(&data, 16384, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    // Two idle connections fill 127.0.0.1's allowance of 2.
    let mut first = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(first.recv().await, Message::HaveAll);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut second = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(second.recv().await, Message::HaveAll);
    // A third from the same address takes the slot of the longest idle (the first) and
    // downloads everything.
    let mut third = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(third.recv().await, Message::HaveAll);
    first.expect_closed().await;
    get_unchoked(&mut third).await;
    assert_eq!(download(&mut third, &t, 4).await, data);
    assert_eq!(server.seeder.stats().connections_evicted, 1);
    drop(second);
    server.stop().await;
}

#[tokio::test]
async fn peers_that_request_nothing_are_dropped() {
    let server = Server::start(SeederOptions {
        inactive_timeout: Duration::from_secs(1),
        ..SeederOptions::default()
    })
    .await;
    let data = content(32 * 1024, 10);
    let t = server.add(&data, 16384, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    // Not interested, only keep-alives: dropped after the inactive timeout.
    let mut quiet = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(quiet.recv().await, Message::HaveAll);
    let started = std::time::Instant::now();
    quiet.send(&Message::KeepAlive).await;
    quiet.expect_closed().await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Unchoked and asking: kept past the timeout.
    let mut busy = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(busy.recv().await, Message::HaveAll);
    get_unchoked(&mut busy).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(download(&mut busy, &t, 2).await, data);
    }
    assert_eq!(server.seeder.stats().connections_inactive, 1);
    server.stop().await;
}

#[tokio::test]
async fn revoked_access_stops_a_connected_peer() {
    let server = Server::start(SeederOptions {
        access_recheck_every: Duration::from_millis(300),
        ..SeederOptions::default()
    })
    .await;
    let data = content(32 * 1024, 11);
    let t = server.add(&data, 16384, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    let mut c = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(c.recv().await, Message::HaveAll);
    get_unchoked(&mut c).await;
    assert_eq!(download(&mut c, &t, 2).await, data);
    // The library stops serving the torrent: the connection ends without another request.
    let revoked = std::time::Instant::now();
    server.library.remove(&ih);
    c.expect_closed().await;
    assert!(
        revoked.elapsed() < Duration::from_secs(3),
        "{:?}",
        revoked.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn library_read_failure_drops_the_peer() {
    let server = Server::start(SeederOptions::default()).await;
    let data = content(3 * 16384, 7);
    let t = server.add(&data, 16384, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    let mut c = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(c.recv().await, Message::HaveAll);
    get_unchoked(&mut c).await;
    // The object goes away: the next read fails and the connection ends.
    server.library.remove(&ih);
    c.send(&Message::Request {
        index: 0,
        begin: 0,
        length: 16384,
    })
    .await;
    c.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    let server = Server::start(SeederOptions::default()).await;
    let data = content(1000, 8);
    let t = server.add(&data, 16384, Format::V1);
    let mut c = Client::connect(server.addr, t.info_hash_v1.unwrap(), Reserved::NONE).await;
    assert!(matches!(c.recv().await, Message::Bitfield(_)));
    let seeder = server.seeder.clone();
    server.stop().await;
    c.expect_closed().await;
    assert_eq!(seeder.stats().connections, 0);
}

/// The whole object over an encrypted handshake, for each payload method, beside a plain
/// peer; then the policies: `require` refuses plain handshakes and plaintext-only offers,
/// `off` refuses encrypted ones.
#[tokio::test]
async fn encrypted_handshakes_and_policies() {
    let server = Server::start(SeederOptions::default()).await;
    let data = content(300_000, 11);
    let t = server.add(&data, 65536, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    for (provide, expected) in [
        (2, CryptoMethod::Rc4),
        (1, CryptoMethod::Plaintext),
        (3, CryptoMethod::Plaintext),
    ] {
        let (mut c, method) = Client::connect_encrypted(server.addr, ih, provide)
            .await
            .unwrap();
        assert_eq!(method, expected, "crypto_provide {provide}");
        assert!(matches!(c.recv().await, Message::Extended { id: 0, .. }));
        assert_eq!(c.recv().await, Message::HaveAll);
        get_unchoked(&mut c).await;
        assert_eq!(download(&mut c, &t, 24).await, data);
    }
    // A plain peer at the same time is unaffected.
    let mut plain = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(plain.recv().await, Message::HaveAll);
    // An info-hash we do not serve: closed during the exchange.
    assert!(
        Client::connect_encrypted(server.addr, [0xEE; 20], 2)
            .await
            .is_err()
    );
    server.stop().await;

    let server = Server::start(SeederOptions {
        encryption: Encryption::Require,
        ..SeederOptions::default()
    })
    .await;
    let t = server.add(&data, 65536, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    let (mut c, method) = Client::connect_encrypted(server.addr, ih, 3).await.unwrap();
    assert_eq!(
        method,
        CryptoMethod::Rc4,
        "require selects RC4 when offered"
    );
    assert!(matches!(c.recv().await, Message::Extended { id: 0, .. }));
    assert!(Client::connect_encrypted(server.addr, ih, 1).await.is_err());
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        &Handshake {
            reserved: Reserved::NONE,
            info_hash: ih,
            peer_id: [3; 20],
        }
        .encode(),
    )
    .await
    .unwrap();
    expect_eof(&mut s).await;
    server.stop().await;

    let server = Server::start(SeederOptions {
        encryption: Encryption::Off,
        ..SeederOptions::default()
    })
    .await;
    let t = server.add(&data, 65536, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    assert!(Client::connect_encrypted(server.addr, ih, 3).await.is_err());
    let mut plain = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(plain.recv().await, Message::HaveAll);
    server.stop().await;
}

/// Malformed and truncated exchanges, wrong obfuscated hashes and oversized pads close only
/// their own connection, within the handshake timeout.
#[tokio::test]
async fn hostile_encrypted_handshakes_close_only_themselves() {
    let server = Server::start(SeederOptions {
        handshake_timeout: Duration::from_secs(2),
        ..SeederOptions::default()
    })
    .await;
    let data = content(70_000, 12);
    let t = server.add(&data, 32768, Format::V1);
    let ih = t.info_hash_v1.unwrap();
    let mut good = Client::connect(server.addr, ih, Reserved::NONE.with_fast(true)).await;
    assert_eq!(good.recv().await, Message::HaveAll);

    // A public key out of range (all 0xFF is above the prime).
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&[0xFF; 200]).await.unwrap();
    expect_eof(&mut s).await;
    // Random bytes past the padding limit: no synchronisation point.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let junk: Vec<u8> = (0..2000u32).map(|i| (i * 7 + 3) as u8).collect();
    let _ = s.write_all(&junk).await;
    expect_eof(&mut s).await;
    // A valid key, then silence: cut at the handshake timeout.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let a = Initiator::new([1; 20], ih);
    s.write_all(&a.hello(&[])).await.unwrap();
    let started = std::time::Instant::now();
    expect_eof(&mut s).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // An oversized PadC.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut a = Initiator::new([2; 20], ih);
    s.write_all(&a.hello(&[])).await.unwrap();
    let mut yb = [0u8; mse::KEY_LEN];
    s.read_exact(&mut yb).await.unwrap();
    let _ = s
        .write_all(&a.request(&yb, 2, &[0; 600], &[]).unwrap())
        .await;
    expect_eof(&mut s).await;
    // The BitTorrent handshake inside names another torrent than the exchange did.
    let other = server.add(&content(1000, 13), 32768, Format::V1);
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut a = Initiator::new([4; 20], ih);
    s.write_all(&a.hello(&[])).await.unwrap();
    s.read_exact(&mut yb).await.unwrap();
    let inner = Handshake {
        reserved: Reserved::NONE,
        info_hash: other.info_hash_v1.unwrap(),
        peer_id: [5; 20],
    };
    s.write_all(&a.request(&yb, 1, &[], &inner.encode()).unwrap())
        .await
        .unwrap();
    expect_eof(&mut s).await;

    // The honest peer still downloads.
    get_unchoked(&mut good).await;
    assert_eq!(download(&mut good, &t, 8).await, data);
    server.stop().await;
}

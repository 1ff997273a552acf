//! Hostile input for every wire parser a remote party reaches: the HTTP tracker's announce and
//! scrape queries, UDP tracker datagrams, the peer handshake, peer message framing and
//! decoding, BEP 10 extension handshakes, `ut_metadata` messages, bitfields and block requests.
//! Properties: no panic; what a parser returns is no larger than what it was given; a stream
//! of frames is consumed with progress on every frame, so parsing terminates.
//! Seeds: tests/corpus/{tracker_http,tracker_udp,peer_handshake,peer_wire,peer_extension}.

#[path = "../../../tests/corpus/replay.rs"]
mod replay;

use bytes::Bytes;
use proptest::prelude::*;
use seedbucket_wire::peer::{
    Bitfield, ExtensionHandshake, Handshake, HandshakePrefix, Message, MetadataMsg, block_offset,
    frame_size, recommended_max_message_len,
};
use seedbucket_wire::tracker::{http, udp};

fn check_tracker_http(query: &str) {
    if let Ok(a) = http::parse_announce(query) {
        assert!(query.len() <= http::MAX_QUERY);
        assert!(a.key.as_ref().is_none_or(|k| k.len() <= query.len()));
    }
    if let Ok(hashes) = http::parse_scrape(query) {
        assert!(hashes.len() <= http::MAX_SCRAPE);
        // Each hash needs at least `info_hash=` and 20 bytes in the query.
        assert!(hashes.len() * 30 <= query.len());
    }
}

fn check_tracker_udp(packet: &[u8]) {
    let _ = udp::transaction_id(packet);
    match udp::parse_request(packet) {
        Ok(udp::Request::Scrape { info_hashes, .. }) => {
            assert!(info_hashes.len() <= udp::MAX_SCRAPE);
            assert!(16 + 20 * info_hashes.len() <= packet.len());
        }
        Ok(udp::Request::Announce(a)) => assert!(98 + a.url_data.len() <= packet.len()),
        Ok(udp::Request::Connect { .. }) => assert!(packet.len() >= 16),
        Err(_) => {}
    }
}

fn check_handshake(buf: &[u8]) {
    if let Ok(Some((_, used))) = HandshakePrefix::parse(buf) {
        assert!(used <= buf.len());
    }
    if let Ok(Some((h, used))) = Handshake::parse(buf) {
        assert!(used <= buf.len());
        assert_eq!(&h.encode()[..], &buf[..used]);
    }
}

/// Reads `buf` as a stream of frames, both ways (copying and sharing), until it needs more
/// bytes or meets an error; every frame consumes bytes, so this returns.
fn check_frames(buf: &[u8], max: usize) {
    let mut rest = buf;
    while let Ok(Some((m, used))) = Message::parse(rest, max) {
        assert!(used >= 4 && used <= rest.len() && used <= max.saturating_add(4));
        if let Ok(v) = m.to_vec() {
            assert!(v.len() <= used, "{m:?} re-encodes larger than its frame");
        }
        check_payloads(&m);
        rest = &rest[used..];
    }
    let mut shared = Bytes::copy_from_slice(buf);
    loop {
        match frame_size(&shared, max) {
            Ok(Some(size)) if size <= shared.len() => {
                assert!(size >= 4);
                let frame = shared.split_to(size);
                let _ = Message::parse_bytes(&frame, max);
            }
            _ => break,
        }
    }
}

/// The payloads peers send inside messages: extension handshakes, `ut_metadata`, bitfields.
fn check_payloads(m: &Message) {
    if let Message::Bitfield(b) = m {
        for pieces in [0, 1, 8, 100, u32::MAX] {
            if let Ok(bf) = Bitfield::from_peer(b, pieces) {
                assert_eq!(bf.as_bytes().len(), b.len());
                let _ = bf.count();
            }
        }
    }
    if let Message::Request {
        index,
        begin,
        length,
    } = *m
    {
        for (total, piece) in [(0, 16384), (1 << 20, 16384), (u64::MAX, 1 << 22), (5, 0)] {
            if let Ok(off) = block_offset(total, piece, index, begin, length) {
                assert!(off + u64::from(length) <= total);
            }
        }
    }
    if let Message::Extended { payload, .. } = m {
        check_extension(payload);
    }
}

fn check_extension(payload: &[u8]) {
    if let Ok(h) = ExtensionHandshake::parse(payload) {
        let _ = h.id_of("ut_metadata");
        let _ = h.encode();
    }
    for parsed in [
        MetadataMsg::parse(payload),
        MetadataMsg::parse_bytes(&Bytes::copy_from_slice(payload)),
    ] {
        if let Ok(MetadataMsg::Data { data, .. }) = parsed {
            assert!(data.len() <= payload.len());
        }
    }
}

/// Frame length limits the seeder uses: a small torrent's, a large one's, and none to speak of.
const LIMITS: [usize; 3] = [1 << 15, 1 << 20, usize::MAX];

#[test]
fn corpus_replays() {
    for (_, q) in replay::seeds("tracker_http") {
        check_tracker_http(&String::from_utf8_lossy(&q));
    }
    for (_, p) in replay::seeds("tracker_udp") {
        check_tracker_udp(&p);
        assert!(udp::parse_request(&p).is_ok());
    }
    for (_, h) in replay::seeds("peer_handshake") {
        check_handshake(&h);
        assert!(matches!(Handshake::parse(&h), Ok(Some(_))));
    }
    for (name, f) in replay::seeds("peer_wire") {
        let max = recommended_max_message_len(1000);
        check_frames(&f, max);
        assert!(
            matches!(Message::parse(&f, max), Ok(Some(_))),
            "seed {name}"
        );
    }
    for (_, e) in replay::seeds("peer_extension") {
        check_extension(&e);
    }
}

#[test]
fn length_prefixes_beyond_the_limit_are_refused_before_the_body() {
    let huge = [0xff, 0xff, 0xff, 0xff, 7];
    assert!(frame_size(&huge, 1 << 20).is_err());
    assert!(Message::parse(&huge, 1 << 20).is_err());
}

proptest! {
    #![proptest_config(replay::config())]

    #[test]
    fn tracker_http_queries(q in replay::text_inputs("tracker_http", 600)) {
        check_tracker_http(&q);
    }

    #[test]
    fn tracker_udp_datagrams(p in replay::inputs("tracker_udp", 600)) {
        check_tracker_udp(&p);
    }

    #[test]
    fn peer_handshakes(h in replay::inputs("peer_handshake", 100)) {
        check_handshake(&h);
    }

    #[test]
    fn peer_frames(f in replay::inputs("peer_wire", 600), limit in prop::sample::select(LIMITS.to_vec())) {
        check_frames(&f, limit);
    }

    #[test]
    fn extension_payloads(e in replay::inputs("peer_extension", 600)) {
        check_extension(&e);
    }
}

//! The UDP tracker (BEP 15) on the S3 port number: connect, announce, scrape, error.
//!
//! Connection ids are a keyed MAC of the client's address and a two-minute window (current or
//! previous accepted), so the server keeps no per-client state. A private torrent's token comes
//! in the announce URL's query, which clients send as BEP 41 URL data. Every refusal is an
//! error packet; malformed datagrams without a transaction id are dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use seedbucket_tracker::PeerAnnounce;
use seedbucket_wire::tracker::udp::{
    CompactAnnounceReply, MAX_PACKET, Request, connect_reply, error_reply, parse_request,
    scrape_reply, transaction_id,
};
use tokio::net::UdpSocket;

use crate::Seedbucket;
use crate::stats::Transport;

const WINDOW_SECS: u64 = 120;

/// Datagrams answered at the same time by one receive loop, when answers wait on Redis.
const UDP_IN_FLIGHT: usize = 1024;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Seedbucket {
    /// Answers datagrams on `socket` until the task is dropped. Datagrams are taken several at
    /// a time ([`crate::udp_inbox`]). A datagram whose answer is ready at once (tracker state
    /// in this process) is answered in the receive loop; one that waits (Redis) waits in the
    /// same task, beside the next datagrams, at most [`UDP_IN_FLIGHT`] at a time per loop (past
    /// that, datagrams are dropped, as a busy UDP server does; clients retry). Keeping them in
    /// the loop's task, not a task each, spares a task and a cross-thread wake-up per datagram.
    pub async fn serve_udp_tracker(self, socket: Arc<UdpSocket>) {
        use futures::StreamExt as _;
        let mut inbox = crate::udp_inbox::Inbox::new(MAX_PACKET + 1);
        let mut waiting = futures::stream::FuturesUnordered::new();
        // One reference count per datagram instead of a clone of every shared part.
        let app = Arc::new(self);
        loop {
            let ready = tokio::select! {
                biased;
                Some(()) = waiting.next(), if !waiting.is_empty() => continue,
                r = socket.readable() => r,
            };
            let received = ready.and_then(|()| inbox.receive(&socket));
            if let Err(e) = received {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::debug!(error = %e, "udp tracker receive failed");
                }
                continue;
            }
            for (packet, from) in inbox.datagrams() {
                let (app, socket, packet) = (app.clone(), socket.clone(), packet.to_vec());
                let mut answer = Box::pin(async move {
                    let log = &app.options.access_log;
                    let started = log.is_on().then(std::time::Instant::now);
                    let reply = app.udp_datagram(&packet, from).await;
                    if let Some(reply) = &reply {
                        let _ = socket.send_to(reply, from).await;
                    }
                    if let Some(started) = started {
                        let mut entry =
                            crate::request_log::udp_entry(&packet, reply.as_deref(), started);
                        entry.remote = Some(from.to_string());
                        log.record(&entry);
                    }
                });
                if futures::poll!(answer.as_mut()).is_pending() {
                    if waiting.len() < UDP_IN_FLIGHT {
                        waiting.push(answer);
                    } else {
                        tracing::debug!("udp tracker busy; datagram dropped");
                    }
                }
            }
        }
    }

    /// Whether `id` is a connection id this server gave `from` at `now` (unix seconds) or in
    /// the window before.
    fn valid_connection(&self, id: u64, from: &SocketAddr, now: u64) -> bool {
        let (cur, prev) =
            self.admission
                .connection_ids(&self.options.token_key, from.ip(), now / WINDOW_SECS);
        id == cur || id == prev
    }

    /// One datagram in, at most one out.
    pub(crate) async fn udp_datagram(&self, packet: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let request = match parse_request(packet) {
            Ok(r) => r,
            Err(e) => {
                self.stats.tracker_failure(Transport::Udp);
                return transaction_id(packet).map(|t| error_reply(t, &e.to_string()));
            }
        };
        match request {
            Request::Connect { transaction_id } => {
                let (id, _) = self.admission.connection_ids(
                    &self.options.token_key,
                    from.ip(),
                    now() / WINDOW_SECS,
                );
                Some(connect_reply(transaction_id, id))
            }
            Request::Announce(a) => {
                // One clock read for the connection id and the swarm.
                let now = now();
                if !self.valid_connection(a.connection_id, &from, now) {
                    return Some(error_reply(
                        a.transaction_id,
                        "invalid or expired connection id",
                    ));
                }
                if !self.allow_announce(from.ip()).await {
                    self.stats.rate_limited(Transport::Udp);
                    return Some(error_reply(a.transaction_id, "rate limited: slow down"));
                }
                let query = a.url_data.splitn(2, |&b| b == b'?').nth(1).unwrap_or(&[]);
                let token = crate::tracker_http::token_from_query_bytes(query);
                let admitted = match self.admitted(&a.info_hash, token.as_deref()).await {
                    Ok(r) => r,
                    Err(reason) => {
                        self.stats.tracker_failure(Transport::Udp);
                        return Some(error_reply(a.transaction_id, reason));
                    }
                };
                self.stats.announce(Transport::Udp);
                let peer = PeerAnnounce {
                    peer_id: a.peer_id,
                    addr: SocketAddr::new(from.ip(), a.port),
                    left: a.left,
                    event: a.event,
                    numwant: a.numwant,
                };
                // The peers go straight into the datagram as they are picked.
                // Room for the peers asked for and the server's seeder (the Redis store's
                // bounds are not known here: the defaults serve as the hint).
                let room = match self.tracker.in_process() {
                    Some(t) => t.config.numwant(&peer),
                    None => seedbucket_tracker::TrackerConfig::default().numwant(&peer),
                } + 1;
                let mut out = CompactAnnounceReply::new(a.transaction_id, from.is_ipv6(), room);
                let reply = match self
                    .swarm_announce_into(&admitted, &peer, a.downloaded, now, &mut out)
                    .await
                {
                    Ok(r) => r,
                    Err(reason) => return Some(error_reply(a.transaction_id, &reason)),
                };
                Some(out.finish(reply.interval, reply.incomplete, reply.complete))
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                if !self.valid_connection(connection_id, &from, now()) {
                    return Some(error_reply(
                        transaction_id,
                        "invalid or expired connection id",
                    ));
                }
                self.stats.scrape(Transport::Udp);
                let mut entries = Vec::with_capacity(info_hashes.len());
                for h in info_hashes {
                    // Scrape carries no URL data: private torrents answer zeros.
                    let sources = self.store.torrent_sources(&hex::encode(h)).await;
                    let first = sources.ok().and_then(|s| s.records.into_iter().next());
                    let entry = match first {
                        Some(rec) if !rec.private => match rec.swarm_key() {
                            Some(key) => self.scrape_entry(&rec, &key).await,
                            None => Default::default(),
                        },
                        _ => Default::default(),
                    };
                    entries.push(entry);
                }
                Some(scrape_reply(transaction_id, &entries))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use seedbucket_store::credentials::KeyRing;
    use seedbucket_store::{Store, StoreOptions};

    use crate::{S3Options, Seedbucket};

    /// The receive loop keeps up to `UDP_IN_FLIGHT` answers pending at once, each one this
    /// future: it once held the gateway's store futures inline (22 KiB each, 22 MiB per loop).
    /// The gateway's calls are now boxed where they are awaited, and so is the first look-up of
    /// an info-hash and token (about 1 KiB left); this keeps it that way.
    #[tokio::test]
    async fn a_pending_udp_answer_stays_small() {
        let dir = tempfile::tempdir().expect("tmp dir");
        let store = Store::open(StoreOptions::new(dir.path()))
            .await
            .expect("store");
        let app = Seedbucket::new(
            store,
            Arc::new(KeyRing::pushed(vec![])),
            S3Options::default(),
        );
        let from = "127.0.0.1:6969".parse().expect("address");
        let answer = app.udp_datagram(&[], from);
        let size = std::mem::size_of_val(&answer);
        assert!(size <= 2048, "a pending UDP answer takes {size} bytes");
        assert_eq!(
            answer.await,
            None,
            "an empty datagram has no transaction id to answer"
        );
    }
}

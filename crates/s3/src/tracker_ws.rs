//! The WebSocket tracker for browsers (WebTorrent), on the S3 port: a WebSocket upgrade of
//! `/announce` (the same path as the HTTP tracker, which LAN clients' SSRF rules accept) or of
//! `/_seedbucket/tracker/ws`. A private torrent's token comes in the upgrade URL's query
//! (`sb_token=`), as in its HTTP announce URL.
//!
//! The rules are the HTTP tracker's: only torrents this server issued, while one of their
//! objects still serves them; private ones need their token; announces share the per-address
//! rate limit. Browser swarms are kept apart from the TCP/UDP swarms
//! ([`seedbucket_tracker::browser`]). This node's sockets and their entries live in this process;
//! with several gateway nodes (`--redis`) the swarms are also shared
//! ([`seedbucket_tracker::browser::SharedBrowsers`]): counts and offer targets come from the
//! shared swarm, and offers and answers for browsers on other nodes are relayed to them.
//!
//! Bounds: a message is at most [`MAX_MESSAGE`] bytes (a larger one, or a malformed one, closes
//! that socket only); at most [`MAX_SOCKETS`] sockets, [`MAX_SOCKETS_PER_ADDRESS`] from one
//! address; a socket that sends nothing for [`IDLE`] is closed; each socket has a bounded outbox
//! and a peer that does not read loses the offers meant for it, never slowing others.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use s3s::Body;
use seedbucket_access_log::{Channel, Entry};
use seedbucket_tracker::browser::{BrowserAnnounce, BrowserSwarms, ConnId};
use seedbucket_wire::tracker::ws::{self, Request as WsRequest};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::Seedbucket;
use crate::stats::Transport;

/// Largest message a browser may send (an announce with 10 offers of a few KiB each fits).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// WebSocket tracker sockets open at once, all addresses.
pub const MAX_SOCKETS: usize = 10_000;
/// ... from one address.
pub const MAX_SOCKETS_PER_ADDRESS: usize = 64;
/// A socket that sends nothing this long is closed (browsers announce every 2 minutes).
pub const IDLE: Duration = Duration::from_secs(300);
/// How a rate-limited announce's failure reason starts.
const RATE_LIMITED: &str = "rate limited";
/// Messages queued towards one socket; past that, new ones for it are dropped.
const OUTBOX: usize = 64;

/// The browser swarms and the sockets of this node.
#[derive(Default)]
pub(crate) struct BrowserHub {
    swarms: Mutex<BrowserSwarms>,
    sockets: Mutex<HashMap<ConnId, mpsc::Sender<String>>>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    next_conn: AtomicU64,
}

impl BrowserHub {
    /// (swarms, browser peers) for metrics.
    pub fn stats(&self) -> (usize, usize) {
        self.swarms.lock().map(|s| s.stats()).unwrap_or_default()
    }

    pub fn sockets(&self) -> usize {
        self.sockets.lock().map(|s| s.len()).unwrap_or_default()
    }

    /// Bytes the browsers of all swarms report: (uploaded to each other, downloaded in all).
    pub fn reported_bytes(&self) -> (u64, u64) {
        let Ok(s) = self.swarms.lock() else {
            return (0, 0);
        };
        s.keys().iter().fold((0, 0), |(u, d), k| {
            let t = s.totals(k);
            (u + t.uploaded, d + t.downloaded)
        })
    }

    fn open(&self, ip: IpAddr) -> Option<(ConnId, mpsc::Receiver<String>)> {
        let mut per = self.per_address.lock().ok()?;
        let mut sockets = self.sockets.lock().ok()?;
        let from_here = per.get(&ip).copied().unwrap_or(0);
        if sockets.len() >= MAX_SOCKETS || from_here >= MAX_SOCKETS_PER_ADDRESS {
            return None;
        }
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(OUTBOX);
        sockets.insert(conn, tx);
        per.insert(ip, from_here + 1);
        Some((conn, rx))
    }

    /// Forgets a closed socket; returns the (swarm, peer id) entries it held.
    fn close(&self, conn: ConnId, ip: IpAddr) -> Vec<([u8; 20], [u8; 20])> {
        let gone = self
            .swarms
            .lock()
            .map(|mut s| s.drop_conn(conn))
            .unwrap_or_default();
        if let Ok(mut sockets) = self.sockets.lock() {
            sockets.remove(&conn);
        }
        if let Ok(mut per) = self.per_address.lock()
            && let Some(n) = per.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&ip);
            }
        }
        gone
    }

    /// This node's browser entries (swarm, peer id, seeding), for the shared swarms.
    pub fn entries(&self) -> Vec<([u8; 20], [u8; 20], bool)> {
        self.swarms.lock().map(|s| s.entries()).unwrap_or_default()
    }

    /// Sends `text` to the socket of the browser `to` of `swarm`, if it is connected here.
    pub fn deliver(&self, swarm: [u8; 20], to: [u8; 20], text: String) {
        let conn = self.swarms.lock().ok().and_then(|s| s.conn_of(&swarm, &to));
        if let Some(conn) = conn {
            self.send(conn, text);
        }
    }

    /// Queues a message for a socket; a full or closed outbox drops it.
    fn send(&self, conn: ConnId, text: String) {
        let tx = self.sockets.lock().ok().and_then(|s| s.get(&conn).cloned());
        if let Some(tx) = tx {
            let _ = tx.try_send(text);
        }
    }

    /// Drops browser entries whose sockets stopped announcing.
    pub fn expire(&self, now: u64) {
        if let Ok(mut s) = self.swarms.lock() {
            s.expire(now);
        }
    }
}

/// Whether a request asks to become a WebSocket (RFC 6455 upgrade).
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.method() == http::Method::GET
        && has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(text.to_owned()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Seedbucket {
    /// Answers a WebSocket upgrade of the tracker path with `101 Switching Protocols` and serves
    /// the socket once the connection is handed over.
    pub(crate) fn websocket_tracker(
        &self,
        mut req: Request<Incoming>,
        client: Option<SocketAddr>,
    ) -> Response<Body> {
        let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
        let version_ok = req
            .headers()
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
        let (Some(key), true) = (key, version_ok) else {
            let mut r = plain(
                StatusCode::BAD_REQUEST,
                "a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n",
            );
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return r;
        };
        let Some(client) = client else {
            return plain(StatusCode::BAD_REQUEST, "no client address\n");
        };
        let Some((conn, outbox)) = self.browsers.open(client.ip()) else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many WebSocket tracker connections\n",
            );
        };
        let token = crate::tracker_http::token_from_query(req.uri().query().unwrap_or(""))
            .map(std::borrow::Cow::into_owned);
        let upgrade = hyper::upgrade::on(&mut req);
        let app = self.clone();
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let config = WebSocketConfig::default()
                        .max_message_size(Some(MAX_MESSAGE))
                        .max_frame_size(Some(MAX_MESSAGE));
                    let socket = WebSocketStream::from_raw_socket(
                        hyper_util::rt::TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    app.serve_socket(socket, conn, outbox, client, token).await;
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
            let gone = app.browsers.close(conn, client.ip());
            if let Some(shared) = &app.shared_browsers
                && !gone.is_empty()
            {
                shared.leave(&gone).await;
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }

    async fn serve_socket<S>(
        &self,
        mut socket: WebSocketStream<S>,
        conn: ConnId,
        mut outbox: mpsc::Receiver<String>,
        client: SocketAddr,
        token: Option<String>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        loop {
            tokio::select! {
                out = outbox.recv() => {
                    let Some(text) = out else { break };
                    if socket.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                incoming = tokio::time::timeout(IDLE, socket.next()) => {
                    let message = match incoming {
                        Err(_) => {
                            tracing::debug!(client = %client, "idle WebSocket tracker socket closed");
                            break;
                        }
                        Ok(None) | Ok(Some(Err(_))) => break,
                        Ok(Some(Ok(m))) => m,
                    };
                    let text = match &message {
                        Message::Text(t) => t.as_str().to_owned(),
                        Message::Binary(b) => match std::str::from_utf8(b) {
                            Ok(t) => t.to_owned(),
                            Err(_) => break,
                        },
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                        Message::Close(_) => break,
                    };
                    let started = Instant::now();
                    let outcome = self.on_message(conn, client, token.as_deref(), &text).await;
                    let (replies, close, entry) = outcome;
                    for reply in replies {
                        if socket.send(Message::text(reply)).await.is_err() {
                            return;
                        }
                    }
                    let log = &self.options.access_log;
                    if log.is_on() && let Some(mut e) = entry {
                        e.remote = Some(client.to_string());
                        e.duration = started.elapsed();
                        e.bytes_in = text.len() as u64;
                        log.record(&e);
                    }
                    if close {
                        break;
                    }
                }
            }
        }
        let _ = socket.close(None).await;
    }

    /// One message from a browser: the replies to send it, whether to close the socket, and
    /// its access log line.
    async fn on_message(
        &self,
        conn: ConnId,
        client: SocketAddr,
        token: Option<&str>,
        text: &str,
    ) -> (Vec<String>, bool, Option<Entry>) {
        let request = match ws::parse_request(text) {
            Ok(r) => r,
            Err(e) => {
                self.stats.tracker_failure(Transport::WebSocket);
                let mut entry = Entry::new(Channel::TrackerWs, "malformed");
                entry.status = "closed".to_owned();
                return (
                    vec![ws::failure(&format!("malformed message: {e}"), None, None)],
                    true,
                    Some(entry),
                );
            }
        };
        match request {
            WsRequest::Announce(a) => {
                let mut entry = Entry::new(Channel::TrackerWs, "announce");
                entry.info_hash = Some(hex::encode(a.info_hash));
                let replies = match self.browser_announce(conn, client, token, &a).await {
                    Ok(replies) => {
                        entry.status = "ok".to_owned();
                        replies
                    }
                    Err(reason) => {
                        // Rate-limited announces are counted as such, not twice.
                        if !reason.starts_with(RATE_LIMITED) {
                            self.stats.tracker_failure(Transport::WebSocket);
                        }
                        entry.status = "failure".to_owned();
                        vec![ws::failure(&reason, Some("announce"), Some(&a.info_hash))]
                    }
                };
                (replies, false, Some(entry))
            }
            WsRequest::Scrape(hashes) => {
                let mut entry = Entry::new(Channel::TrackerWs, "scrape");
                if hashes.is_empty() {
                    entry.status = "failure".to_owned();
                    let reply = ws::failure("name the info_hash to scrape", Some("scrape"), None);
                    return (vec![reply], false, Some(entry));
                }
                self.stats.scrape(Transport::WebSocket);
                let mut files = Vec::new();
                for h in hashes {
                    let Ok(admitted) = self.admitted(&h, token).await else {
                        continue;
                    };
                    let Some(key) = admitted.swarm else {
                        continue;
                    };
                    let (complete, incomplete, downloaded) = self
                        .browsers
                        .swarms
                        .lock()
                        .map(|s| s.scrape(&key))
                        .unwrap_or_default();
                    files.push((
                        h,
                        ws::ScrapeCounts {
                            complete,
                            incomplete,
                            downloaded,
                        },
                    ));
                }
                entry.status = "ok".to_owned();
                (vec![ws::scrape_reply(&files)], false, Some(entry))
            }
        }
    }

    /// Records a browser's announce, hands its offers to other browsers of the swarm and relays
    /// its answer; returns the reply for the announcing socket itself.
    async fn browser_announce(
        &self,
        conn: ConnId,
        client: SocketAddr,
        token: Option<&str>,
        a: &ws::Announce,
    ) -> Result<Vec<String>, String> {
        // Answers are part of setting up a connection the tracker already admitted: they do
        // not count against the rate limit, announces do.
        let answer_only = a.answer.is_some() && a.offers.is_empty() && a.left.is_none();
        if !answer_only && !self.allow_announce(client.ip()).await {
            self.stats.rate_limited(Transport::WebSocket);
            return Err(format!("{RATE_LIMITED}: announce less often"));
        }
        let admitted = self
            .admitted(&a.info_hash, token)
            .await
            .map_err(str::to_owned)?;
        let rec = &admitted.rec;
        let key = admitted
            .swarm
            .ok_or_else(|| "internal error: bad info-hash record".to_owned())?;
        if !answer_only {
            self.stats.announce(Transport::WebSocket);
        }
        let event = a.event;
        let announce = BrowserAnnounce {
            peer_id: a.peer_id,
            conn,
            left: a.left,
            uploaded: a.uploaded,
            downloaded: a.downloaded,
            stopped: event == ws::Event::Stopped,
            completed: event == ws::Event::Completed,
        };
        let (counts, targets, answer_to, interval) = {
            let mut swarms = self
                .browsers
                .swarms
                .lock()
                .map_err(|_| "tracker state unavailable".to_owned())?;
            let counts = swarms
                .announce(key, &announce, unix_now())
                .map_err(|r| r.reason().to_owned())?;
            // With other nodes the shared swarm picks whom the offers go to (below).
            let targets = if self.shared_browsers.is_some() {
                Vec::new()
            } else {
                swarms.offer_targets(key, &a.peer_id, a.offers.len())
            };
            let answer_to = a
                .answer
                .as_ref()
                .and_then(|ans| swarms.conn_of(&key, &ans.to_peer_id));
            (counts, targets, answer_to, swarms.limits.interval)
        };
        // With other nodes (Redis): the shared swarm answers the counts and chooses whom the
        // offers go to, wherever they are connected.
        let (counts, remote_targets) = match &self.shared_browsers {
            Some(shared) if !answer_only => {
                let seeding = a.left == Some(0);
                let stopped = event == ws::Event::Stopped;
                match shared
                    .announce(key, a.peer_id, seeding, stopped, unix_now())
                    .await
                {
                    Ok(view) => {
                        let mut others: Vec<([u8; 20], String)> = view
                            .peers
                            .into_iter()
                            .filter(|(p, _)| *p != a.peer_id)
                            .collect();
                        {
                            use rand::seq::SliceRandom;
                            others.shuffle(&mut rand::rng());
                        }
                        others.truncate(a.offers.len());
                        ((view.seeders, view.leechers), Some(others))
                    }
                    Err(e) => {
                        // Not listed anywhere, then: take the local entry back too.
                        if let Ok(mut swarms) = self.browsers.swarms.lock() {
                            let _ = swarms.announce(
                                key,
                                &BrowserAnnounce {
                                    stopped: true,
                                    ..announce
                                },
                                unix_now(),
                            );
                        }
                        tracing::warn!(error = %e, "browser announce refused");
                        return Err(if e.0.contains("in use") {
                            e.0
                        } else {
                            "tracker state unavailable; try again later".to_owned()
                        });
                    }
                }
            }
            _ => (counts, None),
        };
        let finished = event == ws::Event::Completed
            || (event == ws::Event::Stopped
                && a.left == Some(0)
                && a.downloaded.is_some_and(|d| d > 0));
        if finished && !rec.bucket.is_empty() {
            self.count_finished(rec, key, a.peer_id).await;
        }
        match (&remote_targets, &self.shared_browsers) {
            (Some(chosen), Some(shared)) => {
                for (offer, (peer, node)) in a.offers.iter().zip(chosen) {
                    let text = ws::offer_message(&a.info_hash, &a.peer_id, offer);
                    if node == shared.node() {
                        self.browsers.deliver(key, *peer, text);
                    } else {
                        shared.relay(node, key, *peer, &text).await;
                    }
                }
            }
            _ => {
                for (offer, (_, target)) in a.offers.iter().zip(&targets) {
                    self.browsers
                        .send(*target, ws::offer_message(&a.info_hash, &a.peer_id, offer));
                }
            }
        }
        if let Some(answer) = &a.answer {
            let text = ws::answer_message(&a.info_hash, &a.peer_id, answer);
            match (answer_to, &self.shared_browsers) {
                (Some(target), _) => self.browsers.send(target, text),
                (None, Some(shared)) => {
                    if let Ok(Some(node)) = shared.node_of(key, answer.to_peer_id).await
                        && node != shared.node()
                    {
                        shared.relay(&node, key, answer.to_peer_id, &text).await;
                    }
                }
                (None, None) => {}
            }
        }
        if answer_only {
            return Ok(Vec::new());
        }
        Ok(vec![ws::announce_reply(
            &a.info_hash,
            counts.0,
            counts.1,
            interval,
        )])
    }
}

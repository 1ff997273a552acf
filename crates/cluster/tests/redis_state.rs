//! The Redis state against a real redis-server started on a free loopback port (Debian's
//! `redis-server`, installed by scripts/test.sh; the test fails if it is missing).

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use seedbucket_cluster::swarms::RedisSwarms;
use seedbucket_cluster::{Cluster, RedisLeases};
use seedbucket_store::cluster::Leases;
use seedbucket_tracker::{PeerAnnounce, SwarmStore, TrackerConfig};
use seedbucket_wire::tracker::http::Event;

struct Redis {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// redis-server on 127.0.0.1:`port`, without persistence, its files in `dir`.
fn spawn_redis_server(port: u16, dir: &std::path::Path) -> std::io::Result<Child> {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
}

fn redis() -> Redis {
    let dir = tempfile::tempdir().expect("tmp dir");
    let port = free_port();
    let child = spawn_redis_server(port, dir.path())
        .expect("redis-server must be installed (scripts/test.sh installs it)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Redis {
        child,
        url: format!("redis://127.0.0.1:{port}/"),
        _dir: dir,
    }
}

async fn store() -> (seedbucket_store::Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp dir");
    let s = seedbucket_store::Store::open(seedbucket_store::StoreOptions::new(dir.path()))
        .await
        .expect("store");
    (s, dir)
}

async fn swarms(
    url: &str,
    config: TrackerConfig,
    rate: u32,
    seeder: Option<SocketAddr>,
) -> std::sync::Arc<RedisSwarms> {
    let (s, dir) = store().await;
    std::mem::forget(dir);
    Cluster::start(url, &s, config, rate, seeder)
        .await
        .expect("cluster")
        .swarms
        .clone()
}

/// The real clock in unix seconds (scrapes count peers seen within the TTL of it).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

fn peer(id: u8, left: u64, event: Event) -> PeerAnnounce {
    PeerAnnounce {
        peer_id: [id; 20],
        addr: SocketAddr::new(IpAddr::from([127, 0, 0, id]), 6000 + u16::from(id)),
        left,
        event,
        numwant: None,
    }
}

#[tokio::test]
async fn two_nodes_share_one_swarm() {
    let r = redis();
    let a = swarms(&r.url, TrackerConfig::default(), 0, None).await;
    let b = swarms(&r.url, TrackerConfig::default(), 0, None).await;
    let key = [9u8; 20];
    // Scrape counts peers seen within the TTL of the real clock.
    let t0 = unix_seconds();
    let first = a
        .announce(key, &peer(1, 100, Event::Started), t0)
        .await
        .unwrap();
    assert!(first.peers.is_empty());
    let second = b
        .announce(key, &peer(2, 0, Event::Started), t0 + 1)
        .await
        .unwrap();
    assert_eq!(second.peers, vec![(peer(1, 0, Event::None).addr, [1; 20])]);
    assert_eq!((second.complete, second.incomplete), (1, 1));
    // A seeder is not handed other seeders.
    b.announce(key, &peer(3, 0, Event::Started), t0 + 2)
        .await
        .unwrap();
    let seeding = a
        .announce(key, &peer(2, 0, Event::None), t0 + 3)
        .await
        .unwrap();
    assert_eq!(seeding.peers.len(), 1, "{:?}", seeding.peers);
    // Completed and stopped.
    a.announce(key, &peer(1, 0, Event::Completed), t0 + 4)
        .await
        .unwrap();
    let s = b.scrape(&key).await.unwrap();
    assert_eq!((s.complete, s.incomplete, s.downloaded), (3, 0, 1));
    b.announce(key, &peer(1, 0, Event::Stopped), t0 + 5)
        .await
        .unwrap();
    let s = a.scrape(&key).await.unwrap();
    assert_eq!(s.complete, 2);
}

#[tokio::test]
async fn stale_peers_are_pruned_and_swarms_are_bounded() {
    let r = redis();
    let config = TrackerConfig {
        peer_ttl: 60,
        max_peers_per_torrent: 2,
        ..TrackerConfig::default()
    };
    let a = swarms(&r.url, config, 0, None).await;
    let key = [4u8; 20];
    a.announce(key, &peer(1, 5, Event::Started), 1000)
        .await
        .unwrap();
    a.announce(key, &peer(2, 5, Event::Started), 1001)
        .await
        .unwrap();
    // A full swarm makes room for a newcomer by evicting its stalest entry (peer 1).
    let full = a
        .announce(key, &peer(3, 5, Event::Started), 1002)
        .await
        .unwrap();
    assert!(full.warning.is_none());
    assert_eq!((full.complete, full.incomplete), (0, 2));
    assert_eq!(full.peers, vec![(peer(2, 0, Event::None).addr, [2; 20])]);
    // One entry per ip:port: a new peer id from peer 3's address replaces it.
    let mut same_addr = peer(3, 5, Event::Started);
    same_addr.peer_id = [33; 20];
    let replaced = a.announce(key, &same_addr, 1003).await.unwrap();
    assert_eq!((replaced.complete, replaced.incomplete), (0, 2));
    let listed = a
        .announce(key, &peer(2, 5, Event::None), 1004)
        .await
        .unwrap();
    assert_eq!(listed.peers, vec![(same_addr.addr, [33; 20])]);
    // 61 s later peers 2 and 3 are gone, and peer 1 gets back in alone.
    let later = a
        .announce(key, &peer(1, 5, Event::Started), 1065)
        .await
        .unwrap();
    assert!(later.warning.is_none());
    assert_eq!((later.complete, later.incomplete), (0, 1));
    assert!(later.peers.is_empty());
    // Every key of the swarm expires by itself.
    let client = redis::Client::open(r.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("sb:{*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let ttl: i64 = redis::cmd("TTL").arg(&k).query_async(&mut c).await.unwrap();
        assert!(ttl > 0 && ttl <= 60, "{k} ttl {ttl}");
    }
}

#[tokio::test]
async fn admissions_rate_limits_and_node_seeders() {
    let r = redis();
    let seeder_a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let seeder_b: SocketAddr = "127.0.0.1:7002".parse().unwrap();
    let a = swarms(&r.url, TrackerConfig::default(), 5, Some(seeder_a)).await;
    let b = swarms(&r.url, TrackerConfig::default(), 5, Some(seeder_b)).await;
    let ip: IpAddr = "127.0.0.9".parse().unwrap();
    a.admit([1; 20], ip, "AKIAEXAMPLE").await.unwrap();
    assert_eq!(
        b.admission([1; 20], ip).await.unwrap().as_deref(),
        Some("AKIAEXAMPLE")
    );
    assert_eq!(b.admission([2; 20], ip).await.unwrap(), None);
    // Rate 5/s, burst 10, shared by both nodes.
    let now = 1_000_000;
    let mut allowed = 0;
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        allowed += usize::from(node.allow_announce(ip, now).await);
    }
    assert_eq!(allowed, 10);
    assert!(a.allow_announce(ip, now + 400).await); // 2 tokens back
    // Both nodes' seeders, each node's own first, after a heartbeat.
    tokio::time::sleep(seedbucket_cluster::HEARTBEAT + Duration::from_millis(500)).await;
    assert_eq!(a.server_seeders(), vec![seeder_a, seeder_b]);
    assert_eq!(b.server_seeders(), vec![seeder_b, seeder_a]);
}

#[tokio::test]
async fn leases_have_one_holder_and_expire() {
    let r = redis();
    let client = redis::Client::open(r.url.as_str()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let leases = RedisLeases::for_connection(conn);
    let ttl = Duration::from_millis(300);
    assert!(leases.try_take("hash:x", "a", ttl).await.unwrap());
    assert!(!leases.try_take("hash:x", "b", ttl).await.unwrap());
    assert!(!leases.renew("hash:x", "b", ttl).await.unwrap());
    assert!(leases.renew("hash:x", "a", ttl).await.unwrap());
    leases.release("hash:x", "b").await; // not b's to release
    assert!(!leases.try_take("hash:x", "b", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await; // a died: the lease runs out
    assert!(leases.try_take("hash:x", "b", ttl).await.unwrap());
    leases.release("hash:x", "b").await;
    assert!(leases.try_take("hash:x", "c", ttl).await.unwrap());
}

#[tokio::test]
async fn redis_down_is_a_clear_error_and_recovers() {
    let mut r = redis();
    let a = swarms(&r.url, TrackerConfig::default(), 0, None).await;
    let key = [5u8; 20];
    a.announce(key, &peer(1, 5, Event::Started), 1000)
        .await
        .unwrap();
    let _ = r.child.kill();
    let _ = r.child.wait();
    let e = a
        .announce(key, &peer(2, 5, Event::Started), 1001)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unavailable"), "{e}");
    // The same port again, empty: the swarm refills from the next announces.
    let port = r
        .url
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    r.child = spawn_redis_server(port, r._dir.path()).unwrap();
    let mut recovered = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(reply) = a.announce(key, &peer(2, 5, Event::Started), 1002).await {
            recovered = Some(reply);
            break;
        }
    }
    let reply = recovered.expect("announces work again once redis is back");
    assert_eq!(reply.incomplete, 1);
}

#[tokio::test]
async fn one_address_holds_at_most_sixteen_entries_of_a_swarm() {
    let r = redis();
    let a = swarms(&r.url, TrackerConfig::default(), 0, None).await;
    let key = [5u8; 20];
    let from = |port: u16| PeerAnnounce {
        peer_id: [port as u8; 20],
        addr: SocketAddr::new(IpAddr::from([10, 0, 0, 1]), port),
        left: 5,
        event: Event::Started,
        numwant: Some(200),
    };
    // A real peer from elsewhere, then 40 entries from one address.
    a.announce(key, &peer(1, 5, Event::Started), 1000)
        .await
        .unwrap();
    for port in 0..40u16 {
        a.announce(key, &from(7000 + port), 1001 + u64::from(port))
            .await
            .unwrap();
    }
    let listed = a
        .announce(key, &peer(1, 5, Event::None), 1100)
        .await
        .unwrap();
    assert_eq!((listed.complete, listed.incomplete), (0, 17));
    // The flooder's newest 16 are kept (its stalest were evicted), and the real peer stays.
    let ports: std::collections::BTreeSet<u16> =
        listed.peers.iter().map(|(a, _)| a.port()).collect();
    assert_eq!(ports, (7024..7040).collect());
}

/// The per-address cap evicts the address's stalest entry by its last announce: a refreshed
/// entry is younger than the ones not heard from, one announced again within the same second
/// keeps its age, and a stopped entry no longer counts.
#[tokio::test]
async fn an_address_gives_up_its_stalest_entry_as_last_announced() {
    let r = redis();
    let a = swarms(&r.url, TrackerConfig::default(), 0, None).await;
    let key = [6u8; 20];
    let from = |port: u16, event: Event| PeerAnnounce {
        peer_id: [port as u8; 20],
        addr: SocketAddr::new(IpAddr::from([10, 0, 0, 2]), port),
        left: 5,
        event,
        numwant: Some(200),
    };
    // The ports the answer to `port`'s announce at `at` lists: the swarm but the caller.
    let listed = async |port: u16, event: Event, at: u64| {
        let r = a.announce(key, &from(port, event), at).await.unwrap();
        r.peers
            .iter()
            .map(|(a, _)| a.port())
            .collect::<std::collections::BTreeSet<u16>>()
    };
    let ports = |range: std::ops::Range<u16>, more: &[u16]| {
        range
            .chain(more.iter().copied())
            .collect::<std::collections::BTreeSet<u16>>()
    };
    // 16 entries, one per second: 7000 is the stalest, 7015 the newest.
    for port in 0..16u16 {
        listed(7000 + port, Event::Started, 2000 + u64::from(port)).await;
    }
    // 7000 announces again (twice in one second): now it is the newest, 7001 the stalest,
    // which the next newcomer evicts.
    listed(7000, Event::None, 2020).await;
    listed(7000, Event::None, 2020).await;
    assert_eq!(
        listed(7100, Event::Started, 2021).await,
        ports(7002..7016, &[7000])
    );
    // 7002 stops: the address holds 15 entries, so the next one evicts nothing.
    listed(7002, Event::Stopped, 2022).await;
    assert_eq!(
        listed(7101, Event::Started, 2023).await,
        ports(7003..7016, &[7000, 7100])
    );
    // Full again (16): one more evicts 7003, now the stalest.
    assert_eq!(
        listed(7102, Event::Started, 2024).await,
        ports(7004..7016, &[7000, 7100, 7101])
    );
}

/// Announces that arrive together go to Redis in shared batches (one script call per swarm):
/// each must still be applied once, counted, and answered from its own swarm, also when Redis
/// has forgotten the script in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_announces_on_many_swarms_are_each_applied_once() {
    let r = redis();
    let a = swarms(&r.url, TrackerConfig::default(), 0, None).await;
    let swarm_count = 5u8;
    let per_swarm = 40u8;
    for round in 0..2u64 {
        if round == 1 {
            let client = redis::Client::open(r.url.as_str()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for s in 0..swarm_count {
            for p in 0..per_swarm {
                let a = a.clone();
                tasks.spawn(async move {
                    let key = [100 + s; 20];
                    let announce = PeerAnnounce {
                        peer_id: [p; 20],
                        // One address per peer, so the per-address cap does not apply.
                        addr: SocketAddr::new(IpAddr::from([10, s, p, 1]), 7000 + u16::from(p)),
                        left: if p % 4 == 0 { 0 } else { 10 },
                        event: if round == 0 {
                            Event::Started
                        } else {
                            Event::Completed
                        },
                        numwant: Some(200),
                    };
                    let reply = a.announce(key, &announce, 5000 + round).await;
                    (s, p, reply)
                });
            }
        }
        while let Some(done) = tasks.join_next().await {
            let (s, p, reply) = done.unwrap();
            let reply = reply.unwrap_or_else(|e| panic!("swarm {s} peer {p}: {e}"));
            let me = SocketAddr::new(IpAddr::from([10, s, p, 1]), 7000 + u16::from(p));
            assert!(
                reply.peers.iter().all(|(addr, _)| *addr != me
                    && addr.ip().to_string().starts_with(&format!("10.{s}."))),
                "swarm {s} got a peer of another swarm or itself: {:?}",
                reply.peers
            );
        }
    }
    for s in 0..swarm_count {
        let key = [100 + s; 20];
        let reply = a
            .announce(key, &peer(200, 10, Event::Started), 5002)
            .await
            .unwrap();
        assert_eq!(
            (reply.complete, reply.incomplete),
            (
                u32::from(per_swarm / 4),
                u32::from(per_swarm - per_swarm / 4) + 1
            )
        );
        assert_eq!(reply.peers.len(), usize::from(per_swarm), "swarm {s}");
    }
}

/// One peer's announces queued together land in one script call, where peers already in the
/// swarm are written after the loop: the last announce must still be the one that counts, a
/// `stopped` in between must not be undone by an earlier pending write, and a peer evicted in
/// the batch must stay out.
#[tokio::test]
async fn a_peers_announces_in_one_batch_apply_in_order() {
    let r = redis();
    let config = TrackerConfig {
        max_peers_per_address_per_torrent: 2,
        ..TrackerConfig::default()
    };
    let a = swarms(&r.url, config, 0, None).await;
    let key = [9u8; 20];
    let x = |left: u64, event: Event| PeerAnnounce {
        numwant: Some(0),
        ..peer(1, left, event)
    };
    let other = |id: u8| PeerAnnounce {
        numwant: Some(0),
        ..peer(id, 10, Event::None)
    };
    for (last, expected) in [
        (x(0, Event::None), (1, 4)),     // ends seeding
        (x(10, Event::None), (0, 5)),    // ends leeching
        (x(10, Event::Stopped), (0, 4)), // ends gone
    ] {
        // x and four others are in the swarm; then, queued together: x's announces flipping
        // between seeding, leeching and stopped, the others re-announcing, then x's last one.
        for id in 1..=5 {
            a.announce(key, &other(id), 2000).await.unwrap();
        }
        let mut batch = Vec::new();
        for k in 0..24u64 {
            let event = match k % 3 {
                0 => Event::None,
                1 => Event::Stopped,
                _ => Event::Started,
            };
            batch.push(x(if k % 2 == 0 { 0 } else { 10 }, event));
            batch.push(other(2 + (k % 4) as u8));
        }
        batch.push(last);
        let replies =
            futures::future::join_all(batch.iter().map(|p| a.announce(key, p, 2001))).await;
        assert!(replies.iter().all(Result::is_ok));
        let seen = a.announce(key, &other(6), 2002).await.unwrap();
        let (complete, incomplete) = expected;
        assert_eq!(
            (seen.complete, seen.incomplete),
            (complete, incomplete + 1),
            "after {:?}",
            batch.last().map(|p| (p.left, p.event))
        );
        // Back to a known state: x and the sixth peer stop.
        a.announce(key, &x(10, Event::Stopped), 2003).await.unwrap();
        let gone = PeerAnnounce {
            event: Event::Stopped,
            ..other(6)
        };
        a.announce(key, &gone, 2003).await.unwrap();
    }
    // A refresh and then a `stopped` of the same peer in one batch: the peer is gone.
    a.announce(key, &x(0, Event::Started), 2500).await.unwrap();
    let batch = [x(0, Event::None), other(2), x(10, Event::Stopped)];
    let replies = futures::future::join_all(batch.iter().map(|p| a.announce(key, p, 2501))).await;
    assert!(replies.iter().all(Result::is_ok));
    let seen = a.announce(key, &other(3), 2502).await.unwrap();
    assert_eq!((seen.complete, seen.incomplete), (0, 4));
    // Eviction inside a batch: one address's third entry evicts its stalest, counting the
    // re-announces queued before it (7001's refresh makes 7002 the stalest). The test's
    // runtime has one thread, so everything queued in one poll of `join_all` is one batch.
    let from = |port: u16| PeerAnnounce {
        peer_id: [port as u8; 20],
        addr: SocketAddr::new(IpAddr::from([10, 9, 9, 9]), port),
        left: 10,
        event: Event::None,
        numwant: Some(0),
    };
    a.announce(key, &from(7001), 3000).await.unwrap();
    a.announce(key, &from(7002), 3001).await.unwrap();
    let batch = [from(7001), from(7003)];
    let replies = futures::future::join_all(batch.iter().map(|p| a.announce(key, p, 3002))).await;
    assert!(replies.iter().all(Result::is_ok));
    let mut listing = other(7);
    listing.numwant = Some(200);
    let seen = a.announce(key, &listing, 3003).await.unwrap();
    let ports: std::collections::BTreeSet<u16> = seen
        .peers
        .iter()
        .filter(|(addr, _)| addr.ip() == IpAddr::from([10, 9, 9, 9]))
        .map(|(addr, _)| addr.port())
        .collect();
    assert_eq!(ports, [7001, 7003].into(), "{ports:?}");
}

#[tokio::test]
async fn a_large_swarms_announces_are_answered_from_the_sample_while_redis_takes_writes() {
    let mut r = redis();
    let a = swarms(&r.url, TrackerConfig::default(), 0, None).await;
    let key = [12u8; 20];
    let t0 = unix_seconds();
    // Asking for 2 peers, a swarm of 4 is too large for one reply: its sample is kept.
    let asking = |id: u8, event: Event| PeerAnnounce {
        numwant: Some(2),
        ..peer(id, 10, event)
    };
    for id in 1..=4 {
        a.announce(key, &asking(id, Event::Started), t0)
            .await
            .unwrap();
    }
    // A fifth peer is answered from the sample (four peers: it is not counted yet, nor listed)
    // without waiting for its write...
    let fifth = a
        .announce(key, &asking(5, Event::Started), t0)
        .await
        .unwrap();
    assert_eq!((fifth.complete, fifth.incomplete), (0, 4));
    assert_eq!(fifth.peers.len(), 2);
    assert!(
        fifth
            .peers
            .iter()
            .all(|(addr, _)| *addr != asking(5, Event::None).addr)
    );
    // ... which follows at once, in order: Redis holds the five.
    let client = redis::Client::open(r.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let peers_key = format!("sb:{{{}}}:peers", hex::encode(key));
    let mut held = 0;
    for _ in 0..50 {
        held = redis::cmd("ZCARD")
            .arg(&peers_key)
            .query_async::<u64>(&mut c)
            .await
            .unwrap();
        if held == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(held, 5, "the fifth peer's write reached redis");
    // Redis gone: once a write has failed, announces wait for their own writes again, and
    // fail with the tracker's reason, sample or not.
    let _ = r.child.kill();
    let _ = r.child.wait();
    let mut failed = false;
    for id in 6..50 {
        if a.announce(key, &asking(id, Event::Started), t0)
            .await
            .is_err()
        {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(failed, "announces fail once redis is down");
    for id in 50..55 {
        let e = a
            .announce(key, &asking(id, Event::None), t0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unavailable"), "{e}");
    }
}

#[tokio::test]
async fn a_repeated_announce_within_its_second_is_not_rewritten_but_a_change_is() {
    let r = redis();
    let a = swarms(&r.url, TrackerConfig::default(), 0, None).await;
    let key = [13u8; 20];
    let t0 = unix_seconds();
    let asking = |id: u8, left: u64, event: Event| PeerAnnounce {
        numwant: Some(2),
        ..peer(id, left, event)
    };
    // A swarm of four is too large for a reply of two: its sample answers from here on.
    for id in 1..=4 {
        a.announce(key, &asking(id, 10, Event::Started), t0)
            .await
            .unwrap();
    }
    let client = redis::Client::open(r.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let h = hex::encode(key);
    let (peers_key, addrs_key) = (format!("sb:{{{h}}}:peers"), format!("sb:{{{h}}}:addrs"));
    let member = seedbucket_cluster::swarms::encode_addr(asking(5, 0, Event::None).addr);
    let entry_of_5 = async |c: &mut redis::aio::MultiplexedConnection| {
        let mut entry: Option<Vec<u8>> = None;
        for _ in 0..50 {
            entry = redis::cmd("HGET")
                .arg(&addrs_key)
                .arg(&member)
                .query_async(c)
                .await
                .unwrap();
            if entry.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        entry
    };
    a.announce(key, &asking(5, 10, Event::Started), t0)
        .await
        .unwrap();
    assert_eq!(
        entry_of_5(&mut c).await,
        Some(seedbucket_cluster::swarms::encode_entry(false, &[5; 20]))
    );
    // Mark the entry in Redis: a plain re-announce within the same second, with nothing
    // changed, leaves it as it is (it would write the same entry and score again)...
    let _: () = redis::cmd("HSET")
        .arg(&addrs_key)
        .arg(&member)
        .arg("marked")
        .query_async(&mut c)
        .await
        .unwrap();
    a.announce(key, &asking(5, 10, Event::None), t0)
        .await
        .unwrap();
    // (a write queued before this peer's own next one would land first: wait for an announce
    // that is answered only once written)
    a.announce(key, &asking(6, 10, Event::Started), t0)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(entry_of_5(&mut c).await, Some(b"marked".to_vec()));
    // ... but one that changes something is written: finished, it is a seeder.
    a.announce(key, &asking(5, 0, Event::None), t0)
        .await
        .unwrap();
    let mut seeding = None;
    for _ in 0..50 {
        seeding = entry_of_5(&mut c).await;
        if seeding != Some(b"marked".to_vec()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seeding,
        Some(seedbucket_cluster::swarms::encode_entry(true, &[5; 20]))
    );
    // The next second, the same announce is written again (its score moves on).
    a.announce(key, &asking(5, 0, Event::None), t0 + 1)
        .await
        .unwrap();
    let mut score = 0;
    for _ in 0..50 {
        score = redis::cmd("ZSCORE")
            .arg(&peers_key)
            .arg(&member)
            .query_async::<u64>(&mut c)
            .await
            .unwrap();
        if score == t0 + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(score, t0 + 1);
}

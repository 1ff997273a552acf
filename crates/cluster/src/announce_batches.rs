//! Announces from many clients at once, sent to Redis together ([`AnnounceBatches`]).
//!
//! Sent one script call and one `HRANDFIELD` per announce, a node spent more on the round trips
//! and on parsing replies than on anything else, and Redis more on starting scripts than on
//! running them. Here announces queue, and a sender takes everything queued (up to
//! [`MAX_BATCH`] announces) and sends it as one pipeline, with at most [`IN_FLIGHT`] pipelines
//! out at once: a batch grows while the others are out, and an announce on an idle node goes
//! out at once. In a pipeline, each swarm gets one script call for all its announces (a swarm's
//! keys share a hash tag, so that is still one shard in a Redis Cluster) and at most one
//! `HRANDFIELD`, whose peer list all of them pick from.
//!
//! An announce is answered once its own write is in Redis ([`AnnounceBatches::announce`]), so a
//! Redis that is down fails exactly the announces that needed it; except that an announce the
//! node can answer from what it already holds (a large swarm's recent sample) may be queued
//! without waiting ([`AnnounceBatches::announce_later`]) while the last pipeline succeeded
//! ([`AnnounceBatches::healthy`]). Once a pipeline fails, every announce waits for its own write
//! again, until one succeeds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis::Value;
use redis::aio::ConnectionManager;
use seedbucket_tracker::Unavailable;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::swarms::{ScriptReply, parse_announce_reply, swarm_keys};

/// Announces in one pipeline, at most.
pub(crate) const MAX_BATCH: usize = 256;
/// Pipelines sent and not yet answered, at most.
pub(crate) const IN_FLIGHT: usize = 4;
/// Announces waiting for a pipeline, at most; past that, callers wait.
const QUEUE: usize = 4096;

/// One announce as the swarm script takes it.
pub(crate) struct Announce {
    pub(crate) info_hash: [u8; 20],
    /// The peer's address ([`crate::swarms::encode_addr`]).
    pub(crate) member: Vec<u8>,
    /// Seeding flag and peer id ([`crate::swarms::encode_entry`]).
    pub(crate) entry: Vec<u8>,
    pub(crate) event: &'static str,
    /// Unix seconds.
    pub(crate) now: u64,
    /// Peers to read from the swarm for its answer (0: none).
    pub(crate) ask: usize,
}

/// The limits every swarm script call carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SwarmLimits {
    pub(crate) peer_ttl: u64,
    pub(crate) max_peers: usize,
    pub(crate) max_per_address: usize,
}

struct Queued {
    announce: Announce,
    /// Where its answer goes; `None` for an announce queued without waiting for one.
    reply: Option<oneshot::Sender<Result<ScriptReply, Unavailable>>>,
}

impl Queued {
    fn answer(self, answer: Result<ScriptReply, Unavailable>) {
        if let Some(reply) = self.reply {
            let _ = reply.send(answer);
        }
    }
}

/// The queue of announces waiting to be sent; its sender task ends when this is dropped.
pub(crate) struct AnnounceBatches {
    queue: mpsc::Sender<Queued>,
    /// Whether the last pipeline's writes all went in (no pipeline yet: assumed so).
    healthy: Arc<AtomicBool>,
    /// Pipelines that failed so far.
    failures: Arc<AtomicU64>,
}

impl AnnounceBatches {
    /// Starts the sender task. `script` (the swarm script) is loaded into Redis when Redis does
    /// not know it.
    pub(crate) fn start(
        conn: ConnectionManager,
        script: redis::Script,
        limits: SwarmLimits,
    ) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let healthy = Arc::new(AtomicBool::new(true));
        let failures = Arc::new(AtomicU64::new(0));
        let state = (healthy.clone(), failures.clone());
        tokio::spawn(send_batches(conn, script, limits, waiting, state));
        Self {
            queue,
            healthy,
            failures,
        }
    }

    /// Whether the last pipeline's writes all went in.
    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// How many pipelines failed so far: a write queued before this number moved may be lost.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Applies `announce` in the next pipeline; the reply has the swarm's counts after it and
    /// the peers read for it (shared with the other announces of its swarm in that pipeline).
    pub(crate) async fn announce(&self, announce: Announce) -> Result<ScriptReply, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(announce, Some(reply)).await?;
        answer
            .await
            .map_err(|_| Unavailable("redis: the announce batch was lost".into()))?
    }

    /// Queues `announce` for the next pipeline without waiting for it to be written (only
    /// for its queue place, when the queue is full). Its write is applied in order with the
    /// announces queued before and after it; if that write fails, the pipeline's failure
    /// turns [`Self::healthy`] false.
    pub(crate) async fn announce_later(&self, announce: Announce) -> Result<(), Unavailable> {
        self.enqueue(announce, None).await
    }

    /// Queues `announce`; `reply` gets its answer once its pipeline is answered.
    async fn enqueue(
        &self,
        announce: Announce,
        reply: Option<oneshot::Sender<Result<ScriptReply, Unavailable>>>,
    ) -> Result<(), Unavailable> {
        self.queue
            .send(Queued { announce, reply })
            .await
            .map_err(|_| Unavailable("redis: the announce queue is closed".into()))
    }
}

async fn send_batches(
    conn: ConnectionManager,
    script: redis::Script,
    limits: SwarmLimits,
    mut waiting: mpsc::Receiver<Queued>,
    (healthy, failures): (Arc<AtomicBool>, Arc<AtomicU64>),
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Taking a slot before the announces lets the queue grow while every slot is out.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let (conn, script) = (conn.clone(), script.clone());
        let (healthy, failures) = (healthy.clone(), failures.clone());
        tokio::spawn(async move {
            let written = send(conn, &script, limits, by_swarm(batch)).await;
            if !written {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            healthy.store(written, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// The announces of one swarm in a batch, in the order they came.
type SwarmGroup = Vec<Queued>;

fn by_swarm(batch: Vec<Queued>) -> Vec<SwarmGroup> {
    let mut index: HashMap<[u8; 20], usize> = HashMap::new();
    let mut groups: Vec<SwarmGroup> = Vec::new();
    for q in batch {
        match index.get(&q.announce.info_hash) {
            Some(&i) => groups[i].push(q),
            None => {
                index.insert(q.announce.info_hash, groups.len());
                groups.push(vec![q]);
            }
        }
    }
    groups
}

/// The commands for one swarm: the script call with every announce, then `HRANDFIELD` if any
/// of them wants peers.
fn commands(script: &redis::Script, limits: SwarmLimits, group: &SwarmGroup) -> Vec<redis::Cmd> {
    let Some(first) = group.first() else {
        return Vec::new();
    };
    let keys = swarm_keys(&first.announce.info_hash);
    let now = group.iter().map(|q| q.announce.now).max().unwrap_or(0);
    let mut call = redis::cmd("EVALSHA");
    call.arg(script.get_hash())
        .arg(keys.len())
        .arg(&keys[..])
        .arg(now)
        .arg(limits.peer_ttl)
        .arg(limits.max_peers)
        .arg(limits.max_per_address);
    for q in group {
        call.arg(&q.announce.member)
            .arg(&q.announce.entry)
            .arg(q.announce.event);
    }
    let mut out = vec![call];
    let ask = group.iter().map(|q| q.announce.ask).max().unwrap_or(0);
    if ask > 0 {
        let mut pick = redis::cmd("HRANDFIELD");
        pick.arg(&keys[2]).arg(ask).arg("WITHVALUES");
        out.push(pick);
    }
    out
}

/// Sends one batch and answers each announce; true if every swarm's write went in. Swarms whose
/// script Redis did not know (a new or restarted Redis) are sent once more after loading it;
/// their `HRANDFIELD` only read, so nothing is applied twice.
async fn send(
    mut conn: ConnectionManager,
    script: &redis::Script,
    limits: SwarmLimits,
    groups: Vec<SwarmGroup>,
) -> bool {
    let mut pending = groups;
    let mut loaded = false;
    let mut written = true;
    loop {
        let commands: Vec<Vec<redis::Cmd>> = pending
            .iter()
            .map(|g| commands(script, limits, g))
            .collect();
        let counts: Vec<usize> = commands.iter().map(Vec::len).collect();
        let values = match query(&mut conn, commands).await {
            Ok(v) => v,
            Err(e) => {
                answer_all(pending, &e);
                return false;
            }
        };
        let mut values = values.into_iter();
        let mut again = Vec::new();
        for (group, count) in pending.into_iter().zip(counts) {
            let mine: Vec<Value> = values.by_ref().take(count).collect();
            if !loaded && mine.first().is_some_and(is_noscript) {
                again.push(group);
                continue;
            }
            match reply_of(mine, count) {
                Ok(reply) => {
                    for q in group {
                        q.answer(Ok(reply.clone()));
                    }
                }
                Err(e) => {
                    written = false;
                    answer_all(vec![group], &e);
                }
            }
        }
        if again.is_empty() {
            return written;
        }
        if let Err(e) = script.load_async(&mut conn).await {
            answer_all(again, &unavailable(e));
            return false;
        }
        loaded = true;
        pending = again;
    }
}

fn answer_all(groups: Vec<SwarmGroup>, e: &Unavailable) {
    for q in groups.into_iter().flatten() {
        q.answer(Err(e.clone()));
    }
}

/// A swarm's counts and peers from its commands' replies (a refused command is Redis's error,
/// as the tracker's failure reason).
fn reply_of(values: Vec<Value>, expected: usize) -> Result<ScriptReply, Unavailable> {
    if values.len() != expected {
        return Err(Unavailable("redis: fewer replies than commands".into()));
    }
    let mut values = values.into_iter();
    let counts = strings(values.next())?;
    let picked = strings(values.next())?;
    parse_announce_reply(&counts, &picked)
}

fn strings(v: Option<Value>) -> Result<Vec<Vec<u8>>, Unavailable> {
    match v {
        None | Some(Value::Nil) => Ok(Vec::new()),
        Some(Value::ServerError(e)) => Err(Unavailable(format!("redis: {e}"))),
        Some(v) => redis::from_redis_value(v).map_err(|e| Unavailable(format!("redis: {e}"))),
    }
}

async fn query(
    conn: &mut ConnectionManager,
    commands: Vec<Vec<redis::Cmd>>,
) -> Result<Vec<Value>, Unavailable> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for c in commands.into_iter().flatten() {
        pipe.add_command(c);
    }
    pipe.query_async(conn).await.map_err(unavailable)
}

fn is_noscript(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript))
}

pub(crate) fn unavailable(e: redis::RedisError) -> Unavailable {
    Unavailable(format!("redis: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(hash: u8, port: u8) -> Queued {
        Queued {
            announce: Announce {
                info_hash: [hash; 20],
                member: vec![127, 0, 0, 1, 0, port],
                entry: crate::swarms::encode_entry(false, &[port; 20]),
                event: "",
                now: u64::from(port),
                ask: usize::from(port) * 10,
            },
            reply: None,
        }
    }

    #[test]
    fn a_batch_is_one_script_call_and_one_peer_read_per_swarm() {
        let groups = by_swarm(vec![queued(1, 1), queued(2, 2), queued(1, 3), queued(1, 0)]);
        let members: Vec<Vec<u8>> = groups
            .iter()
            .map(|g| g.iter().map(|q| q.announce.member[5]).collect())
            .collect();
        assert_eq!(members, vec![vec![1, 3, 0], vec![2]]);
        let limits = SwarmLimits {
            peer_ttl: 60,
            max_peers: 100,
            max_per_address: 4,
        };
        let script = redis::Script::new("return 1");
        let cmds = commands(&script, limits, &groups[0]);
        assert_eq!(cmds.len(), 2);
        let packed = String::from_utf8_lossy(&cmds[0].get_packed_command()).into_owned();
        // 2 + 5 keys + 4 limits (now is the latest of the three) + 3 announces of 3 arguments
        assert!(packed.starts_with("*21\r\n"), "{packed}");
        let pick = String::from_utf8_lossy(&cmds[1].get_packed_command()).into_owned();
        assert!(
            pick.contains("HRANDFIELD") && pick.contains("\r\n30\r\n"),
            "{pick}"
        );
        // Nobody in the swarm wants peers: no HRANDFIELD.
        let quiet = by_swarm(vec![queued(3, 0)]);
        assert_eq!(commands(&script, limits, &quiet[0]).len(), 1);
    }
}

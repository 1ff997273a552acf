//! Change notices: every metadata record a node writes (a key, a bucket's ACL or policy, an
//! object's ACL, an issued torrent) is published on the channel [`CHANNEL`] as
//! `<node id> <record key>`; every other node drops its cached copy at once. A node that lost
//! its subscription (Redis restarted or unreachable) may have missed notices, so on
//! re-subscribing it drops its whole cache once.

use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use seedbucket_store::Store;

pub const CHANNEL: &str = "seedbucket:changes";

/// `<node> <key>` as published.
pub fn encode_notice(node: &str, key: &str) -> String {
    format!("{node} {key}")
}

/// The record key of a notice from another node; `None` for this node's own or a malformed one.
pub fn notice_from_other<'a>(payload: &'a str, node: &str) -> Option<&'a str> {
    let (from, key) = payload.split_once(' ')?;
    (from != node).then_some(key)
}

/// Tells the nodes following `url` that the metadata record `key` changed: for the command
/// line (`seedbucket key create ... --redis URL`), which writes records without a server.
pub async fn publish_once(url: &str, key: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "redis did not answer within 3 s".to_owned())?
    .map_err(|e| e.to_string())?;
    let node = format!("cli-{}", uuid::Uuid::new_v4());
    redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(encode_notice(&node, key))
        .query_async::<i64>(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Publishes this node's writes, for as long as the store lives.
pub(crate) fn publish_local_changes(store: &Store, conn: ConnectionManager, node: String) {
    let mut changes = store.subscribe_changes();
    tokio::spawn(async move {
        loop {
            let change = match changes.recv().await {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "change notices dropped; other nodes wait out their cache"
                    );
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if change.remote {
                continue;
            }
            let sent = redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(encode_notice(&node, &change.key))
                .query_async::<i64>(&mut conn.clone())
                .await;
            if let Err(e) = sent {
                tracing::debug!(key = %change.key, error = %e, "change notice not published");
            }
        }
    });
}

/// Applies other nodes' notices to `store`, re-subscribing whenever the subscription drops.
pub(crate) fn follow_remote_changes(store: Store, client: redis::Client, node: String) {
    tokio::spawn(async move {
        let mut subscribed_before = false;
        loop {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(CHANNEL).await {
                    Ok(()) => {
                        if subscribed_before {
                            tracing::info!("change notices resumed; dropping cached records");
                            store.apply_remote_change("");
                        }
                        subscribed_before = true;
                        let mut messages = pubsub.on_message();
                        while let Some(msg) = messages.next().await {
                            let payload = String::from_utf8_lossy(msg.get_payload_bytes());
                            if let Some(key) = notice_from_other(&payload, &node) {
                                store.apply_remote_change(key);
                            }
                        }
                        tracing::warn!("change notice subscription lost; retrying");
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot subscribe to change notices"),
                },
                Err(e) => tracing::debug!(error = %e, "cannot reach redis for change notices"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices() {
        let n = encode_notice("node-a", "buckets/photos.json");
        assert_eq!(notice_from_other(&n, "node-b"), Some("buckets/photos.json"));
        assert_eq!(notice_from_other(&n, "node-a"), None);
        assert_eq!(notice_from_other("garbage", "node-b"), None);
        assert_eq!(notice_from_other(&encode_notice("a", ""), "b"), Some(""));
    }
}

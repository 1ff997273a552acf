//! Leases in Redis: `sb:lease:<name>` holds the holder's id and expires with the lease, so a
//! node that dies holding one loses it when the time runs out. Renewing and releasing check the
//! holder in a script, so a node never extends or drops a lease another node took since.

use std::time::Duration;

use redis::aio::ConnectionManager;
use seedbucket_store::cluster::Leases;

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

pub struct RedisLeases {
    conn: ConnectionManager,
    renew: redis::Script,
    release: redis::Script,
}

impl RedisLeases {
    pub fn for_connection(conn: ConnectionManager) -> Self {
        Self {
            conn,
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        }
    }
}

fn lease_key(name: &str) -> String {
    format!("sb:lease:{name}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait::async_trait]
impl Leases for RedisLeases {
    async fn try_take(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, String> {
        let set: Option<String> = redis::cmd("SET")
            .arg(lease_key(name))
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(set.is_some())
    }

    async fn renew(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, String> {
        let mut call = self.renew.prepare_invoke();
        call.key(lease_key(name)).arg(holder).arg(millis(ttl));
        let renewed: i64 = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(renewed == 1)
    }

    async fn release(&self, name: &str, holder: &str) {
        let mut call = self.release.prepare_invoke();
        call.key(lease_key(name)).arg(holder);
        if let Err(e) = call.invoke_async::<i64>(&mut self.conn.clone()).await {
            tracing::debug!(lease = %name, error = %e, "lease not released; it will expire");
        }
    }
}

//! Console sessions: a random id in an HttpOnly, SameSite=Strict cookie names a session kept
//! in this process (the access key id and a CSRF token; never the secret). Sessions end after
//! [`SESSION_LIFETIME`], after [`SESSION_IDLE`] without a request, at logout, or when their key
//! is deleted. Failed logins are limited per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "seedbucket_console";
/// A session ends this long after login, whatever happens.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Failed logins an address may make per [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES: u32 = 10;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Session {
    pub access_key: String,
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl Sessions {
    /// A new session for `access_key`: its id (the cookie's value) and the session.
    pub fn open(&self, access_key: &str) -> (String, Session) {
        let now = Instant::now();
        let id = random_hex(32);
        let session = Session {
            access_key: access_key.to_owned(),
            csrf: random_hex(32),
            created: now,
            last_seen: now,
        };
        if let Ok(mut m) = self.by_id.lock() {
            m.retain(|_, s| live(s, now));
            if m.len() >= MAX_SESSIONS
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
            m.insert(id.clone(), session.clone());
        }
        (id, session)
    }

    /// The live session named by `id`, its idle clock reset.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut m = self.by_id.lock().ok()?;
        let s = m.get_mut(id)?;
        if !live(s, now) {
            m.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn close(&self, id: &str) {
        if let Ok(mut m) = self.by_id.lock() {
            m.remove(id);
        }
    }

    /// Whether `addr` may try to log in now (fewer than [`LOGIN_FAILURES`] recent failures).
    pub fn may_try_login(&self, addr: IpAddr) -> bool {
        let now = Instant::now();
        self.failures.lock().is_ok_and(|mut m| {
            m.retain(|_, (since, _)| now.duration_since(*since) < LOGIN_WINDOW);
            m.get(&addr).is_none_or(|(_, n)| *n < LOGIN_FAILURES)
        })
    }

    pub fn login_failed(&self, addr: IpAddr) {
        if let Ok(mut m) = self.failures.lock() {
            let e = m.entry(addr).or_insert((Instant::now(), 0));
            e.1 = e.1.saturating_add(1);
        }
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.created) < SESSION_LIFETIME
        && now.duration_since(s.last_seen) < SESSION_IDLE
}

/// Equal secrets or tokens, compared in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The session id in a `Cookie` header.
pub fn cookie_value(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value that opens a session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that ends it in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_and_close() {
        let s = Sessions::default();
        let (id, session) = s.open("AK");
        assert_eq!(id.len(), 64);
        assert_eq!(s.get(&id).map(|x| x.access_key), Some("AK".to_owned()));
        assert_eq!(s.get(&id).map(|x| x.csrf), Some(session.csrf));
        s.close(&id);
        assert!(s.get(&id).is_none());
        assert!(s.get("nonsense").is_none());
    }

    #[test]
    fn failed_logins_are_limited() {
        let s = Sessions::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..LOGIN_FAILURES {
            assert!(s.may_try_login(ip));
            s.login_failed(ip);
        }
        assert!(!s.may_try_login(ip));
        assert!(s.may_try_login([127, 0, 0, 2].into()));
    }

    #[test]
    fn cookies() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=b; seedbucket_console=abc; c=d"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("abc"));
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}

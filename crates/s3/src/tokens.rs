//! Capability tokens the server puts into the URLs of private torrents.
//!
//! A token names the access key it was issued to and carries an HMAC-SHA256 (truncated to
//! 128 bits) under the server's secret (`server.secret` in the data dir) over what it allows.
//! It is valid while the key exists and may read the object; deleting the key revokes every
//! token issued to it. Tracker tokens live in the announce path; webseed tokens in the
//! webseed path, with an expiry time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The server's token key.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(secret.to_vec())
    }

    fn sign(&self, parts: &[&str]) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"\n");
        }
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// `<access key>.<mac>` for announcing `info_hash` (hex).
    pub fn tracker_token(&self, info_hash: &str, access_key: &str) -> String {
        format!(
            "{access_key}.{}",
            self.sign(&["tracker", info_hash, access_key])
        )
    }

    /// The access key a tracker token was issued to, if the token is genuine for `info_hash`.
    pub fn check_tracker_token<'a>(&self, token: &'a str, info_hash: &str) -> Option<&'a str> {
        let (ak, mac) = token.split_once('.')?;
        constant_eq(mac, &self.sign(&["tracker", info_hash, ak])).then_some(ak)
    }

    /// `<expires>.<access key>.<mac>` for the webseed of `info_hash` (hex).
    pub fn webseed_token(&self, info_hash: &str, access_key: &str, expires: i64) -> String {
        let e = expires.to_string();
        format!(
            "{e}.{access_key}.{}",
            self.sign(&["webseed", info_hash, &e, access_key])
        )
    }

    /// The access key of a genuine, unexpired webseed token for `info_hash`.
    pub fn check_webseed_token<'a>(
        &self,
        token: &'a str,
        info_hash: &str,
        now: i64,
    ) -> Option<&'a str> {
        let mut it = token.splitn(3, '.');
        let (e, ak, mac) = (it.next()?, it.next()?, it.next()?);
        let expires: i64 = e.parse().ok()?;
        (expires >= now && constant_eq(mac, &self.sign(&["webseed", info_hash, e, ak])))
            .then_some(ak)
    }
}

impl TokenKey {
    /// A BEP 15 connection id for the client address `ip` in time window `window`: no
    /// per-client state, valid while the window (or the next one) lasts.
    pub fn connection_id(&self, ip: &std::net::IpAddr, window: u64) -> u64 {
        let mac = self.sign(&["udp", &ip.to_string(), &window.to_string()]);
        let mut b = [0u8; 8];
        if hex::decode_to_slice(&mac[..16], &mut b).is_err() {
            return 0;
        }
        u64::from_be_bytes(b)
    }
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let k = TokenKey::new(b"secret");
        let t = k.tracker_token("ab", "AK1");
        assert_eq!(k.check_tracker_token(&t, "ab"), Some("AK1"));
        assert_eq!(k.check_tracker_token(&t, "cd"), None);
        assert_eq!(TokenKey::new(b"other").check_tracker_token(&t, "ab"), None);
        let w = k.webseed_token("ab", "AK1", 100);
        assert_eq!(k.check_webseed_token(&w, "ab", 99), Some("AK1"));
        assert_eq!(k.check_webseed_token(&w, "ab", 101), None);
        assert_eq!(
            k.check_webseed_token(&w.replace("100.", "200."), "ab", 99),
            None
        );
    }
}

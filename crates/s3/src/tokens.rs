//! Capability tokens the server puts into the URLs of private torrents.
//!
//! A token names the access key it was issued to and the object it was issued for (its
//! [`object_id`](seedbucket_store::pieces::object_id): several objects can share an info-hash),
//! and carries an HMAC-SHA256 (truncated to 128 bits) under the server's secret
//! (`server.secret` in the data dir) over what it allows. It is valid while the key exists and
//! may read that object; deleting the key revokes every token issued to it. Tracker tokens live
//! in the announce path; webseed tokens in the webseed path, with an expiry time. Tokens made
//! before tokens named an object (`<key>.<mac>`) are still accepted, for the object of the
//! info-hash's legacy record.

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

    /// `<access key>.<object id>.<mac>` for announcing `info_hash` (hex) of object `object_id`.
    pub fn tracker_token(&self, info_hash: &str, access_key: &str, object_id: &str) -> String {
        format!(
            "{access_key}.{object_id}.{}",
            self.sign(&["tracker-object", info_hash, access_key, object_id])
        )
    }

    /// What a tracker token lets through, if the token is genuine for `info_hash`.
    pub fn check_tracker_token(&self, token: &str, info_hash: &str) -> Option<TokenGrant> {
        let mut it = token.rsplitn(3, '.');
        let (mac, second, first) = (it.next()?, it.next()?, it.next());
        match first {
            Some(ak) => constant_eq(mac, &self.sign(&["tracker-object", info_hash, ak, second]))
                .then(|| TokenGrant::new(ak, Some(second))),
            None => constant_eq(mac, &self.sign(&["tracker", info_hash, second]))
                .then(|| TokenGrant::new(second, None)),
        }
    }

    /// `<expires>.<access key>.<object id>.<mac>` for the webseed of `info_hash` (hex).
    pub fn webseed_token(
        &self,
        info_hash: &str,
        access_key: &str,
        object_id: &str,
        expires: i64,
    ) -> String {
        let e = expires.to_string();
        format!(
            "{e}.{access_key}.{object_id}.{}",
            self.sign(&["webseed-object", info_hash, &e, access_key, object_id])
        )
    }

    /// What a genuine, unexpired webseed token for `info_hash` lets through.
    pub fn check_webseed_token(
        &self,
        token: &str,
        info_hash: &str,
        now: i64,
    ) -> Option<TokenGrant> {
        let (e, rest) = token.split_once('.')?;
        let expires: i64 = e.parse().ok()?;
        if expires < now {
            return None;
        }
        let mut it = rest.rsplitn(3, '.');
        let (mac, second, first) = (it.next()?, it.next()?, it.next());
        match first {
            Some(ak) => constant_eq(
                mac,
                &self.sign(&["webseed-object", info_hash, e, ak, second]),
            )
            .then(|| TokenGrant::new(ak, Some(second))),
            None => constant_eq(mac, &self.sign(&["webseed", info_hash, e, second]))
                .then(|| TokenGrant::new(second, None)),
        }
    }
}

/// What a genuine token of a private torrent lets through: its holder reads as `access_key`,
/// and only the object the token was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub access_key: String,
    /// The object id; `None` for a token of the format of before, which was issued for the
    /// object of the info-hash's legacy record.
    pub object: Option<String>,
}

impl TokenGrant {
    fn new(access_key: &str, object: Option<&str>) -> Self {
        Self {
            access_key: access_key.to_owned(),
            object: object.map(str::to_owned),
        }
    }

    /// The form the tracker keeps for an admitted address: `<object id>:<access key>`
    /// (`-` for no object id).
    pub fn to_admission(&self) -> String {
        format!(
            "{}:{}",
            self.object.as_deref().unwrap_or("-"),
            self.access_key
        )
    }

    /// Reads [`Self::to_admission`]; a bare access key (kept by a node of before) names no object.
    pub fn from_admission(s: &str) -> Self {
        match s.split_once(':') {
            Some(("-", ak)) => Self::new(ak, None),
            Some((id, ak)) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Self::new(ak, Some(id))
            }
            _ => Self::new(s, None),
        }
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
        let oid = "0123456789abcdef0123456789abcdef";
        let t = k.tracker_token("ab", "AK1", oid);
        let grant = Some(TokenGrant::new("AK1", Some(oid)));
        assert_eq!(k.check_tracker_token(&t, "ab"), grant);
        assert_eq!(k.check_tracker_token(&t, "cd"), None);
        assert_eq!(TokenKey::new(b"other").check_tracker_token(&t, "ab"), None);
        let other = t.replace(oid, "ffffffffffffffffffffffffffffffff");
        assert_eq!(
            k.check_tracker_token(&other, "ab"),
            None,
            "the object is signed"
        );
        let w = k.webseed_token("ab", "AK1", oid, 100);
        assert_eq!(k.check_webseed_token(&w, "ab", 99), grant);
        assert_eq!(k.check_webseed_token(&w, "ab", 101), None);
        assert_eq!(
            k.check_webseed_token(&w.replace("100.", "200."), "ab", 99),
            None
        );
        let other = w.replace(oid, "ffffffffffffffffffffffffffffffff");
        assert_eq!(k.check_webseed_token(&other, "ab", 99), None);
    }

    #[test]
    fn tokens_of_before_name_no_object() {
        let k = TokenKey::new(b"secret");
        let old = format!("AK1.{}", k.sign(&["tracker", "ab", "AK1"]));
        assert_eq!(
            k.check_tracker_token(&old, "ab"),
            Some(TokenGrant::new("AK1", None))
        );
        let old = format!("100.AK1.{}", k.sign(&["webseed", "ab", "100", "AK1"]));
        assert_eq!(
            k.check_webseed_token(&old, "ab", 99),
            Some(TokenGrant::new("AK1", None))
        );
    }

    #[test]
    fn admissions_round_trip() {
        for g in [
            TokenGrant::new("AK1", Some("0123456789abcdef0123456789abcdef")),
            TokenGrant::new("AK:1", None),
        ] {
            assert_eq!(TokenGrant::from_admission(&g.to_admission()), g);
        }
        assert_eq!(
            TokenGrant::from_admission("AK1"),
            TokenGrant::new("AK1", None)
        );
    }
}

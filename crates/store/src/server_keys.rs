//! SSE-S3: the server's own master keys, in `sse-s3-keys.json` in the data dir (mode 0600),
//! made at first start.
//!
//! An object written with `x-amz-server-side-encryption: AES256` is encrypted exactly as an
//! SSE-C object is ([`crate::sse`]: a fresh salt per object or part, HKDF-derived data key,
//! AES-256-GCM chunks), with the current master key in place of a customer's; its
//! [`SseParams`](crate::sse::SseParams) name the master key by id. Reads find the key by that id,
//! so after [`rotate`] new writes use the new key and older objects still read with theirs.
//! Losing this file loses every SSE-S3 object: back it up with the data dir's database, and
//! never remove a key while objects written with it remain.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::sse::{CustomerKey, KEY_SIZE};

pub const FILE_NAME: &str = "sse-s3-keys.json";

#[derive(Serialize, Deserialize)]
struct Contents {
    /// The id of the key new writes use.
    current: String,
    /// Key id -> base64 of the 32 key bytes.
    keys: BTreeMap<String, String>,
}

/// The master keys, loaded.
pub struct ServerKeys {
    current: String,
    keys: BTreeMap<String, CustomerKey>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn new_key() -> String {
    let mut bytes = Zeroizing::new([0u8; KEY_SIZE]);
    rand::rng().fill(&mut bytes[..]);
    B64.encode(bytes.as_slice())
}

fn read(data_dir: &Path) -> Result<Option<Contents>> {
    match std::fs::read(data_dir.join(FILE_NAME)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write(data_dir: &Path, contents: &Contents) -> Result<()> {
    crate::credentials::write_atomically(
        &data_dir.join(FILE_NAME),
        &serde_json::to_vec_pretty(contents)?,
        0o600,
    )
}

impl ServerKeys {
    /// Loads the keys of `data_dir`, making the first one if there are none.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        let contents = match read(data_dir)? {
            Some(c) => c,
            None => {
                let c = Contents {
                    current: "1".to_owned(),
                    keys: BTreeMap::from([("1".to_owned(), new_key())]),
                };
                write(data_dir, &c)?;
                c
            }
        };
        let mut keys = BTreeMap::new();
        for (id, b64) in &contents.keys {
            let raw = Zeroizing::new(B64.decode(b64.trim()).map_err(|_| {
                StoreError::Corrupt(format!("{FILE_NAME}: key {id} is not base64"))
            })?);
            let bytes: [u8; KEY_SIZE] = raw.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt(format!("{FILE_NAME}: key {id} is not {KEY_SIZE} bytes"))
            })?;
            keys.insert(id.clone(), CustomerKey::from_bytes(bytes));
        }
        if !keys.contains_key(&contents.current) {
            return Err(StoreError::Corrupt(format!(
                "{FILE_NAME}: the current key {} is not among the keys",
                contents.current
            )));
        }
        Ok(Self {
            current: contents.current,
            keys,
        })
    }

    /// The key new writes use, with its id.
    pub fn current(&self) -> (&str, &CustomerKey) {
        // `load_or_create` checked that the current id is present.
        let key = &self.keys[&self.current];
        (&self.current, key)
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&CustomerKey> {
        self.keys.get(id)
    }
}

/// Adds a new master key to `data_dir`'s keys and makes it the one new writes use (a running
/// server picks it up when restarted); the old keys stay for the objects written with them.
/// Returns the new key's id.
pub fn rotate(data_dir: &Path) -> Result<String> {
    let mut contents = read(data_dir)?.ok_or_else(|| {
        StoreError::InvalidKey(format!(
            "no {FILE_NAME} in {}: the server makes it at its first start",
            data_dir.display()
        ))
    })?;
    let next = contents
        .keys
        .keys()
        .filter_map(|id| id.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let id = next.to_string();
    contents.keys.insert(id.clone(), new_key());
    contents.current = id.clone();
    write(data_dir, &contents)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(first.current().0, "1");
        let again = ServerKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(
            again.current().1.key_md5_base64(),
            first.current().1.key_md5_base64()
        );
        assert_eq!(rotate(dir.path()).unwrap(), "2");
        let rotated = ServerKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(rotated.current().0, "2");
        assert!(rotated.get("1").is_some());
        assert_ne!(
            rotated.current().1.key_md5_base64(),
            first.current().1.key_md5_base64()
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

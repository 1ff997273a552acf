//! Access keys, kept in `keys.json` in the data dir (mode 0600), written atomically.
//!
//! A file rather than a database table so that `seedbucket key create|list|delete` works while
//! the server runs: the server re-reads the file when its modification time changes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Name of the key made on first start (or from `SEEDBUCKET_ROOT_*`).
pub const ROOT_KEY_NAME: &str = "root";

/// One credential: an access key id, its secret, and the user it acts as.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key: String,
    pub secret_key: String,
    /// Canonical user id (64 hex digits): bucket owner, `x-amz-expected-bucket-owner`.
    pub user_id: String,
    pub name: String,
    pub created_ns: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFileContents {
    keys: Vec<AccessKey>,
}

/// The key file of a data dir.
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

fn new_user_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

impl KeyFile {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("keys.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> Result<Vec<AccessKey>> {
        match fs::read(&self.path) {
            Ok(bytes) => decode_keys(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn save(&self, keys: &[AccessKey]) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = encode_keys(keys)?;
        {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// Makes sure the root key exists (see [`ensure_root_in`]). Returns the key and whether
    /// it was just generated.
    pub fn ensure_root(&self, fixed: Option<(String, String)>) -> Result<(AccessKey, bool)> {
        let mut keys = self.load()?;
        let (key, generated, changed) = ensure_root_in(&mut keys, fixed);
        if changed {
            self.save(&keys)?;
        }
        Ok((key, generated))
    }

    /// Creates a new key with its own user id.
    pub fn create(&self, name: &str) -> Result<AccessKey> {
        let mut keys = self.load()?;
        let key = create_in(&mut keys, name)?;
        self.save(&keys)?;
        Ok(key)
    }

    /// Deletes a key by access key id or name. Returns whether one was removed.
    pub fn delete(&self, id_or_name: &str) -> Result<bool> {
        let mut keys = self.load()?;
        if !delete_in(&mut keys, id_or_name) {
            return Ok(false);
        }
        self.save(&keys)?;
        Ok(true)
    }
}

/// The key document (`keys.json`, in the data dir or in gateway mode's metadata bucket).
pub fn decode_keys(bytes: &[u8]) -> Result<Vec<AccessKey>> {
    Ok(serde_json::from_slice::<KeyFileContents>(bytes)?.keys)
}

pub fn encode_keys(keys: &[AccessKey]) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec_pretty(&KeyFileContents {
        keys: keys.to_vec(),
    })?)
}

/// Makes sure `keys` holds the root key. With `fixed` (from the environment) the root key
/// takes those values, keeping its user id. Returns the key, whether it was just generated, and
/// whether `keys` changed.
pub fn ensure_root_in(
    keys: &mut Vec<AccessKey>,
    fixed: Option<(String, String)>,
) -> (AccessKey, bool, bool) {
    let pos = keys.iter().position(|k| k.name == ROOT_KEY_NAME);
    match (pos, fixed) {
        (Some(i), None) => (keys[i].clone(), false, false),
        (Some(i), Some((ak, sk))) => {
            if keys[i].access_key != ak || keys[i].secret_key != sk {
                keys.retain(|k| k.access_key != ak || k.name == ROOT_KEY_NAME);
                let i = keys
                    .iter()
                    .position(|k| k.name == ROOT_KEY_NAME)
                    .unwrap_or(0);
                keys[i].access_key = ak;
                keys[i].secret_key = sk;
                return (keys[i].clone(), false, true);
            }
            (keys[i].clone(), false, false)
        }
        (None, fixed) => {
            let generated = fixed.is_none();
            let (ak, sk) = fixed.unwrap_or_else(generate_pair);
            keys.retain(|k| k.access_key != ak);
            let key = AccessKey {
                access_key: ak,
                secret_key: sk,
                user_id: new_user_id(),
                name: ROOT_KEY_NAME.to_owned(),
                created_ns: crate::now_ns(),
            };
            keys.push(key.clone());
            (key, generated, true)
        }
    }
}

/// Adds a new key named `name`, with its own user id.
pub fn create_in(keys: &mut Vec<AccessKey>, name: &str) -> Result<AccessKey> {
    if keys.iter().any(|k| k.name == name) {
        return Err(StoreError::Corrupt(format!(
            "a key named {name:?} already exists"
        )));
    }
    let (access_key, secret_key) = generate_pair();
    let key = AccessKey {
        access_key,
        secret_key,
        user_id: new_user_id(),
        name: name.to_owned(),
        created_ns: crate::now_ns(),
    };
    keys.push(key.clone());
    Ok(key)
}

/// Removes the key with this access key id or name; whether one was removed.
pub fn delete_in(keys: &mut Vec<AccessKey>, id_or_name: &str) -> bool {
    let before = keys.len();
    keys.retain(|k| k.access_key != id_or_name && k.name != id_or_name);
    keys.len() != before
}

/// A fresh access key id (20 characters) and secret (40 characters).
pub fn generate_pair() -> (String, String) {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (
        format!("SB{}", random_string(UPPER, 18)),
        random_string(SECRET, 40),
    )
}

/// The server's view of the key file, re-read when the file changes (checked at most once a
/// second), so keys created or deleted by the CLI take effect without a restart.
///
/// In gateway mode there is no file: the server pushes the metadata bucket's keys in with
/// [`KeyRing::replace`] every few seconds.
pub struct KeyRing {
    file: Option<KeyFile>,
    state: Mutex<RingState>,
}

struct RingState {
    keys: Vec<AccessKey>,
    mtime: Option<SystemTime>,
    checked: Instant,
}

impl KeyRing {
    pub fn new(file: KeyFile) -> Result<Self> {
        let keys = file.load()?;
        let mtime = fs::metadata(file.path()).and_then(|m| m.modified()).ok();
        Ok(Self {
            file: Some(file),
            state: Mutex::new(RingState {
                keys,
                mtime,
                checked: Instant::now(),
            }),
        })
    }

    /// A ring of these keys, changed only by [`KeyRing::replace`].
    pub fn pushed(keys: Vec<AccessKey>) -> Self {
        Self {
            file: None,
            state: Mutex::new(RingState {
                keys,
                mtime: None,
                checked: Instant::now(),
            }),
        }
    }

    /// Replaces the keys (gateway mode).
    pub fn replace(&self, keys: Vec<AccessKey>) {
        if let Ok(mut st) = self.state.lock() {
            st.keys = keys;
        }
    }

    fn refresh(&self, st: &mut RingState, force: bool) {
        let Some(file) = &self.file else { return };
        if !force && st.checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        st.checked = Instant::now();
        let mtime = fs::metadata(file.path()).and_then(|m| m.modified()).ok();
        if mtime != st.mtime {
            match file.load() {
                Ok(keys) => {
                    st.keys = keys;
                    st.mtime = mtime;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not reload keys.json; keeping the old keys")
                }
            }
        }
    }

    /// The key with this access key id, if it exists now.
    pub fn get(&self, access_key: &str) -> Option<AccessKey> {
        let mut st = self.state.lock().ok()?;
        self.refresh(&mut st, false);
        if let Some(k) = st.keys.iter().find(|k| k.access_key == access_key) {
            return Some(k.clone());
        }
        // A key the CLI just created must work at once.
        self.refresh(&mut st, true);
        st.keys.iter().find(|k| k.access_key == access_key).cloned()
    }

    /// The key of a canonical user id.
    pub fn by_user(&self, user_id: &str) -> Option<AccessKey> {
        let mut st = self.state.lock().ok()?;
        self.refresh(&mut st, false);
        st.keys.iter().find(|k| k.user_id == user_id).cloned()
    }
}

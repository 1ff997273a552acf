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
    /// May list and manage every bucket, as its owner would (`key create --admin`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl AccessKey {
    /// An administrator: a key made with `--admin`, or the root key.
    pub fn is_admin(&self) -> bool {
        self.admin || self.name == ROOT_KEY_NAME
    }
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
        write_atomically(&self.path, &encode_keys(keys)?, 0o600)
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

    /// Creates a new key with its own user id: a generated pair, or `pair` (imported).
    pub fn create(
        &self,
        name: &str,
        pair: Option<(String, String)>,
        admin: bool,
    ) -> Result<AccessKey> {
        let mut keys = self.load()?;
        let key = create_in(&mut keys, name, pair, admin)?;
        self.save(&keys)?;
        Ok(key)
    }

    /// Replaces the keys (after [`delete_in`] or another change made on a loaded copy).
    pub fn replace(&self, keys: &[AccessKey]) -> Result<()> {
        self.save(keys)
    }
}

/// Writes `body` to `path` through a synced temporary file and a rename, so readers see the old
/// contents or the new, never a mix; the file gets permission bits `mode`.
pub(crate) fn write_atomically(path: &Path, body: &[u8], mode: u32) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts.open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    Ok(())
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
                admin: true,
            };
            keys.push(key.clone());
            (key, generated, true)
        }
    }
}

/// Shortest secret key accepted for an imported pair.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest access key id or secret key accepted.
pub const MAX_KEY_LEN: usize = 128;

/// Why an imported pair cannot be used, if it cannot: the access key id appears in every
/// signature's credential scope (`AKID/date/region/s3/aws4_request`) and in presigned URLs, so
/// it keeps to letters, digits, `.`, `_` and `-`; the secret must be hard to guess.
fn check_pair(access_key: &str, secret_key: &str) -> Result<()> {
    let invalid = |m: String| Err(StoreError::InvalidKey(m));
    if !(3..=MAX_KEY_LEN).contains(&access_key.len())
        || !access_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid(format!(
            "an access key id is 3 to {MAX_KEY_LEN} letters, digits, '.', '_' or '-'"
        ));
    }
    if secret_key.chars().count() < MIN_SECRET_LEN {
        return invalid(format!(
            "a secret key must be at least {MIN_SECRET_LEN} characters long"
        ));
    }
    if secret_key.len() > MAX_KEY_LEN || !secret_key.bytes().all(|b| b.is_ascii_graphic()) {
        return invalid(format!(
            "a secret key is at most {MAX_KEY_LEN} printable ASCII characters, without spaces"
        ));
    }
    Ok(())
}

/// Adds a new key named `name`, with its own user id: a generated pair, or `pair` (an imported
/// access key id and secret, checked).
pub fn create_in(
    keys: &mut Vec<AccessKey>,
    name: &str,
    pair: Option<(String, String)>,
    admin: bool,
) -> Result<AccessKey> {
    if name.trim().is_empty() {
        return Err(StoreError::InvalidKey("a key needs a name".into()));
    }
    if keys.iter().any(|k| k.name == name) {
        return Err(StoreError::InvalidKey(format!(
            "a key named {name:?} already exists"
        )));
    }
    let (access_key, secret_key) = match pair {
        Some((ak, sk)) => {
            check_pair(&ak, &sk)?;
            if keys.iter().any(|k| k.access_key == ak) {
                return Err(StoreError::InvalidKey(format!(
                    "access key id {ak:?} is already in use"
                )));
            }
            (ak, sk)
        }
        None => generate_pair(),
    };
    let key = AccessKey {
        access_key,
        secret_key,
        user_id: new_user_id(),
        name: name.to_owned(),
        created_ns: crate::now_ns(),
        admin,
    };
    keys.push(key.clone());
    Ok(key)
}

/// The key with this access key id or name.
pub fn find<'a>(keys: &'a [AccessKey], id_or_name: &str) -> Option<&'a AccessKey> {
    keys.iter()
        .find(|k| k.access_key == id_or_name || k.name == id_or_name)
}

/// Removes the key with this access key id or name and returns it. The root key cannot be
/// removed (it is the server's own administrator and the owner of unassigned buckets).
pub fn delete_in(keys: &mut Vec<AccessKey>, id_or_name: &str) -> Result<AccessKey> {
    let key = find(keys, id_or_name).cloned().ok_or_else(|| {
        StoreError::InvalidKey(format!("no key with access key id or name {id_or_name:?}"))
    })?;
    if key.name == ROOT_KEY_NAME {
        return Err(StoreError::InvalidKey(
            "the root key cannot be deleted (change it with SEEDBUCKET_ROOT_ACCESS_KEY and \
             SEEDBUCKET_ROOT_SECRET_KEY instead)"
                .into(),
        ));
    }
    keys.retain(|k| k.access_key != key.access_key);
    Ok(key)
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
        self.find_now(|k| k.access_key == access_key)
    }

    /// The key with this access key id or, failing that, this name (the CLI and the console
    /// let people name keys either way).
    pub fn by_id_or_name(&self, id_or_name: &str) -> Option<AccessKey> {
        self.get(id_or_name)
            .or_else(|| self.find_now(|k| k.name == id_or_name))
    }

    /// The key of a canonical user id (a grant names one), if it exists now.
    pub fn by_user(&self, user_id: &str) -> Option<AccessKey> {
        self.find_now(|k| k.user_id == user_id)
    }

    /// The first key matching `wanted`, re-reading the key file once if none does: a key the
    /// CLI just created must work at once, as an access key and as a grantee.
    fn find_now(&self, wanted: impl Fn(&AccessKey) -> bool) -> Option<AccessKey> {
        let mut st = self.state.lock().ok()?;
        self.refresh(&mut st, false);
        if let Some(k) = st.keys.iter().find(|k| wanted(k)) {
            return Some(k.clone());
        }
        self.refresh(&mut st, true);
        st.keys.iter().find(|k| wanted(k)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_pairs_are_checked_and_the_root_key_stays() {
        let mut keys = Vec::new();
        ensure_root_in(&mut keys, None);
        let pair = |a: &str, s: &str| Some((a.to_owned(), s.to_owned()));
        let k = create_in(
            &mut keys,
            "imp",
            pair("IMPORTED.KEY_01", "sixteen-chars-ok"),
            false,
        )
        .unwrap();
        assert_eq!(k.access_key, "IMPORTED.KEY_01");
        for (name, a, s) in [
            ("short", "SHORTSECRET01", "fifteen-chars-x"),
            ("spaces", "SPACES000001", "a secret with spaces"),
            ("slash", "A/B", "sixteen-chars-ok"),
            ("tiny", "AB", "sixteen-chars-ok"),
            ("dup", "IMPORTED.KEY_01", "sixteen-chars-ok"),
        ] {
            let e = create_in(&mut keys, name, pair(a, s), false).unwrap_err();
            assert!(matches!(e, StoreError::InvalidKey(_)), "{name}: {e}");
        }
        assert!(matches!(
            create_in(&mut keys, "imp", None, false),
            Err(StoreError::InvalidKey(_))
        ));
        assert!(matches!(
            delete_in(&mut keys, ROOT_KEY_NAME),
            Err(StoreError::InvalidKey(_))
        ));
        assert_eq!(delete_in(&mut keys, "imp").unwrap().name, "imp");
        assert!(delete_in(&mut keys, "imp").is_err());
        assert_eq!(keys.len(), 1);
    }
}

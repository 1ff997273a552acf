//! Object versions in the metadata database (versioned buckets).
//!
//! The `objects` table keeps what a GET without `versionId` reads: the newest version of a key
//! when that is an object. Everything else a versioned bucket keeps, noncurrent versions and
//! every delete marker, lives in `versions`, keyed `bucket/key\0{order}` where `{order}` is 16
//! hex digits that sort the newest version first. So the versions of one key are one contiguous
//! range, newest first, and a key's range sits where the key sorts among all keys.
//!
//! Invariants kept by every write here:
//! - a key's entry in `objects`, when there is one, is newer than all of its `versions`;
//! - when a key has no entry in `objects`, its newest entry in `versions` is a delete marker
//!   (or it has none): a version that becomes the newest object is moved back to `objects`;
//! - every version of a key has a distinct `last_modified_ns` (a new one is made later than the
//!   newest, even if the clock went back), which is its place in the order.
//!
//! Buckets that never had versioning write nothing here: their writes replace the object in
//! `objects` exactly as before versioning existed.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{
    GARBAGE, OBJECTS, PIECES, WriteCondition, check_condition, decode, encode, object_key,
};
use crate::error::{Result, StoreError};
use crate::records::{ObjectRecord, Versioning};

/// `bucket/key\0{order}` → [`ObjectRecord`] (noncurrent versions and delete markers).
pub(super) const VERSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("versions");

/// Length of the `{order}` suffix (hex digits).
const ORDER_DIGITS: usize = 16;

/// Which version of an object a read names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    /// The newest version, if it is not a delete marker (a GET without `versionId`).
    Current,
    /// The version with this S3 version id (`null` included); may be a delete marker.
    VersionId(&'a str),
    /// The version with this internal `version` (what an issued torrent names).
    Exact(&'a str),
}

impl Which<'_> {
    fn matches(&self, rec: &ObjectRecord) -> bool {
        match self {
            Which::Current => !rec.delete_marker,
            Which::VersionId(id) => rec.version_id() == *id,
            Which::Exact(v) => rec.version == *v && !rec.delete_marker,
        }
    }

    /// The error for a version that is not there.
    pub(crate) fn missing(&self) -> StoreError {
        match self {
            Which::VersionId(_) => StoreError::NoSuchVersion,
            Which::Current | Which::Exact(_) => StoreError::NoSuchKey,
        }
    }
}

/// [`Which`] with owned text, to move into a blocking task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedWhich {
    Current,
    VersionId(String),
    Exact(String),
}

impl OwnedWhich {
    pub fn of(which: Which<'_>) -> Self {
        match which {
            Which::Current => Self::Current,
            Which::VersionId(v) => Self::VersionId(v.to_owned()),
            Which::Exact(v) => Self::Exact(v.to_owned()),
        }
    }

    pub fn get(&self) -> Which<'_> {
        match self {
            Self::Current => Which::Current,
            Self::VersionId(v) => Which::VersionId(v),
            Self::Exact(v) => Which::Exact(v),
        }
    }
}

/// A ListObjectVersions request.
#[derive(Debug, Clone, Default)]
pub struct VersionListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Start after this key (all its versions), or, with `version_id_marker`, after that
    /// version of this key.
    pub key_marker: Option<String>,
    pub version_id_marker: Option<String>,
    pub max_keys: usize,
}

/// One version in a listing.
#[derive(Debug, Clone)]
pub struct ListedVersion {
    pub key: String,
    pub record: ObjectRecord,
    /// The newest version of its key (an object or a delete marker).
    pub is_latest: bool,
}

/// One page of ListObjectVersions.
#[derive(Debug, Clone, Default)]
pub struct VersionPage {
    pub versions: Vec<ListedVersion>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// Where the next page starts: a key (or common prefix) and, after a version, its id.
    pub next_key_marker: Option<String>,
    pub next_version_id_marker: Option<String>,
}

fn versions_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(0);
    k
}

pub(super) fn version_key(bucket: &str, key: &str, last_modified_ns: i64) -> Vec<u8> {
    let order = u64::MAX - u64::try_from(last_modified_ns).unwrap_or(0);
    let mut k = versions_prefix(bucket, key);
    k.extend_from_slice(format!("{order:016x}").as_bytes());
    k
}

/// The object key of a `versions` table key (`bucket/` already removed): `None` if malformed.
pub(super) fn key_of_version_entry(rest: &[u8]) -> Option<&str> {
    let end = rest.len().checked_sub(ORDER_DIGITS + 1)?;
    if rest[end] != 0 {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// The entries of `bucket/key` in `versions`, newest first, with their table keys.
pub(super) fn older_versions(
    versions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    key: &str,
) -> Result<Vec<(Vec<u8>, ObjectRecord)>> {
    let prefix = versions_prefix(bucket, key);
    let mut out = Vec::new();
    for entry in versions.range(prefix.as_slice()..)? {
        let (k, v) = entry?;
        let kb = k.value();
        if !kb.starts_with(&prefix) {
            break;
        }
        // A longer key that happens to continue with NUL is some other key's range.
        if kb.len() != prefix.len() + ORDER_DIGITS {
            continue;
        }
        out.push((kb.to_vec(), decode(v.value())?));
    }
    Ok(out)
}

/// Whether the bucket keeps any entry in `versions`.
pub(super) fn bucket_has_versions(
    versions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
) -> Result<bool> {
    let start = object_key(bucket, "");
    if let Some(first) = versions.range(start.as_slice()..)?.next() {
        return Ok(first?.0.value().starts_with(&start));
    }
    Ok(false)
}

/// Finds one version of `bucket/key` in either table.
pub(super) fn find(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    versions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    key: &str,
    which: Which<'_>,
) -> Result<Option<ObjectRecord>> {
    let k = object_key(bucket, key);
    if let Some(v) = objects.get(k.as_slice())? {
        let rec: ObjectRecord = decode(v.value())?;
        if which == Which::Current || which.matches(&rec) {
            return Ok(Some(rec));
        }
    } else if which == Which::Current {
        return Ok(None);
    }
    Ok(older_versions(versions, bucket, key)?
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| which.matches(r)))
}

/// Records that `dropped` versions are gone for good: their blobs become garbage and their
/// piece hashes are removed.
pub(super) fn forget_versions(tx: &WriteTransaction, dropped: Vec<ObjectRecord>) -> Result<()> {
    if dropped.is_empty() {
        return Ok(());
    }
    let mut pieces = tx.open_table(PIECES)?;
    let mut garbage = tx.open_table(GARBAGE)?;
    for rec in dropped {
        pieces.remove(rec.version.as_str())?;
        for s in rec.segments {
            garbage.insert(s.blob.as_str(), ())?;
        }
    }
    Ok(())
}

/// Makes `rec` the newest version of `bucket/key` as the bucket's versioning state says, after
/// checking `cond` against the current object. Versions that stop existing are forgotten (their
/// blobs become garbage); the caller records `rec`'s own blobs. Sets `rec.versioned` and, in a
/// versioned bucket, moves `rec.last_modified_ns` past the key's newest version if needed.
pub(super) fn install(
    tx: &WriteTransaction,
    versioning: Option<Versioning>,
    bucket: &str,
    key: &str,
    rec: &mut ObjectRecord,
    cond: &WriteCondition,
) -> Result<()> {
    let mut objects = tx.open_table(OBJECTS)?;
    let k = object_key(bucket, key);
    let previous: Option<ObjectRecord> = match objects.get(k.as_slice())? {
        Some(v) => Some(decode(v.value())?),
        None => None,
    };
    check_condition(previous.as_ref(), cond)?;
    let mut dropped = Vec::new();
    match versioning {
        None => {
            if rec.delete_marker {
                return Err(StoreError::Corrupt(
                    "a delete marker in an unversioned bucket".into(),
                ));
            }
            rec.versioned = false;
            dropped.extend(previous);
        }
        Some(state) => {
            if key.contains('\0') {
                return Err(StoreError::InvalidArgument(
                    "object keys of a versioned bucket cannot contain U+0000".into(),
                ));
            }
            let mut versions = tx.open_table(VERSIONS)?;
            let older = older_versions(&versions, bucket, key)?;
            let newest = previous
                .iter()
                .map(|p| p.last_modified_ns)
                .chain(older.first().map(|(_, r)| r.last_modified_ns))
                .max();
            if let Some(n) = newest {
                rec.last_modified_ns = rec.last_modified_ns.max(n.saturating_add(1));
            }
            rec.versioned = state == Versioning::Enabled;
            if state == Versioning::Suspended {
                // The null version, wherever it is, is replaced.
                for (vk, old) in older {
                    if !old.versioned {
                        versions.remove(vk.as_slice())?;
                        dropped.push(old);
                    }
                }
            }
            if let Some(prev) = previous {
                if state == Versioning::Suspended && !prev.versioned {
                    dropped.push(prev);
                } else {
                    let vk = version_key(bucket, key, prev.last_modified_ns);
                    versions.insert(vk.as_slice(), encode(&prev)?.as_slice())?;
                }
            }
            if rec.delete_marker {
                let vk = version_key(bucket, key, rec.last_modified_ns);
                versions.insert(vk.as_slice(), encode(&*rec)?.as_slice())?;
                objects.remove(k.as_slice())?;
            }
        }
    }
    if !rec.delete_marker {
        objects.insert(k.as_slice(), encode(&*rec)?.as_slice())?;
    }
    drop(objects);
    forget_versions(tx, dropped)
}

/// Removes one version for good (S3's DELETE with `versionId`); `None` if there was no such
/// version. A newest object version left behind becomes the current object again.
pub(super) fn remove_version(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<Option<ObjectRecord>> {
    let mut objects = tx.open_table(OBJECTS)?;
    let mut versions = tx.open_table(VERSIONS)?;
    let k = object_key(bucket, key);
    let current: Option<ObjectRecord> = match objects.get(k.as_slice())? {
        Some(v) => Some(decode(v.value())?),
        None => None,
    };
    let removed = match current {
        Some(cur) if cur.version_id() == version_id => {
            objects.remove(k.as_slice())?;
            Some(cur)
        }
        _ => {
            let found = older_versions(&versions, bucket, key)?
                .into_iter()
                .find(|(_, r)| r.version_id() == version_id);
            match found {
                Some((vk, rec)) => {
                    versions.remove(vk.as_slice())?;
                    Some(rec)
                }
                None => None,
            }
        }
    };
    if removed.is_some() {
        settle(&mut objects, &mut versions, bucket, key)?;
    }
    drop((objects, versions));
    if let Some(rec) = &removed {
        forget_versions(tx, vec![rec.clone()])?;
    }
    Ok(removed)
}

/// Restores the invariant after a removal: with no current object, a newest version that is an
/// object (not a delete marker) becomes current.
fn settle(
    objects: &mut Table<'_, &'static [u8], &'static [u8]>,
    versions: &mut Table<'_, &'static [u8], &'static [u8]>,
    bucket: &str,
    key: &str,
) -> Result<()> {
    let k = object_key(bucket, key);
    if objects.get(k.as_slice())?.is_some() {
        return Ok(());
    }
    if let Some((vk, newest)) = older_versions(versions, bucket, key)?.into_iter().next()
        && !newest.delete_marker
    {
        versions.remove(vk.as_slice())?;
        objects.insert(k.as_slice(), encode(&newest)?.as_slice())?;
    }
    Ok(())
}

/// Changes the record of one version in place (ACL, tags) wherever it lives.
pub(super) fn update_version(
    tx: &WriteTransaction,
    bucket: &str,
    key: &str,
    version: &str,
    change: impl FnOnce(&mut ObjectRecord) -> Result<()>,
) -> Result<Option<ObjectRecord>> {
    let mut versions = tx.open_table(VERSIONS)?;
    let found = older_versions(&versions, bucket, key)?
        .into_iter()
        .find(|(_, r)| r.version == version && !r.delete_marker);
    let Some((vk, mut rec)) = found else {
        return Ok(None);
    };
    change(&mut rec)?;
    versions.insert(vk.as_slice(), encode(&rec)?.as_slice())?;
    Ok(Some(rec))
}

type Row = (Vec<u8>, Vec<u8>);

/// The rows of one table from `start` on that begin with `prefix`, owned.
fn rows_from<'t>(
    table: &'t impl ReadableTable<&'static [u8], &'static [u8]>,
    start: &[u8],
    prefix: &'t [u8],
) -> Result<impl Iterator<Item = Result<Row>> + 't> {
    Ok(table
        .range(start..)?
        .map(|entry| {
            entry
                .map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .map_err(StoreError::from)
        })
        .take_while(move |row| match row {
            Ok((k, _)) => k.starts_with(prefix),
            Err(_) => true,
        }))
}

/// ListObjectVersions over both tables: keys in order, each key's versions newest first.
pub(super) fn list(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    versions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    q: &VersionListQuery,
) -> Result<VersionPage> {
    let base = object_key(bucket, "");
    let full_prefix = object_key(bucket, &q.prefix);
    let mut start = full_prefix.clone();
    if let Some(m) = &q.key_marker {
        let m = object_key(bucket, m);
        if m > start {
            start = m;
        }
    }
    let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
    let mut page = VersionPage::default();
    if q.max_keys == 0 {
        return Ok(page);
    }
    let mut current = rows_from(objects, &start, &full_prefix)?.peekable();
    let mut older = rows_from(versions, &start, &full_prefix)?.peekable();
    let mut previous_key: Option<String> = None;
    // How the marker key's own versions are treated: all skipped (no version id marker), or
    // skipped up to and including the version id marker, then listed.
    let mut seeking_version = q.version_id_marker.as_deref().filter(|v| !v.is_empty());
    let mut past_version_marker = false;
    let mut count = 0usize;
    loop {
        let from_current = match (current.peek(), older.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) | (Some(_), None) => true,
            (None, Some(_)) | (_, Some(Err(_))) => false,
            (Some(Ok((a, _))), Some(Ok((b, _)))) => a <= b,
        };
        let next = if from_current {
            current.next()
        } else {
            older.next()
        };
        let Some(row) = next else { break };
        let (k, v) = row?;
        let rest = &k[base.len()..];
        let key = if from_current {
            std::str::from_utf8(rest).map_err(|e| StoreError::Corrupt(e.to_string()))?
        } else {
            match key_of_version_entry(rest) {
                Some(key) => key,
                None => continue,
            }
        };
        let is_latest = previous_key.as_deref() != Some(key);
        if is_latest {
            previous_key = Some(key.to_owned());
        }
        if let Some(marker) = &q.key_marker {
            if key < marker.as_str() {
                continue;
            }
            if key == marker.as_str() && !past_version_marker {
                if let Some(id) = seeking_version {
                    let rec: ObjectRecord = decode(&v)?;
                    if rec.version_id() == id {
                        seeking_version = None;
                        past_version_marker = true;
                    }
                }
                continue;
            }
        }
        let common = delimiter.and_then(|d| {
            key[q.prefix.len()..]
                .find(d)
                .map(|pos| &key[..q.prefix.len() + pos + d.len()])
        });
        if let Some(cp) = common {
            let repeated = page.common_prefixes.last().map(String::as_str) == Some(cp)
                || q.key_marker.as_deref().is_some_and(|m| m.starts_with(cp));
            if repeated {
                continue;
            }
        }
        if count == q.max_keys {
            page.is_truncated = true;
            break;
        }
        count += 1;
        match common {
            Some(cp) => {
                page.common_prefixes.push(cp.to_owned());
                page.next_key_marker = Some(cp.to_owned());
                page.next_version_id_marker = None;
            }
            None => {
                let record: ObjectRecord = decode(&v)?;
                page.next_key_marker = Some(key.to_owned());
                page.next_version_id_marker = Some(record.version_id().to_owned());
                page.versions.push(ListedVersion {
                    key: key.to_owned(),
                    record,
                    is_latest,
                });
            }
        }
    }
    if !page.is_truncated {
        page.next_key_marker = None;
        page.next_version_id_marker = None;
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sort_newest_first_and_name_their_key() {
        let older = version_key("b", "k", 100);
        let newer = version_key("b", "k", 200);
        assert!(newer < older);
        let base = object_key("b", "");
        assert_eq!(key_of_version_entry(&older[base.len()..]), Some("k"));
        // A key's versions sort before the keys that extend it.
        assert!(version_key("b", "a", 1) < object_key("b", "a/b"));
        assert!(key_of_version_entry(b"short").is_none());
    }
}

//! `bucket-owners.json` in the data dir: which user owns each bucket. The metadata database is
//! the truth, but the running server holds it locked; the server rewrites this copy whenever a
//! bucket is created, deleted or handed over (and at start), so that `seedbucket key delete`
//! can tell, while the server runs, whether a key still owns buckets.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::records::BucketRecord;

pub const FILE_NAME: &str = "bucket-owners.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    /// Bucket name -> owner's canonical user id.
    buckets: BTreeMap<String, String>,
}

/// Replaces the index with `buckets`' owners.
pub fn write(data_dir: &Path, buckets: &[BucketRecord]) -> Result<()> {
    let contents = Contents {
        buckets: buckets
            .iter()
            .map(|b| (b.name.clone(), b.owner.clone()))
            .collect(),
    };
    crate::credentials::write_atomically(
        &data_dir.join(FILE_NAME),
        &serde_json::to_vec_pretty(&contents)?,
        0o644,
    )
}

/// Bucket name -> owner, or `None` if no server has written the index in this data dir yet.
pub fn read(data_dir: &Path) -> Result<Option<BTreeMap<String, String>>> {
    match std::fs::read(data_dir.join(FILE_NAME)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice::<Contents>(&bytes)?.buckets)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        let rec = |name: &str, owner: &str| BucketRecord {
            name: name.into(),
            owner: owner.into(),
            created_ns: 0,
            acl: Vec::new(),
            policy: None,
            cors: Vec::new(),
            default_sse_s3: false,
            versioning: None,
            lifecycle: Vec::new(),
        };
        write(dir.path(), &[rec("a", "u1"), rec("b", "u2")]).unwrap();
        let got = read(dir.path()).unwrap().unwrap();
        assert_eq!(got.get("a").map(String::as_str), Some("u1"));
        assert_eq!(got.len(), 2);
    }
}

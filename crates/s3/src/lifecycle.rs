//! Bucket lifecycle rules: which objects a rule covers and when its actions are due (pure), and
//! one pass over every bucket that applies them through the store ([`run_once`]).
//!
//! A pass lists each bucket with rules page by page, so it never holds more than a page of
//! records, and every action is one ordinary store call (a DELETE, a version removal, an abort):
//! requests keep being served while it runs, and an expired object loses its torrent exactly as
//! a deleted one does.

use seedbucket_store::{
    BucketRecord, LifecycleRule, ListQuery, ObjectRecord, Store, StoreError, VersionListQuery,
};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// Records listed per store call during a pass.
const PAGE: usize = 1000;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleReport {
    pub buckets: u64,
    /// Current versions expired (deleted, or hidden behind a delete marker when versioned).
    pub expired: u64,
    /// Noncurrent versions removed for good.
    pub noncurrent_removed: u64,
    /// Delete markers removed because no version was left behind them.
    pub delete_markers_removed: u64,
    pub uploads_aborted: u64,
}

/// Whether `rule` covers the object `key` with this record (prefix, tags and size filters).
pub fn covers(rule: &LifecycleRule, key: &str, rec: &ObjectRecord) -> bool {
    rule.enabled
        && key.starts_with(&rule.prefix)
        && rule
            .tags
            .iter()
            .all(|(k, v)| rec.attributes.tags.get(k) == Some(v))
        && rule.size_greater_than.is_none_or(|n| rec.size > n)
        && rule.size_less_than.is_none_or(|n| rec.size < n)
}

/// Whether the current version `rec` is due to expire at `now_ns`.
pub fn current_expires(rule: &LifecycleRule, rec: &ObjectRecord, now_ns: i64) -> bool {
    let by_days = rule
        .expiration_days
        .is_some_and(|d| now_ns - rec.last_modified_ns >= i64::from(d) * DAY_NS);
    let by_date = rule.expiration_date_ns.is_some_and(|at| now_ns >= at);
    by_days || by_date
}

/// Whether a version that became noncurrent at `since_ns`, and has `newer` noncurrent versions
/// newer than itself, is due for removal at `now_ns`.
pub fn noncurrent_expires(rule: &LifecycleRule, since_ns: i64, newer: u32, now_ns: i64) -> bool {
    rule.noncurrent_days
        .is_some_and(|d| now_ns - since_ns >= i64::from(d) * DAY_NS)
        && rule
            .newer_noncurrent_versions
            .is_none_or(|keep| newer >= keep)
}

/// Applies every bucket's rules once, as of `now_ns`.
pub async fn run_once(store: &Store, now_ns: i64) -> Result<LifecycleReport, StoreError> {
    let mut report = LifecycleReport::default();
    for bucket in store.list_buckets().await? {
        if !bucket.lifecycle.iter().any(|r| r.enabled) {
            continue;
        }
        report.buckets += 1;
        if let Err(e) = apply_to_bucket(store, &bucket, now_ns, &mut report).await {
            // A bucket deleted meanwhile, or a backend hiccup: the next pass tries again.
            tracing::warn!(bucket = %bucket.name, error = %e, "lifecycle pass skipped a bucket");
        }
    }
    Ok(report)
}

async fn apply_to_bucket(
    store: &Store,
    bucket: &BucketRecord,
    now_ns: i64,
    report: &mut LifecycleReport,
) -> Result<(), StoreError> {
    let rules: Vec<&LifecycleRule> = bucket.lifecycle.iter().filter(|r| r.enabled).collect();
    let name = bucket.name.as_str();
    let owner = bucket.owner.as_str();
    // Current versions.
    if rules
        .iter()
        .any(|r| r.expiration_days.is_some() || r.expiration_date_ns.is_some())
    {
        let mut after = None;
        loop {
            let page = store
                .list_objects(
                    name,
                    ListQuery {
                        prefix: String::new(),
                        delimiter: None,
                        after: after.clone(),
                        max_keys: PAGE,
                    },
                )
                .await?;
            for (key, rec) in &page.objects {
                if rules
                    .iter()
                    .any(|r| covers(r, key, rec) && current_expires(r, rec, now_ns))
                {
                    store.delete_object(name, key, owner).await?;
                    report.expired += 1;
                }
            }
            if !page.is_truncated {
                break;
            }
            after = page.last;
        }
    }
    // Noncurrent versions and lone delete markers (versioned buckets).
    let versions_rules = rules
        .iter()
        .any(|r| r.noncurrent_days.is_some() || r.expired_object_delete_marker);
    if versions_rules && bucket.versioning.is_some() {
        apply_to_versions(store, name, &rules, now_ns, report).await?;
    }
    // Incomplete multipart uploads.
    if rules.iter().any(|r| r.abort_incomplete_days.is_some()) {
        for upload in store.list_uploads(name).await? {
            let due = rules.iter().any(|r| {
                upload.key.starts_with(&r.prefix)
                    && r.abort_incomplete_days
                        .is_some_and(|d| now_ns - upload.initiated_ns >= i64::from(d) * DAY_NS)
            });
            if due {
                match store.abort_upload(&upload.upload_id).await {
                    Ok(()) => report.uploads_aborted += 1,
                    Err(StoreError::NoSuchUpload) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// One key's versions as listed, newest first.
struct KeyVersions {
    key: String,
    versions: Vec<ObjectRecord>,
}

async fn apply_to_versions(
    store: &Store,
    bucket: &str,
    rules: &[&LifecycleRule],
    now_ns: i64,
    report: &mut LifecycleReport,
) -> Result<(), StoreError> {
    // Collected first, acted on after: removals would shift the listing under its markers.
    let mut keys: Vec<KeyVersions> = Vec::new();
    let (mut key_marker, mut version_id_marker) = (None, None);
    loop {
        let page = store
            .list_versions(
                bucket,
                VersionListQuery {
                    prefix: String::new(),
                    delimiter: None,
                    key_marker: key_marker.clone(),
                    version_id_marker: version_id_marker.clone(),
                    max_keys: PAGE,
                },
            )
            .await?;
        for v in page.versions {
            match keys.last_mut() {
                Some(k) if k.key == v.key => k.versions.push(v.record),
                _ => keys.push(KeyVersions {
                    key: v.key,
                    versions: vec![v.record],
                }),
            }
        }
        if !page.is_truncated {
            break;
        }
        key_marker = page.next_key_marker;
        version_id_marker = page.next_version_id_marker;
    }
    for KeyVersions { key, versions } in keys {
        let mut kept = versions.len();
        // versions[0] is the newest; each older one became noncurrent when the one before it
        // in this list was written.
        let mut newer_noncurrent = 0u32;
        for i in 1..versions.len() {
            let rec = &versions[i];
            let since = versions[i - 1].last_modified_ns;
            let due = !rec.delete_marker
                && rules.iter().any(|r| {
                    covers(r, &key, rec) && noncurrent_expires(r, since, newer_noncurrent, now_ns)
                });
            if due {
                store.delete_version(bucket, &key, rec.version_id()).await?;
                report.noncurrent_removed += 1;
                kept -= 1;
            } else if !rec.delete_marker {
                newer_noncurrent += 1;
            }
        }
        // A delete marker that is the only version left hides nothing.
        let newest = &versions[0];
        if newest.delete_marker
            && kept == 1
            && rules
                .iter()
                .any(|r| r.expired_object_delete_marker && key.starts_with(&r.prefix))
        {
            store
                .delete_version(bucket, &key, newest.version_id())
                .await?;
            report.delete_markers_removed += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(size: u64, at_ns: i64) -> ObjectRecord {
        let mut r = ObjectRecord::delete_marker("o", at_ns);
        r.delete_marker = false;
        r.size = size;
        r
    }

    #[test]
    fn filters_and_due_times() {
        let rule = LifecycleRule {
            enabled: true,
            prefix: "logs/".into(),
            tags: [("t".to_owned(), "1".to_owned())].into(),
            size_greater_than: Some(10),
            expiration_days: Some(2),
            ..Default::default()
        };
        let mut r = rec(11, 0);
        assert!(!covers(&rule, "logs/a", &r), "the tag is missing");
        r.attributes.tags.insert("t".into(), "1".into());
        assert!(covers(&rule, "logs/a", &r));
        assert!(!covers(&rule, "other/a", &r));
        assert!(!covers(&rule, "logs/a", &rec(10, 0)));
        assert!(!current_expires(&rule, &r, 2 * DAY_NS - 1));
        assert!(current_expires(&rule, &r, 2 * DAY_NS));
        let nc = LifecycleRule {
            enabled: true,
            noncurrent_days: Some(1),
            newer_noncurrent_versions: Some(2),
            ..Default::default()
        };
        assert!(
            !noncurrent_expires(&nc, 0, 1, DAY_NS),
            "one of the two kept"
        );
        assert!(noncurrent_expires(&nc, 0, 2, DAY_NS));
        assert!(!noncurrent_expires(&nc, 0, 5, DAY_NS - 1));
    }
}

//! ListObjectsV2 and ListObjects (v1): one store listing, two wire shapes.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as TOKEN;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use seedbucket_store::{ListPage, ListQuery, VersionListQuery};

use super::{etag, timestamp};
use crate::Seedbucket;
use crate::access::Action;
use crate::error::to_s3;

/// `encoding-type=url`: everything but unreserved characters and `/` is percent-encoded
/// (so `+` and space survive clients that decode with `unquote_plus`).
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub(crate) const DEFAULT_MAX_KEYS: i32 = 1000;

pub(crate) struct Encoder(bool);

impl Encoder {
    pub(crate) fn new(encoding_type: Option<&EncodingType>) -> S3Result<Self> {
        match encoding_type.map(|e| e.as_str()) {
            None => Ok(Self(false)),
            Some(e) if e.eq_ignore_ascii_case("url") => Ok(Self(true)),
            Some(_) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request"
            )),
        }
    }
    pub(crate) fn apply(&self, s: &str) -> String {
        if self.0 {
            utf8_percent_encode(s, KEY_ENCODE).to_string()
        } else {
            s.to_owned()
        }
    }
    pub(crate) fn opt(&self, s: Option<String>) -> Option<String> {
        s.map(|s| self.apply(&s))
    }
}

pub(crate) fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    let n = requested.unwrap_or(DEFAULT_MAX_KEYS);
    if n < 0 {
        return Err(s3_error!(
            InvalidArgument,
            "max-keys must be a non-negative integer"
        ));
    }
    Ok(usize::try_from(n.min(DEFAULT_MAX_KEYS)).unwrap_or(0))
}

impl Seedbucket {
    fn objects_of(&self, page: &ListPage, enc: &Encoder, fetch_owner: bool) -> Vec<Object> {
        page.objects
            .iter()
            .map(|(key, rec)| Object {
                key: Some(enc.apply(key)),
                size: i64::try_from(rec.size).ok(),
                e_tag: Some(etag(&rec.etag)),
                last_modified: Some(timestamp(rec.last_modified_ns)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                owner: fetch_owner.then(|| self.owner_of(&rec.attributes.owner)),
                ..Default::default()
            })
            .collect()
    }

    pub(crate) async fn h_list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::ListBucket),
        )
        .await?;
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let token_key = match &input.continuation_token {
            Some(t) => Some(
                TOKEN
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        s3_error!(
                            InvalidArgument,
                            "The continuation token provided is incorrect"
                        )
                    })?,
            ),
            None => None,
        };
        // The continuation token wins over start-after, as in S3.
        let after = token_key
            .or_else(|| input.start_after.clone())
            .filter(|s| !s.is_empty());
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = self
            .store
            .list_objects(
                &input.bucket,
                ListQuery {
                    prefix,
                    delimiter: input.delimiter.clone(),
                    after,
                    max_keys: max,
                },
            )
            .await
            .map_err(to_s3)?;
        let contents = self.objects_of(&page, &enc, input.fetch_owner.unwrap_or(false));
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc.apply(p)),
            })
            .collect();
        let key_count = i32::try_from(contents.len() + prefixes.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc.apply(input.prefix.as_deref().unwrap_or(""))),
            delimiter: enc.opt(input.delimiter),
            max_keys: Some(i32::try_from(max).unwrap_or(DEFAULT_MAX_KEYS)),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            next_continuation_token: page
                .is_truncated
                .then(|| page.last.as_ref().map(|l| TOKEN.encode(l.as_bytes())))
                .flatten(),
            is_truncated: Some(page.is_truncated),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            start_after: enc.opt(input.start_after),
            ..Default::default()
        }))
    }

    pub(crate) async fn h_list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::ListBucket),
        )
        .await?;
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = self
            .store
            .list_objects(
                &input.bucket,
                ListQuery {
                    prefix,
                    delimiter: input.delimiter.clone(),
                    after: input.marker.clone().filter(|s| !s.is_empty()),
                    max_keys: max,
                },
            )
            .await
            .map_err(to_s3)?;
        let contents = self.objects_of(&page, &enc, true);
        let prefixes = page
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc.apply(p)),
            })
            .collect();
        // NextMarker is returned only with a delimiter, as in S3.
        let next_marker = (page.is_truncated && input.delimiter.is_some())
            .then(|| page.last.as_deref().map(|l| enc.apply(l)))
            .flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc.apply(input.prefix.as_deref().unwrap_or(""))),
            delimiter: enc.opt(input.delimiter),
            marker: Some(enc.apply(input.marker.as_deref().unwrap_or(""))),
            next_marker,
            max_keys: Some(i32::try_from(max).unwrap_or(DEFAULT_MAX_KEYS)),
            is_truncated: Some(page.is_truncated),
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    /// ListObjectVersions: every version and delete marker, keys in order and each key's
    /// versions newest first; in a bucket that never versioned, each object is its key's one
    /// version, `null`.
    pub(crate) async fn h_list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::ListBucketVersions),
        )
        .await?;
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_keys)?;
        let key_marker = input.key_marker.clone().filter(|s| !s.is_empty());
        let version_id_marker = input.version_id_marker.clone().filter(|s| !s.is_empty());
        if version_id_marker.is_some() && key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        if let Some(v) = &version_id_marker {
            super::which_version(Some(v))?;
        }
        let page = self
            .store
            .list_versions(
                &input.bucket,
                VersionListQuery {
                    prefix: input.prefix.clone().unwrap_or_default(),
                    delimiter: input.delimiter.clone(),
                    key_marker,
                    version_id_marker,
                    max_keys: max,
                },
            )
            .await
            .map_err(to_s3)?;
        let (mut versions, mut markers) = (Vec::new(), Vec::new());
        for v in &page.versions {
            let rec = &v.record;
            if rec.delete_marker {
                markers.push(DeleteMarkerEntry {
                    key: Some(enc.apply(&v.key)),
                    version_id: Some(rec.version_id().to_owned()),
                    is_latest: Some(v.is_latest),
                    last_modified: Some(timestamp(rec.last_modified_ns)),
                    owner: Some(self.owner_of(&rec.attributes.owner)),
                });
                continue;
            }
            versions.push(ObjectVersion {
                key: Some(enc.apply(&v.key)),
                version_id: Some(rec.version_id().to_owned()),
                is_latest: Some(v.is_latest),
                size: i64::try_from(rec.size).ok(),
                e_tag: Some(etag(&rec.etag)),
                last_modified: Some(timestamp(rec.last_modified_ns)),
                owner: Some(self.owner_of(&rec.attributes.owner)),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                ..Default::default()
            });
        }
        let prefixes = page
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc.apply(p)),
            })
            .collect();
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(enc.apply(input.prefix.as_deref().unwrap_or(""))),
            delimiter: enc.opt(input.delimiter),
            key_marker: Some(enc.apply(input.key_marker.as_deref().unwrap_or(""))),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            next_version_id_marker: page.next_version_id_marker,
            next_key_marker: page.next_key_marker.map(|k| enc.apply(&k)),
            max_keys: Some(i32::try_from(max).unwrap_or(DEFAULT_MAX_KEYS)),
            is_truncated: Some(page.is_truncated),
            versions: Some(versions),
            delete_markers: (!markers.is_empty()).then_some(markers),
            common_prefixes: Some(prefixes),
            encoding_type: input.encoding_type,
            request_charged: super::request_charged(input.request_payer.as_ref()),
        }))
    }
}

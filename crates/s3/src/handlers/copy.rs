//! CopyObject and UploadPartCopy: the source is read through the same pinned reader as a GET
//! and written through the same ingest as a PUT, so the copy gets its own ETag, checksums and
//! piece hashes, and a crash mid-copy leaves nothing visible.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use seedbucket_store::{ChecksumSelection, ObjectAttributes, ObjectReader, StageTarget, Which};

use super::multipart::check_part_key;
use super::object::{BodyStream, check_key, write_condition};
use super::sse::{check_read_key, echo, sse_error};
use super::{etag, parse_tagging_header, request_charged, timestamp, user_metadata};
use super::{version_header, which_version};
use crate::Seedbucket;
use crate::access::Action;
use crate::conditional::{Conditions, Outcome};
use crate::error::to_s3;

/// Largest source CopyObject copies in one request (S3's limit; bigger objects are copied
/// with UploadPartCopy).
pub(crate) const MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// The copy-source conditions of a CopyObject or UploadPartCopy input.
macro_rules! source_conditions {
    ($input:expr) => {
        SourceConditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
    };
}

/// The `x-amz-copy-source-if-*` conditions of a copy.
struct SourceConditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// The source of a copy, open and authorized.
struct OpenedSource {
    reader: ObjectReader,
    bucket: String,
    key: String,
    /// The source named a version (a copy onto its own key then restores that version).
    named_version: bool,
    /// `x-amz-copy-source-version-id` to answer with.
    version_header: Option<String>,
}

impl Seedbucket {
    /// Opens the copy source after checking READ on it and its conditions (any failed
    /// condition is 412 for a copy, as in S3).
    async fn open_copy_source(
        &self,
        credentials: Option<&s3s::auth::Credentials>,
        source: &CopySource,
        expected_source_owner: Option<&str>,
        conditions: SourceConditions<'_>,
    ) -> S3Result<OpenedSource> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Copying from an access point is not supported"
            ));
        };
        check_key(key)?;
        let which = which_version(version_id.as_deref())?;
        let access = self
            .bucket_access(credentials, bucket, expected_source_owner, None)
            .await?;
        let reader = match self.store.open_object_at(bucket, key, which).await {
            Ok(r) => r,
            Err(e) => return Err(self.missing_version(&access, key, e).await),
        };
        access.require_at(Action::GetObject, Some(key), Some(&reader.record), which)?;
        if reader.record.delete_marker {
            // S3 answers a copy from a delete marker with 400 InvalidRequest.
            return Err(s3_error!(
                InvalidRequest,
                "The source of a copy request may not specifically refer to a delete marker by version id."
            ));
        }
        let outcome = Conditions {
            if_match: conditions.if_match,
            if_none_match: conditions.if_none_match,
            if_modified_since: conditions.if_modified_since,
            if_unmodified_since: conditions.if_unmodified_since,
        }
        .evaluate(&reader.record.etag, reader.record.last_modified_ns);
        if outcome != Outcome::Proceed {
            return Err(s3_error!(PreconditionFailed));
        }
        Ok(OpenedSource {
            version_header: version_header(&access.bucket, &reader.record, which),
            named_version: which != Which::Current,
            reader,
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    pub(crate) async fn h_copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let access = self
            .key_access(
                req.credentials.as_ref(),
                &input.bucket,
                &input.key,
                input.expected_bucket_owner.as_deref(),
                Action::PutObject,
            )
            .await?;
        let key = sse_key!(input)?;
        let sse_s3 = super::wants_sse_s3(
            input.server_side_encryption.as_ref(),
            key.as_ref(),
            access.bucket.default_sse_s3,
        )?;
        let source_key = sse_key!(copy_source input)?;
        let replace_metadata = directive(input.metadata_directive.as_ref().map(|d| d.as_str()))?;
        let replace_tags = directive(input.tagging_directive.as_ref().map(|d| d.as_str()))?;
        let OpenedSource {
            reader,
            bucket: src_bucket,
            key: src_key,
            named_version,
            version_header: source_version,
        } = self
            .open_copy_source(
                req.credentials.as_ref(),
                &input.copy_source,
                input.expected_source_bucket_owner.as_deref(),
                source_conditions!(input),
            )
            .await?;
        let source = reader.record.clone();
        check_read_key(&source, source_key.as_ref())?;
        // Any encryption header, or an encrypted source, makes a copy in place legal: it is how
        // objects are encrypted, decrypted or re-encrypted with the current master key.
        let changes_encryption = key.is_some()
            || source.is_sse_c()
            || input.server_side_encryption.is_some()
            || sse_s3 != source.attributes.sse_s3;
        if src_bucket == input.bucket
            && src_key == input.key
            && !named_version
            && !replace_metadata
            && !changes_encryption
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        if source.size > MAX_COPY_SIZE {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_COPY_SIZE}"
            ));
        }
        let (owner, acl) = new_object_acl!(self, input, access)?;
        let tags = if replace_tags {
            parse_tagging_header(input.tagging.as_deref())?
        } else {
            source.attributes.tags.clone()
        };
        let (headers, metadata) = if replace_metadata {
            (input_headers!(input), user_metadata(input.metadata))
        } else {
            (
                source.attributes.headers.clone(),
                source.attributes.user_metadata.clone(),
            )
        };
        let mut selection = ChecksumSelection::default();
        for (present, name) in [
            (source.checksums.crc32.is_some(), "CRC32"),
            (source.checksums.crc32c.is_some(), "CRC32C"),
            (source.checksums.sha1.is_some(), "SHA1"),
            (source.checksums.sha256.is_some(), "SHA256"),
            (source.checksums.crc64nvme.is_some(), "CRC64NVME"),
        ] {
            if present {
                selection.enable(name);
            }
        }
        if let Some(a) = &input.checksum_algorithm
            && !selection.enable(a.as_str())
        {
            return Err(s3_error!(
                InvalidArgument,
                "Unsupported checksum algorithm: {}",
                a.as_str()
            ));
        }
        let attributes = ObjectAttributes {
            headers,
            user_metadata: metadata,
            owner,
            acl,
            tags,
            sse_s3,
        };
        // Gateway mode: a plain copy stays inside the backend. Copies that change encryption or
        // need checksums computed stream through here.
        // A single-part source's checksums are the copy's too (same bytes); a multipart
        // source's are composite, so a copy of one with checksums computes them anew.
        let keeps_checksums = source.checksums.is_empty() || source.parts_count.is_none();
        if key.is_none()
            && source_key.is_none()
            && input.checksum_algorithm.is_none()
            && keeps_checksums
            && let Some(rec) = self
                .store
                .copy_in_backend(
                    &reader,
                    &input.bucket,
                    &input.key,
                    attributes.clone(),
                    source.checksums.clone(),
                )
                .await
                .map_err(to_s3)?
        {
            self.store
                .hash_in_background(rec.clone(), input.bucket.clone(), input.key.clone());
            let mut out = copy_output(&rec, None, input.request_payer.as_ref());
            out.copy_source_version_id = source_version;
            out.version_id = version_header(&access.bucket, &rec, Which::Current);
            return Ok(S3Response::new(out));
        }
        let size = source.size;
        let body = BodyStream(match &source_key {
            Some(k) => reader.decrypted_stream(k, 0, size).map_err(sse_error)?,
            None => reader.stream(0, size),
        });
        let target = StageTarget::Object {
            bucket: &input.bucket,
            key: &input.key,
            attributes: &attributes,
        };
        let (staged, digests) = self
            .stage_body(
                target,
                body,
                Some(size),
                selection,
                super::at_rest(key.as_ref(), sse_s3),
            )
            .await?;
        let checksums = digests.checksums();
        let rec = self
            .store
            .commit_object(
                staged,
                &input.bucket,
                &input.key,
                attributes,
                checksums,
                write_condition(None, None)?,
            )
            .await
            .map_err(to_s3)?;
        let mut out = copy_output(&rec, key.as_ref(), input.request_payer.as_ref());
        out.copy_source_version_id = source_version;
        out.version_id = version_header(&access.bucket, &rec, Which::Current);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn h_upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        self.key_access(
            req.credentials.as_ref(),
            &input.bucket,
            &input.key,
            input.expected_bucket_owner.as_deref(),
            Action::PutObject,
        )
        .await?;
        let part_number = super::part_number(input.part_number)?;
        let key = sse_key!(input)?;
        let source_key = sse_key!(copy_source input)?;
        let upload = self
            .upload_of(&input.bucket, &input.key, &input.upload_id)
            .await?;
        check_part_key(&upload, key.as_ref())?;
        let OpenedSource {
            reader,
            version_header: source_version,
            ..
        } = self
            .open_copy_source(
                req.credentials.as_ref(),
                &input.copy_source,
                input.expected_source_bucket_owner.as_deref(),
                source_conditions!(input),
            )
            .await?;
        check_read_key(&reader.record, source_key.as_ref())?;
        let size = reader.record.size;
        let (start, end) = match input.copy_source_range.as_deref() {
            None => (0, size),
            Some(r) => parse_copy_range(r, size)?,
        };
        if end - start > MAX_COPY_SIZE {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy range is larger than the maximum allowable size for a part: {MAX_COPY_SIZE}"
            ));
        }
        let mut selection = ChecksumSelection::default();
        if let Some(a) = &upload.checksum_algorithm {
            selection.enable(a);
        }
        let body = BodyStream(match &source_key {
            Some(k) => reader.decrypted_stream(k, start, end).map_err(sse_error)?,
            None => reader.stream(start, end),
        });
        let (staged, digests) = self
            .stage_body(
                StageTarget::Part {
                    upload: &upload,
                    part_number,
                },
                body,
                Some(end - start),
                selection,
                super::at_rest(key.as_ref(), upload.attributes.sse_s3),
            )
            .await?;
        let computed = digests.checksums();
        let part = self
            .store
            .commit_part(staged, &input.upload_id, part_number, computed)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(timestamp(part.last_modified_ns)),
                checksum_crc32: part.checksums.crc32,
                checksum_crc32c: part.checksums.crc32c,
                checksum_sha1: part.checksums.sha1,
                checksum_sha256: part.checksums.sha256,
                checksum_crc64nvme: part.checksums.crc64nvme,
            }),
            request_charged: request_charged(input.request_payer.as_ref()),
            server_side_encryption: super::sse_s3_header(&upload.attributes),
            sse_customer_algorithm: echo(key.as_ref()).0,
            sse_customer_key_md5: echo(key.as_ref()).1,
            copy_source_version_id: source_version,
            ..Default::default()
        }))
    }
}

/// `COPY` (the default) or `REPLACE`: whether the request replaces what the source had.
fn directive(value: Option<&str>) -> S3Result<bool> {
    match value {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("COPY") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("REPLACE") => Ok(true),
        Some(v) => Err(s3_error!(InvalidArgument, "Unknown directive: {v}")),
    }
}

/// `x-amz-copy-source-range: bytes=first-last` (both inclusive, both required) as `[start, end)`.
pub(crate) fn parse_copy_range(value: &str, size: u64) -> S3Result<(u64, u64)> {
    let malformed = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(malformed)?;
    let (a, b) = spec.split_once('-').ok_or_else(malformed)?;
    let first: u64 = a.trim().parse().map_err(|_| malformed())?;
    let last: u64 = b.trim().parse().map_err(|_| malformed())?;
    if first > last {
        return Err(malformed());
    }
    if last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable"
        ));
    }
    Ok((first, last + 1))
}

/// CopyObject's answer for the new object `rec`.
fn copy_output(
    rec: &seedbucket_store::ObjectRecord,
    key: Option<&seedbucket_store::sse::CustomerKey>,
    request_payer: Option<&RequestPayer>,
) -> CopyObjectOutput {
    CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(etag(&rec.etag)),
            last_modified: Some(timestamp(rec.last_modified_ns)),
            checksum_crc32: rec.checksums.crc32.clone(),
            checksum_crc32c: rec.checksums.crc32c.clone(),
            checksum_sha1: rec.checksums.sha1.clone(),
            checksum_sha256: rec.checksums.sha256.clone(),
            checksum_crc64nvme: rec.checksums.crc64nvme.clone(),
            ..Default::default()
        }),
        request_charged: request_charged(request_payer),
        server_side_encryption: super::sse_s3_header(&rec.attributes),
        sse_customer_algorithm: echo(key).0,
        sse_customer_key_md5: echo(key).1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_copy_range;

    #[test]
    fn copy_ranges() {
        assert_eq!(parse_copy_range("bytes=0-9", 10).unwrap(), (0, 10));
        assert_eq!(parse_copy_range("bytes=5-5", 10).unwrap(), (5, 6));
        assert!(parse_copy_range("bytes=0-10", 10).is_err());
        assert!(parse_copy_range("bytes=5-", 10).is_err());
        assert!(parse_copy_range("bytes=6-5", 10).is_err());
        assert!(parse_copy_range("0-5", 10).is_err());
    }
}

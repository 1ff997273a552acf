//! CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts,
//! ListMultipartUploads. Parts are stored as they come; completion references them in order.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use seedbucket_store::sse::{CustomerKey, SseParams};
use seedbucket_store::{ObjectAttributes, ObjectRecord, StageTarget, UploadRecord};

use super::list::{Encoder, max_keys};
use super::object::write_condition;
use super::sse::{echo, sse_error};
use super::{ClaimedChecksums, Incoming, etag, parse_tagging_header, timestamp, user_metadata};
use crate::Seedbucket;
use crate::access::Action;
use crate::error::to_s3;

/// Parts one upload may have, as S3.
const MAX_PARTS: usize = 10_000;

impl Seedbucket {
    /// The upload, checked to belong to this bucket and key.
    pub(crate) async fn upload_of(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> S3Result<UploadRecord> {
        let up = self.store.upload(upload_id).await.map_err(to_s3)?;
        if up.bucket != bucket || up.key != key {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(up)
    }

    pub(crate) async fn h_create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
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
        let bucket_default = access.bucket.default_sse_s3;
        let (owner, acl) = new_object_acl!(self, input, access)?;
        let tags = parse_tagging_header(input.tagging.as_deref())?;
        let customer_key = sse_key!(input)?;
        let sse_s3 = super::wants_sse_s3(
            input.server_side_encryption.as_ref(),
            customer_key.as_ref(),
            bucket_default,
        )?;
        let sse_key_check = customer_key
            .map(|k| {
                SseParams::generate(&k)
                    .map_err(sse_error)
                    .map(|p| (p, echo(Some(&k))))
            })
            .transpose()?;
        let (sse_key_check, sse_echo) = match sse_key_check {
            Some((p, e)) => (Some(p), e),
            None => (None, (None, None)),
        };
        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_ascii_uppercase());
        if let Some(a) = &algorithm
            && !seedbucket_store::ChecksumSelection::default().enable(a)
        {
            return Err(s3_error!(
                InvalidArgument,
                "Unsupported checksum algorithm: {a}"
            ));
        }
        let attributes = ObjectAttributes {
            headers: input_headers!(input),
            user_metadata: user_metadata(input.metadata),
            owner,
            acl,
            tags,
            sse_s3,
        };
        let up = self
            .store
            .create_upload(
                &input.bucket,
                &input.key,
                attributes,
                algorithm.clone(),
                sse_key_check,
            )
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(up.upload_id),
            checksum_algorithm: algorithm.map(ChecksumAlgorithm::from),
            checksum_type: input
                .checksum_algorithm
                .as_ref()
                .map(|_| ChecksumType::from_static(ChecksumType::COMPOSITE)),
            server_side_encryption: super::sse_s3_header(&up.attributes),
            sse_customer_algorithm: sse_echo.0,
            sse_customer_key_md5: sse_echo.1,
            ..Default::default()
        }))
    }

    pub(crate) async fn h_upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
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
        let upload = self
            .upload_of(&input.bucket, &input.key, &input.upload_id)
            .await?;
        check_part_key(&upload, key.as_ref())?;
        let algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_owned())
            .or(upload.checksum_algorithm.clone());
        let (staged, computed) = self
            .receive_body(
                Incoming {
                    body: input.body,
                    content_length: input.content_length,
                    content_md5: input.content_md5.as_deref(),
                    algorithm: algorithm.as_deref(),
                    claimed: ClaimedChecksums {
                        crc32: input.checksum_crc32,
                        crc32c: input.checksum_crc32c,
                        sha1: input.checksum_sha1,
                        sha256: input.checksum_sha256,
                        crc64nvme: input.checksum_crc64nvme,
                    },
                    target: StageTarget::Part {
                        upload: &upload,
                        part_number,
                    },
                    encryption: super::at_rest(key.as_ref(), upload.attributes.sse_s3),
                },
                &req.headers,
                req.trailing_headers.as_ref(),
            )
            .await?;
        let part = self
            .store
            .commit_part(staged, &input.upload_id, part_number, computed)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            checksum_crc32: part.checksums.crc32,
            checksum_crc32c: part.checksums.crc32c,
            checksum_sha1: part.checksums.sha1,
            checksum_sha256: part.checksums.sha256,
            checksum_crc64nvme: part.checksums.crc64nvme,
            server_side_encryption: super::sse_s3_header(&upload.attributes),
            sse_customer_algorithm: echo(key.as_ref()).0,
            sse_customer_key_md5: echo(key.as_ref()).1,
            ..Default::default()
        }))
    }

    pub(crate) async fn h_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
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
        let versioning = access.bucket.versioning.is_some();
        if let Err(e) = self
            .upload_of(&input.bucket, &input.key, &input.upload_id)
            .await
        {
            // A retry of a completion that succeeded (the client timed out waiting for the
            // answer) gets that answer again, as long as the object it made is still there.
            return match self
                .completed_by(&input.bucket, &input.key, &input.upload_id)
                .await
            {
                Some(rec) => Ok(S3Response::new(completion(
                    &input.bucket,
                    &input.key,
                    &rec,
                    versioning,
                ))),
                None => Err(e),
            };
        }
        let parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"))?;
        if parts.len() > MAX_PARTS {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let mut requested = Vec::with_capacity(parts.len());
        for p in parts {
            let n = p
                .part_number
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| s3_error!(MalformedXML, "Each part needs a PartNumber"))?;
            let tag = p
                .e_tag
                .ok_or_else(|| s3_error!(MalformedXML, "Each part needs an ETag"))?;
            requested.push((n, tag.value().to_owned()));
        }
        let cond = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let rec = self
            .store
            .complete_upload(&input.upload_id, requested, cond)
            .await
            .map_err(to_s3)?;
        // Parts were not piece-hashed on arrival (the piece length depends on the total size,
        // unknown until now): hash the object now, in the background, so that its first
        // `?torrent` answers from stored hashes. Objects too large for a torrent are skipped
        // (and SSE-C ones by the store).
        if rec.size <= self.options.torrent_max_size {
            self.store
                .hash_in_background(rec.clone(), input.bucket.clone(), input.key.clone());
        }
        Ok(S3Response::new(completion(
            &input.bucket,
            &input.key,
            &rec,
            versioning,
        )))
    }

    /// The object at `bucket`/`key`, if multipart upload `upload_id` made it.
    async fn completed_by(&self, bucket: &str, key: &str, upload_id: &str) -> Option<ObjectRecord> {
        self.store
            .head_object(bucket, key)
            .await
            .ok()
            .filter(|rec| rec.completed_upload.as_deref() == Some(upload_id))
    }

    pub(crate) async fn h_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                None,
            )
            .await?;
        access.require(Action::PutObject, Some(&input.key), None)?;
        self.upload_of(&input.bucket, &input.key, &input.upload_id)
            .await?;
        self.store
            .abort_upload(&input.upload_id)
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(crate) async fn h_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                None,
            )
            .await?;
        access.require(Action::PutObject, Some(&input.key), None)?;
        let upload = self
            .upload_of(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let max = max_keys(input.max_parts)?;
        let marker = match input.part_number_marker {
            None => 0u32,
            Some(m) => u32::try_from(m).map_err(|_| {
                s3_error!(
                    InvalidArgument,
                    "part-number-marker must be a non-negative integer"
                )
            })?,
        };
        let stored = self
            .store
            .list_parts(&input.upload_id)
            .await
            .map_err(to_s3)?;
        let mut rest = stored.into_iter().filter(|p| p.part_number > marker);
        let page: Vec<_> = rest.by_ref().take(max).collect();
        let truncated = rest.next().is_some();
        let next_marker = page.last().and_then(|p| i32::try_from(p.part_number).ok());
        let parts = page
            .into_iter()
            .map(|p| Part {
                part_number: i32::try_from(p.part_number).ok(),
                e_tag: Some(etag(&p.etag)),
                size: i64::try_from(p.size).ok(),
                last_modified: Some(timestamp(p.last_modified_ns)),
                checksum_crc32: p.checksums.crc32,
                checksum_crc32c: p.checksums.crc32c,
                checksum_sha1: p.checksums.sha1,
                checksum_sha256: p.checksums.sha256,
                checksum_crc64nvme: p.checksums.crc64nvme,
            })
            .collect();
        let owner = self.owner_of(&upload.attributes.owner);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated { next_marker } else { None },
            max_parts: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(truncated),
            parts: Some(parts),
            initiator: Some(Initiator {
                id: owner.id.clone(),
                display_name: owner.display_name.clone(),
            }),
            owner: Some(owner),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            checksum_algorithm: upload.checksum_algorithm.map(ChecksumAlgorithm::from),
            ..Default::default()
        }))
    }

    pub(crate) async fn h_list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.bucket_access(
            req.credentials.as_ref(),
            &input.bucket,
            input.expected_bucket_owner.as_deref(),
            Some(Action::ListBucket),
        )
        .await?;
        let enc = Encoder::new(input.encoding_type.as_ref())?;
        let max = max_keys(input.max_uploads)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let all = self
            .store
            .list_uploads(&input.bucket)
            .await
            .map_err(to_s3)?;
        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut truncated = false;
        let mut last: Option<(String, String)> = None;
        for up in all {
            if !up.key.starts_with(&prefix) {
                continue;
            }
            // Past the markers: keys after key-marker, or the same key with a later upload id.
            if !key_marker.is_empty() {
                let after = if id_marker.is_empty() {
                    up.key.as_str() > key_marker.as_str()
                } else {
                    up.key.as_str() > key_marker.as_str()
                        || (up.key == key_marker && up.upload_id.as_str() > id_marker.as_str())
                };
                if !after {
                    continue;
                }
            }
            let common = delimiter.as_deref().and_then(|d| {
                up.key[prefix.len()..]
                    .find(d)
                    .map(|pos| up.key[..prefix.len() + pos + d.len()].to_owned())
            });
            if let Some(cp) = &common
                && prefixes.last() == Some(cp)
            {
                continue;
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            match common {
                Some(cp) => {
                    last = Some((cp.clone(), String::new()));
                    prefixes.push(cp);
                }
                None => {
                    last = Some((up.key.clone(), up.upload_id.clone()));
                    let owner = self.owner_of(&up.attributes.owner);
                    uploads.push(MultipartUpload {
                        key: Some(enc.apply(&up.key)),
                        upload_id: Some(up.upload_id),
                        initiated: Some(timestamp(up.initiated_ns)),
                        initiator: Some(Initiator {
                            id: owner.id.clone(),
                            display_name: owner.display_name.clone(),
                        }),
                        owner: Some(owner),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        checksum_algorithm: up.checksum_algorithm.map(ChecksumAlgorithm::from),
                        ..Default::default()
                    });
                }
            }
        }
        let (next_key, next_id) = match (truncated, last) {
            (true, Some((k, id))) => (Some(enc.apply(&k)), Some(id)),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(enc.apply(&prefix)),
            delimiter: enc.opt(input.delimiter),
            key_marker: Some(enc.apply(&key_marker)),
            upload_id_marker: Some(id_marker),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            max_uploads: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(truncated),
            uploads: Some(uploads),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc.apply(&p)),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

/// A part of an SSE-C upload needs the upload's key; a part of a plain upload takes none.
pub(crate) fn check_part_key(upload: &UploadRecord, key: Option<&CustomerKey>) -> S3Result<()> {
    match (&upload.sse_key_check, key) {
        (None, None) => Ok(()),
        (Some(check), Some(k)) => check.verify(k).map_err(|_| {
            s3_error!(
                InvalidRequest,
                "The provided encryption parameters did not match the ones used originally."
            )
        }),
        (Some(_), None) => Err(s3_error!(
            InvalidRequest,
            "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters."
        )),
        (None, Some(_)) => Err(s3_error!(
            InvalidRequest,
            "The multipart upload initiate did not request encryption. Subsequent part requests must not include encryption parameters."
        )),
    }
}

/// CompleteMultipartUpload's answer for the object it made.
/// CompleteMultipartUpload's answer for the object `rec` (with its version id in a bucket whose
/// versioning was ever configured).
fn completion(
    bucket: &str,
    key: &str,
    rec: &ObjectRecord,
    versioning: bool,
) -> CompleteMultipartUploadOutput {
    CompleteMultipartUploadOutput {
        bucket: Some(bucket.to_owned()),
        key: Some(key.to_owned()),
        location: Some(format!("/{bucket}/{key}")),
        e_tag: Some(etag(&rec.etag)),
        checksum_crc32: rec.checksums.crc32.clone(),
        checksum_crc32c: rec.checksums.crc32c.clone(),
        checksum_sha1: rec.checksums.sha1.clone(),
        checksum_sha256: rec.checksums.sha256.clone(),
        checksum_type: (!rec.checksums.is_empty())
            .then(|| ChecksumType::from_static(ChecksumType::COMPOSITE)),
        server_side_encryption: super::sse_s3_header(&rec.attributes),
        version_id: versioning.then(|| rec.version_id().to_owned()),
        ..Default::default()
    }
}

//! GetObjectAttributes: ETag, checksum, parts, storage class and size in one call, each only
//! when asked for in `x-amz-object-attributes`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::list::max_keys;
use super::{etag, request_charged, timestamp};
use crate::Seedbucket;
use crate::access::Action;

impl Seedbucket {
    pub(crate) async fn h_get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        let (access, rec) = self
            .object_access(
                req.credentials.as_ref(),
                &input.bucket,
                &input.key,
                input.version_id.as_deref(),
                input.expected_bucket_owner.as_deref(),
                Action::GetObject,
            )
            .await?;
        let key = sse_key!(input)?;
        super::sse::check_read_key(&rec, key.as_ref())?;
        // One header may list several, comma-separated.
        let names: Vec<String> = input
            .object_attributes
            .iter()
            .flat_map(|a| a.as_str().split(','))
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        let wanted = |name: &str| names.iter().any(|a| a.eq_ignore_ascii_case(name));
        if names.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-object-attributes must name at least one attribute"
            ));
        }
        for a in &names {
            if ![
                ObjectAttributes::ETAG,
                ObjectAttributes::CHECKSUM,
                ObjectAttributes::OBJECT_PARTS,
                ObjectAttributes::STORAGE_CLASS,
                ObjectAttributes::OBJECT_SIZE,
            ]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(a.as_str()))
            {
                return Err(s3_error!(
                    InvalidArgument,
                    "Invalid attribute name specified: {a}"
                ));
            }
        }
        let checksum =
            (wanted(ObjectAttributes::CHECKSUM) && !rec.checksums.is_empty()).then(|| Checksum {
                checksum_crc32: rec.checksums.crc32.clone(),
                checksum_crc32c: rec.checksums.crc32c.clone(),
                checksum_crc64nvme: rec.checksums.crc64nvme.clone(),
                checksum_sha1: rec.checksums.sha1.clone(),
                checksum_sha256: rec.checksums.sha256.clone(),
                checksum_type: Some(ChecksumType::from_static(if rec.parts_count.is_some() {
                    ChecksumType::COMPOSITE
                } else {
                    ChecksumType::FULL_OBJECT
                })),
            });
        let object_parts = match (wanted(ObjectAttributes::OBJECT_PARTS), rec.parts_count) {
            (true, Some(total)) => {
                let max = max_keys(input.max_parts)?;
                let marker = input
                    .part_number_marker
                    .and_then(|m| usize::try_from(m).ok())
                    .unwrap_or(0);
                let parts: Vec<ObjectPart> = rec
                    .segments
                    .iter()
                    .enumerate()
                    .skip(marker)
                    .take(max)
                    .map(|(i, seg)| ObjectPart {
                        part_number: i32::try_from(i + 1).ok(),
                        size: i64::try_from(seg.len).ok(),
                        ..Default::default()
                    })
                    .collect();
                let last = parts.last().and_then(|p| p.part_number);
                let truncated = marker + parts.len() < rec.segments.len();
                Some(GetObjectAttributesParts {
                    is_truncated: Some(truncated),
                    max_parts: i32::try_from(max).ok(),
                    next_part_number_marker: if truncated { last } else { None },
                    part_number_marker: input.part_number_marker,
                    parts: Some(parts),
                    total_parts_count: i32::try_from(total).ok(),
                })
            }
            _ => None,
        };
        // The ETag element carries no quotes in this call's XML.
        let e_tag = wanted(ObjectAttributes::ETAG).then(|| etag(&rec.etag));
        Ok(S3Response::new(GetObjectAttributesOutput {
            checksum,
            e_tag,
            last_modified: Some(timestamp(rec.last_modified_ns)),
            object_parts,
            object_size: wanted(ObjectAttributes::OBJECT_SIZE)
                .then(|| i64::try_from(rec.size).ok())
                .flatten(),
            storage_class: wanted(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            request_charged: request_charged(input.request_payer.as_ref()),
            version_id: super::version_header(
                &access.bucket,
                &rec,
                super::which_version(input.version_id.as_deref())?,
            ),
            ..Default::default()
        }))
    }
}

//! PutObject, GetObject, HeadObject, DeleteObject.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use seedbucket_store::{
    Deleted, ObjectAttributes, ObjectRecord, StageTarget, StoreError, StoredHeaders, Which,
    WriteCondition,
};
use tokio::sync::mpsc;

use super::sse::{check_read_key, echo, sse_error};
use super::{
    ClaimedChecksums, Incoming, etag, format_http_date, parse_http_date, parse_tagging_header,
    timestamp, user_metadata,
};
use crate::Seedbucket;
use crate::access::Action;
use crate::conditional::{Conditions, Outcome};
use crate::error::to_s3;

/// Longest key S3 accepts, in UTF-8 bytes.
pub(crate) const MAX_KEY_BYTES: usize = 1024;

pub(crate) fn check_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(KeyTooLongError));
    }
    Ok(())
}

/// The object bytes as an HTTP body (the store reads on a blocking thread).
pub(crate) struct BodyStream(pub(crate) mpsc::Receiver<std::io::Result<Bytes>>);

impl Stream for BodyStream {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// A body stream whose bytes are counted as they are handed to the connection (the
/// statistics of GET and the webseed: a client that hangs up early is not counted for bytes it
/// never got).
pub(crate) struct CountedStream<S> {
    inner: S,
    count: Box<dyn Fn(u64) + Send + Sync>,
}

impl<S> CountedStream<S> {
    pub(crate) fn new(inner: S, count: impl Fn(u64) + Send + Sync + 'static) -> Self {
        Self {
            inner,
            count: Box::new(count),
        }
    }
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin> Stream for CountedStream<S> {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            (self.count)(chunk.len() as u64);
        }
        polled
    }
}

/// Turns a PUT/CreateMultipartUpload's `If-Match`/`If-None-Match` into a store condition.
pub(crate) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<WriteCondition> {
    let mut cond = WriteCondition::default();
    if let Some(c) = if_match {
        cond.if_match = Some(match c {
            ETagCondition::Any => "*".to_owned(),
            ETagCondition::ETag(e) => e.value().to_owned(),
        });
    }
    match if_none_match {
        None => {}
        Some(ETagCondition::Any) => cond.if_none_match_any = true,
        Some(_) => {
            return Err(s3_error!(
                NotImplemented,
                "If-None-Match on writes supports only *"
            ));
        }
    }
    Ok(cond)
}

pub(crate) fn stored_headers(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<&Timestamp>,
) -> StoredHeaders {
    StoredHeaders {
        content_type,
        content_encoding: content_encoding.and_then(|e| without_aws_chunked(&e)),
        content_disposition,
        content_language,
        cache_control,
        expires: expires.and_then(format_http_date),
    }
}

/// A Content-Encoding as stored: `aws-chunked` names how the request body was framed (SigV4
/// streaming), not the object's encoding, so S3 drops it; nothing left means no header.
fn without_aws_chunked(encoding: &str) -> Option<String> {
    let kept: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

fn checksum_type(rec: &ObjectRecord) -> Option<ChecksumType> {
    if rec.checksums.is_empty() {
        return None;
    }
    Some(ChecksumType::from_static(if rec.parts_count.is_some() {
        ChecksumType::COMPOSITE
    } else {
        ChecksumType::FULL_OBJECT
    }))
}

impl Seedbucket {
    pub(crate) async fn h_put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
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
        let key = sse_key!(input)?;
        let sse_s3 = super::wants_sse_s3(
            input.server_side_encryption.as_ref(),
            key.as_ref(),
            bucket_default,
        )?;
        let cond = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let attributes = ObjectAttributes {
            headers: input_headers!(input),
            user_metadata: user_metadata(input.metadata),
            owner,
            acl,
            tags,
            sse_s3,
        };
        let (staged, computed) = self
            .receive_body(
                Incoming {
                    body: input.body,
                    content_length: input.content_length,
                    content_md5: input.content_md5.as_deref(),
                    algorithm: input.checksum_algorithm.as_ref().map(|a| a.as_str()),
                    claimed: ClaimedChecksums {
                        crc32: input.checksum_crc32,
                        crc32c: input.checksum_crc32c,
                        sha1: input.checksum_sha1,
                        sha256: input.checksum_sha256,
                        crc64nvme: input.checksum_crc64nvme,
                    },
                    target: StageTarget::Object {
                        bucket: &input.bucket,
                        key: &input.key,
                        attributes: &attributes,
                    },
                    encryption: super::at_rest(key.as_ref(), sse_s3),
                },
                &req.headers,
                req.trailing_headers.as_ref(),
            )
            .await?;
        let rec = self
            .store
            .commit_object(
                staged,
                &input.bucket,
                &input.key,
                attributes,
                computed,
                cond,
            )
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&rec.etag)),
            checksum_crc32: rec.checksums.crc32.clone(),
            checksum_crc32c: rec.checksums.crc32c.clone(),
            checksum_sha1: rec.checksums.sha1.clone(),
            checksum_sha256: rec.checksums.sha256.clone(),
            checksum_crc64nvme: rec.checksums.crc64nvme.clone(),
            checksum_type: checksum_type(&rec),
            server_side_encryption: super::sse_s3_header(&rec.attributes),
            sse_customer_algorithm: echo(key.as_ref()).0,
            sse_customer_key_md5: echo(key.as_ref()).1,
            request_charged: super::request_charged(input.request_payer.as_ref()),
            version_id: super::version_header(&access.bucket, &rec, Which::Current),
            ..Default::default()
        }))
    }

    pub(crate) async fn h_get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                None,
            )
            .await?;
        let which = super::which_version(input.version_id.as_deref())?;
        let key = sse_key!(input)?;
        let reader = match self
            .store
            .open_object_at(&input.bucket, &input.key, which)
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(self.missing_version(&access, &input.key, e).await),
        };
        access.require_at(
            Action::GetObject,
            Some(&input.key),
            Some(&reader.record),
            which,
        )?;
        if reader.record.delete_marker {
            return Err(super::delete_marker_named(&reader.record));
        }
        check_read_key(&reader.record, key.as_ref())?;
        let (out, view) = head_output(
            &reader.record,
            ReadRequest {
                conditions: Conditions {
                    if_match: input.if_match.as_ref(),
                    if_none_match: input.if_none_match.as_ref(),
                    if_modified_since: input.if_modified_since.as_ref(),
                    if_unmodified_since: input.if_unmodified_since.as_ref(),
                },
                range: input.range.as_ref(),
                part_number: input.part_number,
                checksum_mode: input.checksum_mode.as_ref(),
                overrides: Overrides {
                    content_type: input.response_content_type,
                    content_encoding: input.response_content_encoding,
                    content_disposition: input.response_content_disposition,
                    content_language: input.response_content_language,
                    cache_control: input.response_cache_control,
                    expires: input.response_expires,
                },
            },
        )?;
        let mut out = get_output(out);
        out.version_id = super::version_header(&access.bucket, &reader.record, which);
        let (start, end) = (view.start, view.end);
        (out.sse_customer_algorithm, out.sse_customer_key_md5) = echo(key.as_ref());
        out.request_charged = super::request_charged(input.request_payer.as_ref());
        let stream = match &key {
            Some(k) => reader.decrypted_stream(k, start, end).map_err(sse_error)?,
            None => reader.stream(start, end),
        };
        let (stats, object) = (
            self.stats.clone(),
            format!("{}/{}", input.bucket, input.key),
        );
        out.body = Some(StreamingBlob::wrap(CountedStream::new(
            BodyStream(stream),
            move |n| stats.served_get(&object, n),
        )));
        Ok(S3Response::new(out))
    }

    pub(crate) async fn h_head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                None,
            )
            .await?;
        let which = super::which_version(input.version_id.as_deref())?;
        let key = sse_key!(input)?;
        let rec = self
            .object_at_for(&access, &input.key, Action::GetObject, which)
            .await?;
        if rec.delete_marker {
            return Err(super::delete_marker_named(&rec));
        }
        let (out, view) = head_output(
            &rec,
            ReadRequest {
                conditions: Conditions {
                    if_match: input.if_match.as_ref(),
                    if_none_match: input.if_none_match.as_ref(),
                    if_modified_since: input.if_modified_since.as_ref(),
                    if_unmodified_since: input.if_unmodified_since.as_ref(),
                },
                range: input.range.as_ref(),
                part_number: input.part_number,
                checksum_mode: input.checksum_mode.as_ref(),
                overrides: Overrides {
                    content_type: input.response_content_type,
                    content_encoding: input.response_content_encoding,
                    content_disposition: input.response_content_disposition,
                    content_language: input.response_content_language,
                    cache_control: input.response_cache_control,
                    expires: input.response_expires,
                },
            },
        )?;
        check_read_key(&rec, key.as_ref())?;
        let mut out = out;
        out.version_id = super::version_header(&access.bucket, &rec, which);
        (out.sse_customer_algorithm, out.sse_customer_key_md5) = echo(key.as_ref());
        out.request_charged = super::request_charged(input.request_payer.as_ref());
        let mut resp = S3Response::new(out);
        if view.content_range.is_some() {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    pub(crate) async fn h_delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        // A key too long is answered before a malformed version id, as before.
        check_key(&input.key)?;
        let which = super::which_version(input.version_id.as_deref())?;
        let access = self
            .key_access_at(
                req.credentials.as_ref(),
                &input.bucket,
                &input.key,
                input.expected_bucket_owner.as_deref(),
                Action::DeleteObject,
                which,
            )
            .await?;
        if input.if_match.is_some() {
            let rec = self
                .store
                .head_object_at(&input.bucket, &input.key, which)
                .await
                .map_err(to_s3)?;
            let cond = Conditions {
                if_match: input.if_match.as_ref(),
                if_none_match: None,
                if_modified_since: None,
                if_unmodified_since: None,
            };
            if cond.evaluate(&rec.etag, rec.last_modified_ns) != Outcome::Proceed {
                return Err(s3_error!(PreconditionFailed));
            }
        }
        let deleted = self
            .delete_one(&access, &input.key, input.version_id.as_deref())
            .await
            .map_err(to_s3)?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: deleted.delete_marker.then_some(true),
            version_id: deleted.version_id,
            ..Default::default()
        }))
    }

    /// Deletes one key (or one version of it) for DeleteObject and DeleteObjects.
    async fn delete_one(
        &self,
        access: &crate::access::Access,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Deleted, StoreError> {
        match version_id {
            Some(id) => {
                self.store
                    .delete_version(&access.bucket.name, key, id)
                    .await
            }
            None => {
                let requester = super::writer_id(access);
                self.store
                    .delete_object(&access.bucket.name, key, &requester)
                    .await
            }
        }
    }
}

/// `response-content-*` query overrides of a GET or HEAD.
struct Overrides {
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
}

/// What GetObject and HeadObject share: conditions, range or part, checksum mode, overrides.
struct ReadRequest<'a> {
    conditions: Conditions<'a>,
    range: Option<&'a Range>,
    part_number: Option<i32>,
    checksum_mode: Option<&'a ChecksumMode>,
    overrides: Overrides,
}

/// Evaluates a read against the object and makes the response headers (as HeadObject's
/// output; GetObject converts it with [`get_output`]).
fn head_output(rec: &ObjectRecord, req: ReadRequest<'_>) -> S3Result<(HeadObjectOutput, ByteView)> {
    check_conditions(rec, req.conditions)?;
    let view = ByteView::resolve(rec, req.range, req.part_number)?;
    let whole = view.start == 0 && view.end == rec.size && req.part_number.is_none();
    let checksums = (whole && is_checksum_mode(req.checksum_mode)).then(|| rec.checksums.clone());
    let h = &rec.attributes.headers;
    let o = req.overrides;
    let mut out = HeadObjectOutput {
        accept_ranges: Some("bytes".to_owned()),
        content_length: i64::try_from(view.end - view.start).ok(),
        content_range: view.content_range.clone(),
        e_tag: Some(etag(&rec.etag)),
        last_modified: Some(timestamp(rec.last_modified_ns)),
        metadata: Some(rec.attributes.user_metadata.clone().into_iter().collect()),
        parts_count: rec.parts_count.and_then(|n| i32::try_from(n).ok()),
        // S3's answer for an object stored without a Content-Type.
        content_type: Some(
            o.content_type
                .unwrap_or_else(|| h.content_type_or_default()),
        ),
        content_encoding: o.content_encoding.or_else(|| h.content_encoding.clone()),
        content_disposition: o
            .content_disposition
            .or_else(|| h.content_disposition.clone()),
        content_language: o.content_language.or_else(|| h.content_language.clone()),
        cache_control: o.cache_control.or_else(|| h.cache_control.clone()),
        expires: o
            .expires
            .or_else(|| h.expires.as_deref().and_then(parse_http_date)),
        checksum_type: checksums.as_ref().and_then(|_| checksum_type(rec)),
        server_side_encryption: super::sse_s3_header(&rec.attributes),
        ..Default::default()
    };
    if let Some(c) = checksums {
        out.checksum_crc32 = c.crc32;
        out.checksum_crc32c = c.crc32c;
        out.checksum_sha1 = c.sha1;
        out.checksum_sha256 = c.sha256;
        out.checksum_crc64nvme = c.crc64nvme;
    }
    Ok((out, view))
}

/// The same headers as a GetObject output (the body is set by the caller).
fn get_output(h: HeadObjectOutput) -> GetObjectOutput {
    GetObjectOutput {
        accept_ranges: h.accept_ranges,
        content_length: h.content_length,
        content_range: h.content_range,
        e_tag: h.e_tag,
        last_modified: h.last_modified,
        metadata: h.metadata,
        parts_count: h.parts_count,
        content_type: h.content_type,
        content_encoding: h.content_encoding,
        content_disposition: h.content_disposition,
        content_language: h.content_language,
        cache_control: h.cache_control,
        expires: h.expires,
        checksum_type: h.checksum_type,
        server_side_encryption: h.server_side_encryption,
        checksum_crc32: h.checksum_crc32,
        checksum_crc32c: h.checksum_crc32c,
        checksum_sha1: h.checksum_sha1,
        checksum_sha256: h.checksum_sha256,
        checksum_crc64nvme: h.checksum_crc64nvme,
        ..Default::default()
    }
}

impl Seedbucket {
    /// DeleteObjects: up to 1000 keys; each one deleted on its own (a missing key counts as
    /// deleted, as in S3); `Quiet` reports errors only.
    pub(crate) async fn h_delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let access = self
            .bucket_access(
                req.credentials.as_ref(),
                &input.bucket,
                input.expected_bucket_owner.as_deref(),
                None,
            )
            .await?;
        let objects = input.delete.objects;
        if objects.is_empty() || objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "Delete takes 1 to 1000 keys"));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in objects {
            let which = super::which_version(o.version_id.as_deref());
            let outcome = if o.key.len() > MAX_KEY_BYTES {
                Err(("KeyTooLongError", "Your key is too long".to_owned()))
            } else if let Err(e) = &which {
                Err((
                    "InvalidArgument",
                    e.message()
                        .unwrap_or("Invalid version id specified")
                        .to_owned(),
                ))
            } else if !access.allows_at(
                Action::DeleteObject,
                Some(&o.key),
                None,
                which.unwrap_or(Which::Current),
            ) {
                Err(("AccessDenied", "Access Denied".to_owned()))
            } else {
                self.delete_one(&access, &o.key, o.version_id.as_deref())
                    .await
                    .map_err(|e| {
                        let e = to_s3(e);
                        (
                            "InternalError",
                            e.message().unwrap_or("internal error").to_owned(),
                        )
                    })
            };
            match outcome {
                Ok(_) if quiet => {}
                Ok(d) => {
                    // A marker made by this delete is named as the marker; a version named by
                    // id is echoed, and says whether it was a marker.
                    let made_marker = o.version_id.is_none() && d.delete_marker;
                    deleted.push(DeletedObject {
                        key: Some(o.key),
                        version_id: o.version_id,
                        delete_marker: d.delete_marker.then_some(true),
                        delete_marker_version_id: if made_marker { d.version_id } else { None },
                    })
                }
                Err((code, message)) => errors.push(Error {
                    code: Some(code.to_owned()),
                    key: Some(o.key),
                    message: Some(message),
                    version_id: o.version_id,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }
}

fn is_checksum_mode(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case("ENABLED"))
}

fn check_conditions(rec: &ObjectRecord, c: Conditions<'_>) -> S3Result<()> {
    match c.evaluate(&rec.etag, rec.last_modified_ns) {
        Outcome::Proceed => Ok(()),
        Outcome::PreconditionFailed => Err(s3_error!(PreconditionFailed)),
        Outcome::NotModified => {
            let mut e = s3_error!(NotModified);
            let mut headers = http::HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", rec.etag)) {
                headers.insert(http::header::ETAG, v);
            }
            if let Some(v) = format_http_date(&timestamp(rec.last_modified_ns))
                .and_then(|d| http::HeaderValue::from_str(&d).ok())
            {
                headers.insert(http::header::LAST_MODIFIED, v);
            }
            e.set_headers(headers);
            Err(e)
        }
    }
}

/// The bytes a GET/HEAD returns: the whole object, a `Range`, or a `partNumber`.
struct ByteView {
    start: u64,
    end: u64,
    content_range: Option<String>,
}

impl ByteView {
    fn resolve(
        rec: &ObjectRecord,
        range: Option<&Range>,
        part_number: Option<i32>,
    ) -> S3Result<Self> {
        let size = rec.size;
        match (range, part_number) {
            (Some(_), Some(_)) => Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            )),
            (Some(r), None) => {
                let checked = r.check(size).map_err(|_| {
                    s3_error!(InvalidRange, "The requested range is not satisfiable")
                })?;
                Ok(Self {
                    start: checked.start,
                    end: checked.end,
                    content_range: Some(format!(
                        "bytes {}-{}/{}",
                        checked.start,
                        checked.end.saturating_sub(1),
                        size
                    )),
                })
            }
            (None, Some(n)) => {
                let n = super::part_number(n)?;
                // A part the object does not have (any but 1 of a single-part object).
                let (start, end) = rec.part_range(n).ok_or_else(|| {
                    crate::error::with_status(
                        "InvalidPartNumber",
                        "The requested partnumber is not satisfiable",
                        http::StatusCode::BAD_REQUEST,
                    )
                })?;
                // S3 answers 206 with a Content-Range for multipart objects' parts.
                let content_range = (rec.parts_count.is_some() && end > start)
                    .then(|| format!("bytes {}-{}/{}", start, end - 1, size));
                Ok(Self {
                    start,
                    end,
                    content_range,
                })
            }
            (None, None) => Ok(Self {
                start: 0,
                end: size,
                content_range: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_aws_chunked;

    #[test]
    fn aws_chunked_is_not_stored() {
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(
            without_aws_chunked("aws-chunked, gzip").as_deref(),
            Some("gzip")
        );
        assert_eq!(
            without_aws_chunked("gzip,AWS-Chunked,br").as_deref(),
            Some("gzip,br")
        );
        assert_eq!(without_aws_chunked("identity").as_deref(), Some("identity"));
        assert_eq!(without_aws_chunked(" , "), None);
    }
}

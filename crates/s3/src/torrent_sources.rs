//! Which object serves an info-hash, for whom: the one decision the webseed, the trackers and
//! the seeder share.
//!
//! Identical bytes under the same file name give the same info-hash, so one info-hash can have
//! several sources ([`TorrentSources`], one record per object). A source serves while its
//! object is unchanged: same version, or (identical bytes uploaded again to the same key) a new
//! version whose stored piece hashes give the same info-hash, which then replaces the record.
//! An open torrent is served from any unchanged source anyone may read. A private torrent is
//! served only through a token, and only from the object that token was issued for, while the
//! token's key may read it: other objects with the same bytes neither help nor hurt it.

use seedbucket_store::Which;
use seedbucket_store::pieces::{IssuedTorrent, TorrentSources};
use seedbucket_torrent::{Format, InfoHashes, build_info};

use crate::Seedbucket;
use crate::tokens::TokenGrant;

/// The answer for one request for an info-hash's bytes.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// Serve it from this source (its record brought up to the object's current version).
    Serve(IssuedTorrent),
    /// No such torrent, as far as this requester may learn: unknown info-hash, or a private
    /// torrent without a genuine token for one of its objects. Answered like an unknown one.
    Unknown,
    /// The requester's object (every object, for an open torrent) was deleted or changed.
    Gone,
    /// The object is there, but the token's key (anyone, for an open torrent) may not read it.
    Forbidden,
}

/// The info-hashes (hex) a torrent is recorded under: its primary one, and the truncated v2
/// one of a hybrid.
pub(crate) fn recorded_hashes(ih: &InfoHashes, format: Format) -> Vec<String> {
    let mut hashes = vec![hex::encode(ih.primary())];
    if let (Some(v2), true) = (ih.v2_truncated(), format == Format::Hybrid) {
        hashes.push(hex::encode(v2));
    }
    hashes
}

impl Seedbucket {
    /// The source to serve `sources` from, for the holder of `grant` (`None`: no genuine token).
    pub(crate) async fn resolve_source(
        &self,
        sources: &TorrentSources,
        grant: Option<&TokenGrant>,
    ) -> Resolved {
        if sources.is_empty() {
            return Resolved::Unknown;
        }
        if sources.private() {
            let Some(grant) = grant else {
                return Resolved::Unknown;
            };
            let Some(rec) = sources.of_object(grant.object.as_deref()) else {
                return Resolved::Unknown;
            };
            let Some(live) = self.still_serving(rec).await else {
                return Resolved::Gone;
            };
            return if self.may_read(Some(&grant.access_key), &live).await {
                Resolved::Serve(live)
            } else {
                Resolved::Forbidden
            };
        }
        let mut any_live = false;
        for rec in &sources.records {
            if let Some(live) = self.still_serving(rec).await {
                any_live = true;
                if self.may_read(None, &live).await {
                    return Resolved::Serve(live);
                }
            }
        }
        if any_live {
            Resolved::Forbidden
        } else {
            Resolved::Gone
        }
    }

    /// `rec` brought up to its object's current version, if that version still serves the
    /// info-hash; `None` once the object was deleted or its bytes changed.
    pub(crate) async fn still_serving(&self, rec: &IssuedTorrent) -> Option<IssuedTorrent> {
        // Asked on every announce: in gateway mode a record read within the last second will do.
        let current = self
            .store
            .head_object_recent(&rec.bucket, &rec.key)
            .await
            .ok()?;
        if current.version == rec.version {
            return Some(rec.clone());
        }
        // A noncurrent version of a versioned bucket serves its torrent while it exists.
        if self
            .store
            .head_object_at(&rec.bucket, &rec.key, Which::Exact(&rec.version))
            .await
            .is_ok()
        {
            return Some(rec.clone());
        }
        if current.is_sse_c() {
            return None;
        }
        // Uploaded again: the same info-hash from its stored piece hashes means the same bytes.
        // (Hashes are never made here: a request for a torrent must not start a long read.)
        let pieces = self
            .store
            .stored_pieces(&current, &rec.bucket, &rec.key)
            .await
            .ok()??;
        let format = Format::parse(&rec.format)?;
        let info = build_info(&rec.name, &pieces.hashes, format, rec.private).ok()?;
        let ih = InfoHashes::of_info(&info, format);
        if hex::encode(ih.primary()) != rec.info_hash {
            return None;
        }
        let renewed = IssuedTorrent {
            version: current.version.clone(),
            created_ns: pieces.created_ns,
            ..rec.clone()
        };
        if let Err(e) = self
            .store
            .issue_torrent(recorded_hashes(&ih, format), renewed.clone())
            .await
        {
            tracing::warn!(error = %e, "could not record the new version of a torrent's object");
        }
        Some(renewed)
    }
}

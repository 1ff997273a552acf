//! The web console on the admin listener: log in with an access key, browse buckets and
//! objects, get an object's torrent, magnet link, webseed URL and swarm, upload (multipart for
//! large files), delete, toggle public-read, and (administrators) see the totals: bytes
//! delivered to clients against bytes the server sent.
//!
//! The console is an S3 client of this very server: every action is an S3 call signed with the
//! logged-in key, sent to the S3 listener over loopback, so a key sees and does exactly what
//! S3 would let it (and the access log names it). What S3 has no call for (traffic, swarms,
//! totals) comes from the server's own figures, after an S3 call showed the key may read the
//! object. Pages are rendered here ([`pages`]); `console.js` adds uploads, copy buttons and
//! live numbers. Everything is served from the binary: no CDN.

mod history;
mod pages;
mod session;

/// Bytes for people, and a query or form value percent-encoded (for the `bucket` and `stats`
/// commands).
pub use self::pages::{human, q as form_encode};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectCannedAcl, Permission};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use seedbucket_s3::Seedbucket;
use seedbucket_store::credentials::KeyRing;

use self::history::{History, Sample};
use self::pages::Viewer;
use self::session::Sessions;

/// Part size of the browser's multipart uploads (files larger than one part are uploaded in
/// parts of this size).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Largest request body the console reads (a part, with room to spare).
const MAX_BODY: usize = 2 * PART_SIZE as usize;
/// Largest form body.
const MAX_FORM: usize = 64 * 1024;
/// Objects per page of a listing.
const PAGE: i32 = 100;

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");

type Answer = Response<Full<Bytes>>;

pub struct Console {
    app: Seedbucket,
    keys: Arc<KeyRing>,
    /// The S3 listener, as this process reaches it: `http://127.0.0.1:9000`.
    s3_endpoint: String,
    region: String,
    sessions: Sessions,
    history: History,
    /// An S3 client per access key (with the secret it was made with).
    clients: Mutex<HashMap<String, (String, aws_sdk_s3::Client)>>,
    /// Request bodies the console holds in memory at once (up to [`MAX_BODY`] each).
    bodies: tokio::sync::Semaphore,
}

/// Bodies read at once; past it a request waits up to [`BODY_WAIT`], then gets 503.
const MAX_BODIES: usize = 8;
const BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Time to send a whole request body (a part is 8 MiB).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Console {
    /// A console for `app`, whose S3 listener is bound to `s3_listen`. Starts sampling the
    /// totals for the chart.
    pub fn start(
        app: Seedbucket,
        keys: Arc<KeyRing>,
        s3_listen: SocketAddr,
        region: &str,
    ) -> Arc<Self> {
        let ip = match s3_listen.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let console = Arc::new(Self {
            app,
            keys,
            s3_endpoint: format!("http://{}", SocketAddr::new(ip, s3_listen.port())),
            region: region.to_owned(),
            sessions: Sessions::default(),
            history: History::default(),
            clients: Mutex::default(),
            bodies: tokio::sync::Semaphore::new(MAX_BODIES),
        });
        let sampling = Arc::downgrade(&console);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(history::EVERY);
            loop {
                tick.tick().await;
                let Some(c) = sampling.upgrade() else { return };
                c.history.record(c.sample());
            }
        });
        console
    }

    fn sample(&self) -> Sample {
        Sample {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            totals: self.app.totals(),
        }
    }

    /// The S3 client signing as `access_key` (made once per key and secret).
    fn client(&self, access_key: &str) -> Option<aws_sdk_s3::Client> {
        use aws_sdk_s3::config::{
            BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
            ResponseChecksumValidation,
        };
        let key = self.keys.get(access_key)?;
        let mut clients = self.clients.lock().ok()?;
        if let Some((secret, c)) = clients.get(access_key)
            && session::same(secret, &key.secret_key)
        {
            return Some(c.clone());
        }
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.s3_endpoint)
            .region(Region::new(self.region.clone()))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                key.access_key.clone(),
                key.secret_key.clone(),
                None,
                None,
                "seedbucket-console",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        if clients.len() > 1000 {
            clients.clear();
        }
        clients.insert(access_key.to_owned(), (key.secret_key, client.clone()));
        Some(client)
    }

    /// Answers one request to the admin listener that is not `/metrics`, `/health` or
    /// `/lifecycle/run`.
    pub async fn handle(&self, req: Request<Incoming>, remote: SocketAddr) -> Answer {
        let path = req.uri().path().to_owned();
        let query = parse_pairs(req.uri().query().unwrap_or(""));
        let method = req.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/static/console.css") => {
                return asset(CSS, "text/css; charset=utf-8");
            }
            (&Method::GET, "/static/console.js") => {
                return asset(JS, "text/javascript; charset=utf-8");
            }
            (&Method::GET, "/login") => return html(StatusCode::OK, pages::login(None), None),
            (&Method::POST, "/login") => return self.login(req, remote).await,
            _ => {}
        }
        let session_id = session::cookie_value(req.headers());
        let session = session_id
            .as_deref()
            .and_then(|id| self.sessions.get(id))
            .filter(|s| self.keys.get(&s.access_key).is_some());
        let Some(session) = session else {
            if let Some(id) = &session_id {
                self.sessions.close(id);
            }
            return if method == Method::GET && !path.starts_with("/api/") {
                redirect("/login", Some(session::clear_cookie()))
            } else {
                plain(
                    StatusCode::UNAUTHORIZED,
                    "no console session: log in at /login",
                )
            };
        };
        let Some(user) = self.keys.get(&session.access_key) else {
            return redirect("/login", Some(session::clear_cookie()));
        };
        let Some(client) = self.client(&session.access_key) else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "console unavailable");
        };
        let viewer = Viewer {
            name: &user.name,
            access_key: &user.access_key,
            admin: user.is_admin(),
            csrf: &session.csrf,
        };
        let ctx = Ctx {
            client,
            viewer,
            query,
        };
        if method == Method::GET {
            return self.get(&ctx, &path).await;
        }
        if !same_origin(req.headers()) {
            return plain(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let limit = if path.starts_with("/api/") {
            MAX_BODY
        } else {
            MAX_FORM
        };
        let Ok(Ok(_reading)) = tokio::time::timeout(BODY_WAIT, self.bodies.acquire()).await else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the console is busy with other uploads; try again",
            );
        };
        let read =
            tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), limit).collect());
        let body = match read.await {
            Ok(Ok(b)) => b.to_bytes(),
            Err(_) => {
                return plain(StatusCode::REQUEST_TIMEOUT, "request body too slow");
            }
            Ok(Err(_)) => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large or cut short",
                );
            }
        };
        let form = if path.starts_with("/api/") {
            HashMap::new()
        } else {
            parse_pairs(&String::from_utf8_lossy(&body))
        };
        let token = header_token.or_else(|| form.get("csrf").cloned());
        if !token.is_some_and(|t| session::same(&t, &session.csrf)) {
            return plain(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: reload the page",
            );
        }
        if path == "/logout" {
            if let Some(id) = &session_id {
                self.sessions.close(id);
            }
            return redirect("/login", Some(session::clear_cookie()));
        }
        self.change(&ctx, &method, &path, &form, body).await
    }

    async fn login(&self, req: Request<Incoming>, remote: SocketAddr) -> Answer {
        if !same_origin(req.headers()) {
            return plain(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
        if !self.sessions.may_try_login(remote.ip()) {
            return html(
                StatusCode::TOO_MANY_REQUESTS,
                pages::login(Some("Too many failed logins; wait a minute.")),
                None,
            );
        }
        let Ok(body) = Limited::new(req.into_body(), MAX_FORM).collect().await else {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
        };
        let form = parse_pairs(&String::from_utf8_lossy(&body.to_bytes()));
        let access_key = form.get("access_key").map(|s| s.trim()).unwrap_or("");
        let secret = form.get("secret_key").map(String::as_str).unwrap_or("");
        let valid = self
            .keys
            .get(access_key)
            .is_some_and(|k| session::same(&k.secret_key, secret));
        if !valid {
            self.sessions.login_failed(remote.ip());
            return html(
                StatusCode::UNAUTHORIZED,
                pages::login(Some("Wrong access key or secret key.")),
                None,
            );
        }
        let (id, _) = self.sessions.open(access_key);
        redirect("/buckets", Some(session::set_cookie(&id)))
    }

    async fn get(&self, ctx: &Ctx<'_>, path: &str) -> Answer {
        match path {
            "/" => redirect("/buckets", None),
            "/buckets" => self.buckets_page(ctx, None).await,
            "/objects" => self.objects_page(ctx, None).await,
            "/object" => self.object_page(ctx).await,
            "/torrent" => self.torrent_file(ctx).await,
            "/totals" if ctx.viewer.admin => {
                let now = self.sample();
                let stored = self.app.storage_usage().await;
                let body = pages::totals(&now.totals, stored, &self.history.thinned(240, now));
                ctx.page(StatusCode::OK, "Totals", None, &body)
            }
            "/totals" => ctx.page(
                StatusCode::FORBIDDEN,
                "Totals",
                None,
                &pages::problem(
                    "Totals",
                    "The server's totals are for administrator keys.",
                    "/buckets",
                ),
            ),
            "/api/object-stats" => self.object_stats(ctx).await,
            "/api/session" => json(
                StatusCode::OK,
                &serde_json::json!({
                    "access_key": ctx.viewer.access_key,
                    "name": ctx.viewer.name,
                    "admin": ctx.viewer.admin,
                    "csrf": ctx.viewer.csrf,
                }),
            ),
            "/api/buckets" => self.buckets_json(ctx).await,
            "/api/totals" if ctx.viewer.admin => {
                let stored = self.app.storage_usage().await;
                json(StatusCode::OK, &totals_json(&self.sample(), stored))
            }
            _ => ctx.page(
                StatusCode::NOT_FOUND,
                "Not found",
                None,
                &pages::problem("Not found", "There is no such page.", "/buckets"),
            ),
        }
    }

    async fn buckets_page(&self, ctx: &Ctx<'_>, flash: Option<&str>) -> Answer {
        match ctx.client.list_buckets().send().await {
            Ok(out) => {
                let rows: Vec<pages::BucketRow> = out
                    .buckets()
                    .iter()
                    .map(|b| pages::BucketRow {
                        name: b.name().unwrap_or_default().to_owned(),
                        created: b.creation_date().map(date).unwrap_or_default(),
                    })
                    .collect();
                ctx.page(
                    StatusCode::OK,
                    "Buckets",
                    flash,
                    &pages::buckets(&rows, ctx.viewer.csrf),
                )
            }
            Err(e) => ctx.refused("Buckets", &s3_message(&e), "/buckets"),
        }
    }

    async fn objects_page(&self, ctx: &Ctx<'_>, flash: Option<&str>) -> Answer {
        let bucket = ctx.arg("bucket");
        let prefix = ctx.arg("prefix");
        let listed = ctx
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(PAGE)
            .set_continuation_token(ctx.query.get("after").cloned())
            .send()
            .await;
        let out = match listed {
            Ok(out) => out,
            Err(e) => return ctx.refused(bucket, &s3_message(&e), "/buckets"),
        };
        let publics = futures::future::join_all(
            out.contents()
                .iter()
                .map(|o| is_public(&ctx.client, bucket, o.key().unwrap_or_default())),
        )
        .await;
        let rows: Vec<pages::ObjectRow> = out
            .contents()
            .iter()
            .zip(publics)
            .map(|(o, public)| pages::ObjectRow {
                key: o.key().unwrap_or_default().to_owned(),
                size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                etag: o.e_tag().unwrap_or_default().to_owned(),
                last_modified: o.last_modified().map(date).unwrap_or_default(),
                public,
            })
            .collect();
        let body = pages::objects(&pages::ObjectList {
            bucket,
            prefix,
            rows: &rows,
            next: out.next_continuation_token(),
            csrf: ctx.viewer.csrf,
            part_size: PART_SIZE,
        });
        ctx.page(StatusCode::OK, bucket, flash, &body)
    }

    async fn object_page(&self, ctx: &Ctx<'_>) -> Answer {
        let (bucket, key) = (ctx.arg("bucket"), ctx.arg("key"));
        let back = format!("/objects?bucket={}", pages::q(bucket));
        let head = match ctx
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(h) => h,
            Err(e) => return ctx.refused(key, &s3_message(&e), &back),
        };
        let public = is_public(&ctx.client, bucket, key).await;
        let torrent = self.torrent_info(ctx, bucket, key).await;
        let swarm = match &torrent {
            Ok(t) => self.swarm(bucket, key, t).await,
            Err(_) => pages::SwarmNumbers::default(),
        };
        let body = pages::object(&pages::ObjectDetail {
            bucket,
            key,
            size: head
                .content_length()
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
            etag: head.e_tag().unwrap_or_default().to_owned(),
            last_modified: head.last_modified().map(date).unwrap_or_default(),
            content_type: head.content_type().unwrap_or_default().to_owned(),
            public,
            torrent,
            swarm,
            traffic: self.app.object_traffic(bucket, key),
            csrf: ctx.viewer.csrf,
        });
        ctx.page(StatusCode::OK, key, None, &body)
    }

    /// The object's `?torrent` in its JSON form, as the key may have it.
    async fn torrent_info(
        &self,
        ctx: &Ctx<'_>,
        bucket: &str,
        key: &str,
    ) -> Result<pages::TorrentInfo, String> {
        let out = ctx
            .client
            .get_object_torrent()
            .bucket(bucket)
            .key(key)
            .customize()
            .mutate_request(|r| {
                r.headers_mut().insert("accept", "application/json");
            })
            .send()
            .await;
        let out = out.map_err(|e| s3_message(&e))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| format!("reading the torrent: {e}"))?
            .into_bytes();
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("torrent answer: {e}"))?;
        let d = &v["data"];
        let text = |k: &str| d[k].as_str().map(str::to_owned);
        Ok(pages::TorrentInfo {
            magnet: text("magnet").unwrap_or_default(),
            webseed: text("webseed").unwrap_or_default(),
            info_hash_v1: text("info_hash_v1"),
            info_hash_v2: text("info_hash_v2"),
            format: text("format").unwrap_or_default(),
            private: d["private"].as_bool().unwrap_or(false),
            piece_length: d["piece_length"].as_u64().unwrap_or(0),
        })
    }

    async fn swarm(&self, bucket: &str, key: &str, t: &pages::TorrentInfo) -> pages::SwarmNumbers {
        self.swarm_by_hash(bucket, key, t.swarm_hash()).await
    }

    /// The swarm of the torrent with info-hash `ih` (hex) issued for `bucket`/`key`; zeros for
    /// any other info-hash.
    async fn swarm_by_hash(&self, bucket: &str, key: &str, ih: &str) -> pages::SwarmNumbers {
        if ih.is_empty() {
            return pages::SwarmNumbers::default();
        }
        self.app
            .swarm_numbers(bucket, key, ih)
            .await
            .map(|(seeders, leechers, completed)| pages::SwarmNumbers {
                seeders,
                leechers,
                completed,
            })
            .unwrap_or_default()
    }

    /// `GET /api/object-stats?bucket=&key=`: the object page's live numbers.
    async fn object_stats(&self, ctx: &Ctx<'_>) -> Answer {
        let (bucket, key) = (ctx.arg("bucket"), ctx.arg("key"));
        // The key must still read the object; the swarm is the one of the info-hash the page
        // was rendered with (checked to be this object's), so polling issues no torrent.
        if let Err(e) = ctx
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            return plain(StatusCode::FORBIDDEN, &s3_message(&e));
        }
        let swarm = self.swarm_by_hash(bucket, key, ctx.arg("ih")).await;
        let traffic = self.app.object_traffic(bucket, key);
        json(
            StatusCode::OK,
            &serde_json::json!({
                "seeders": swarm.seeders,
                "leechers": swarm.leechers,
                "completed": swarm.completed,
                "get": pages::human(traffic.get),
                "webseed": pages::human(traffic.webseed),
                "peer": pages::human(traffic.peer),
                "finished": pages::finished(&swarm, &traffic),
                "bytes": {
                    "get": traffic.get,
                    "webseed": traffic.webseed,
                    "peer": traffic.peer,
                },
            }),
        )
    }

    /// `GET /torrent?bucket=&key=`: the `.torrent` file, as GetObjectTorrent answers it.
    async fn torrent_file(&self, ctx: &Ctx<'_>) -> Answer {
        let (bucket, key) = (ctx.arg("bucket"), ctx.arg("key"));
        let out = match ctx
            .client
            .get_object_torrent()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => return plain(StatusCode::BAD_GATEWAY, &s3_message(&e)),
        };
        let Ok(bytes) = out.body.collect().await.map(|b| b.into_bytes()) else {
            return plain(StatusCode::BAD_GATEWAY, "the torrent could not be read");
        };
        let name = key.rsplit('/').next().unwrap_or(key);
        let ascii: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut r = Response::new(Full::new(bytes));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-bittorrent"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"{ascii}.torrent\"; filename*=UTF-8''{}.torrent",
            pages::q(name)
        )) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        security_headers(h);
        r
    }

    /// POSTs (and the upload API's PUTs), CSRF already checked.
    async fn change(
        &self,
        ctx: &Ctx<'_>,
        method: &Method,
        path: &str,
        form: &HashMap<String, String>,
        body: Bytes,
    ) -> Answer {
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let (bucket, key) = (field("bucket"), field("key"));
        let objects = format!("/objects?bucket={}", pages::q(bucket));
        match (method, path) {
            (&Method::POST, "/buckets/create" | "/buckets/delete") => {
                let bucket = bucket.trim();
                let c = &ctx.client;
                let (verb, done, next) = if path == "/buckets/create" {
                    let made = c.create_bucket().bucket(bucket).send().await;
                    let objects = format!("/objects?bucket={}", pages::q(bucket));
                    (
                        "create",
                        made.map(drop).map_err(|e| s3_message(&e)),
                        objects,
                    )
                } else {
                    let gone = c.delete_bucket().bucket(bucket).send().await;
                    (
                        "delete",
                        gone.map(drop).map_err(|e| s3_message(&e)),
                        "/buckets".to_owned(),
                    )
                };
                match done {
                    Ok(()) => redirect(&next, None),
                    Err(why) => {
                        let flash = format!("Could not {verb} {bucket}: {why}");
                        self.buckets_page(ctx, Some(&flash)).await
                    }
                }
            }
            (&Method::POST, "/objects/delete") => {
                match ctx
                    .client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                {
                    Ok(_) => redirect(&objects, None),
                    Err(e) => ctx.refused(key, &s3_message(&e), &objects),
                }
            }
            (&Method::POST, "/objects/public") => {
                let acl = if field("public") == "on" {
                    ObjectCannedAcl::PublicRead
                } else {
                    ObjectCannedAcl::Private
                };
                match ctx
                    .client
                    .put_object_acl()
                    .bucket(bucket)
                    .key(key)
                    .acl(acl)
                    .send()
                    .await
                {
                    Ok(_) => redirect(
                        &format!("/object?bucket={}&key={}", pages::q(bucket), pages::q(key)),
                        None,
                    ),
                    Err(e) => ctx.refused(key, &s3_message(&e), &objects),
                }
            }
            _ if path.starts_with("/api/upload/") => self.upload(ctx, path, body).await,
            _ if path.starts_with("/api/buckets/") => self.bucket_api(ctx, path).await,
            _ => plain(StatusCode::NOT_FOUND, "no such action"),
        }
    }

    /// `GET /api/buckets`: the buckets the key may list (`seedbucket bucket list`), with their
    /// owners' key names for administrators.
    async fn buckets_json(&self, ctx: &Ctx<'_>) -> Answer {
        let out = match ctx.client.list_buckets().send().await {
            Ok(out) => out,
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": s3_message(&e) }),
                );
            }
        };
        let mut rows = Vec::new();
        for b in out.buckets() {
            let name = b.name().unwrap_or_default();
            let owner = if ctx.viewer.admin {
                self.app
                    .bucket_owner(name)
                    .await
                    .and_then(|id| self.keys.by_user(&id))
                    .map(|k| k.name)
            } else {
                None
            };
            rows.push(serde_json::json!({
                "name": name,
                "created": b.creation_date().map(date),
                "owner": owner,
            }));
        }
        json(StatusCode::OK, &serde_json::Value::Array(rows))
    }

    /// The bucket calls of `seedbucket bucket` (JSON answers; arguments in the query):
    /// - `POST /api/buckets/create?bucket=`, `POST /api/buckets/delete?bucket=`;
    /// - `POST /api/buckets/public?bucket=&public=on|off`: a bucket policy letting anyone
    ///   read every object (and its torrent), or no policy;
    /// - `POST /api/buckets/chown?bucket=&owner=KEY` (administrators): a new owner.
    async fn bucket_api(&self, ctx: &Ctx<'_>, path: &str) -> Answer {
        let bucket = ctx.arg("bucket");
        let named = serde_json::json!({ "bucket": bucket });
        let c = &ctx.client;
        match path {
            "/api/buckets/create" => {
                json_result(c.create_bucket().bucket(bucket).send().await, |_| {
                    named.clone()
                })
            }
            "/api/buckets/delete" => {
                json_result(c.delete_bucket().bucket(bucket).send().await, |_| {
                    named.clone()
                })
            }
            "/api/buckets/public" => match ctx.arg("public") {
                "on" => json_result(
                    c.put_bucket_policy()
                        .bucket(bucket)
                        .policy(public_read_policy(bucket))
                        .send()
                        .await,
                    |_| named.clone(),
                ),
                "off" => json_result(c.delete_bucket_policy().bucket(bucket).send().await, |_| {
                    named.clone()
                }),
                _ => json_error("public must be on or off".to_owned()),
            },
            "/api/buckets/chown" => {
                if !ctx.viewer.admin {
                    return json(
                        StatusCode::FORBIDDEN,
                        &serde_json::json!({ "error": "changing a bucket's owner is for administrator keys" }),
                    );
                }
                let owner = ctx.arg("owner");
                let Some(key) = self.keys.by_id_or_name(owner) else {
                    return json_error(format!("no key with name or access key id {owner:?}"));
                };
                if self.app.bucket_owner(bucket).await.is_none() {
                    return json_error(format!("NoSuchBucket: no bucket {bucket:?}"));
                }
                match self.app.set_bucket_owner(bucket, &key.user_id).await {
                    Ok(()) => json(StatusCode::OK, &named),
                    Err(e) => json_error(e),
                }
            }
            _ => plain(StatusCode::NOT_FOUND, "no such bucket call"),
        }
    }

    /// The upload API `console.js` drives (JSON answers):
    /// - `PUT /api/upload/object?bucket=&key=` with the whole file (up to one part);
    /// - `POST /api/upload/create?bucket=&key=` -> `{"upload_id"}`;
    /// - `PUT /api/upload/part?bucket=&key=&upload_id=&part=N` -> `{"etag"}`;
    /// - `POST /api/upload/complete?bucket=&key=&upload_id=` with the ETags one per line;
    /// - `POST /api/upload/abort?bucket=&key=&upload_id=`.
    async fn upload(&self, ctx: &Ctx<'_>, path: &str, body: Bytes) -> Answer {
        let (bucket, key) = (ctx.arg("bucket"), ctx.arg("key"));
        let upload_id = ctx.arg("upload_id");
        let content_type = ctx.query.get("type").filter(|t| !t.is_empty()).cloned();
        let etag = |e: Option<&str>| serde_json::json!({ "etag": e.unwrap_or_default() });
        let c = &ctx.client;
        match path {
            "/api/upload/object" => json_result(
                c.put_object()
                    .bucket(bucket)
                    .key(key)
                    .set_content_type(content_type)
                    .body(ByteStream::from(body))
                    .send()
                    .await,
                |o| etag(o.e_tag()),
            ),
            "/api/upload/create" => json_result(
                c.create_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .set_content_type(content_type)
                    .send()
                    .await,
                |o| serde_json::json!({ "upload_id": o.upload_id().unwrap_or_default() }),
            ),
            "/api/upload/part" => {
                let Ok(part) = ctx.arg("part").parse::<i32>() else {
                    return json_error("part must be a number".to_owned());
                };
                json_result(
                    c.upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(part)
                        .body(ByteStream::from(body))
                        .send()
                        .await,
                    |o| etag(o.e_tag()),
                )
            }
            "/api/upload/complete" => {
                let parts: Vec<CompletedPart> = String::from_utf8_lossy(&body)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .enumerate()
                    .map(|(i, etag)| {
                        CompletedPart::builder()
                            .part_number(i32::try_from(i + 1).unwrap_or(i32::MAX))
                            .e_tag(etag.trim())
                            .build()
                    })
                    .collect();
                json_result(
                    c.complete_multipart_upload()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .multipart_upload(
                            CompletedMultipartUpload::builder()
                                .set_parts(Some(parts))
                                .build(),
                        )
                        .send()
                        .await,
                    |o| etag(o.e_tag()),
                )
            }
            "/api/upload/abort" => json_result(
                c.abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await,
                |_| serde_json::json!({}),
            ),
            _ => plain(StatusCode::NOT_FOUND, "no such upload call"),
        }
    }
}

/// One request's logged-in context.
struct Ctx<'a> {
    client: aws_sdk_s3::Client,
    viewer: Viewer<'a>,
    query: HashMap<String, String>,
}

impl Ctx<'_> {
    fn arg(&self, name: &str) -> &str {
        self.query.get(name).map(String::as_str).unwrap_or("")
    }

    fn page(&self, status: StatusCode, title: &str, flash: Option<&str>, body: &str) -> Answer {
        html(
            status,
            pages::page(title, Some(&self.viewer), flash, body),
            None,
        )
    }

    /// A page saying S3 refused (or failed) a call.
    fn refused(&self, title: &str, message: &str, back: &str) -> Answer {
        self.page(
            StatusCode::OK,
            title,
            None,
            &pages::problem(title, message, back),
        )
    }
}

/// Whether the object's ACL grants everyone READ (`None`: the key may not read the ACL).
async fn is_public(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<bool> {
    let acl = client
        .get_object_acl()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(acl.grants().iter().any(|g| {
        g.grantee()
            .and_then(|e| e.uri())
            .is_some_and(|u| u.ends_with("/global/AllUsers"))
            && matches!(
                g.permission(),
                Some(Permission::Read | Permission::FullControl)
            )
    }))
}

/// What S3 said, for people: `NoSuchBucket: The specified bucket does not exist`.
fn s3_message<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // A refusal of a request that asked for JSON (`?torrent` with `Accept: application/json`)
    // is the JSON envelope, which the SDK does not read.
    let envelope = e
        .raw_response()
        .and_then(|r| r.body().bytes())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    let from_json = envelope.as_ref().and_then(|v| {
        Some((
            v["error"]["code"].as_str()?,
            v["error"]["message"].as_str().unwrap_or(""),
        ))
    });
    match (e.code(), e.message(), from_json) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c.to_owned(),
        (None, _, Some((c, m))) => format!("{c}: {m}"),
        _ => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(404) => "Not found".to_owned(),
            Some(403) => "Access denied".to_owned(),
            Some(s) => format!("S3 answered {s}"),
            None => format!(
                "the S3 listener did not answer ({})",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ),
        },
    }
}

/// The JSON answer to an S3 call: `ok(output)`, or `{"error"}` with S3's code and message.
fn json_result<T, E>(
    r: Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    ok: impl FnOnce(T) -> serde_json::Value,
) -> Answer
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match r {
        Ok(out) => json(StatusCode::OK, &ok(out)),
        Err(e) => json_error(s3_message(&e)),
    }
}

fn json_error(message: String) -> Answer {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": message }),
    )
}

/// A bucket policy that lets anyone read every object of `bucket` and get its torrent.
fn public_read_policy(bucket: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:GetObjectTorrent"],
            "Resource": [format!("arn:aws:s3:::{bucket}/*")],
        }],
    })
    .to_string()
}

fn date(d: &aws_sdk_s3::primitives::DateTime) -> String {
    // `2026-12-01T16:56:39.308Z` -> `2026-12-01 16:56:39 UTC`
    d.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime)
        .map(|s| {
            let whole = s.split(['.', 'Z']).next().unwrap_or(&s).replace('T', " ");
            format!("{whole} UTC")
        })
        .unwrap_or_default()
}

fn totals_json(s: &Sample, stored: Option<seedbucket_store::Usage>) -> serde_json::Value {
    let t = &s.totals;
    let mut v = serde_json::json!({
        "at": s.at,
        "get": t.get,
        "webseed": t.webseed,
        "peer": t.peer,
        "delivered": t.delivered,
        "saved": t.saved(),
    });
    if let Some(u) = stored {
        v["objects"] = u.objects.into();
        v["noncurrent_versions"] = u.noncurrent_versions.into();
        v["bytes_stored"] = u.bytes.into();
    }
    v
}

/// `a=1&b=x+y` into a map (form and query encoding: `+` is a space).
fn parse_pairs(s: &str) -> HashMap<String, String> {
    let decode = |v: &str| {
        percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A state-changing request must come from a page of this console: when the browser names an
/// `Origin`, its host is the `Host` the request went to.
fn same_origin(h: &http::HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

fn security_headers(h: &mut http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn html(status: StatusCode, body: String, cookie: Option<String>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, v);
    }
    r
}

fn redirect(to: &str, cookie: Option<String>) -> Answer {
    let mut r = html(StatusCode::SEE_OTHER, String::new(), cookie);
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn plain(status: StatusCode, text: &str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    security_headers(r.headers_mut());
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    security_headers(r.headers_mut());
    r
}

fn asset(text: &'static str, ctype: &'static str) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let m = parse_pairs("a=1&b=x+y%2Fz&c&csrf=%3C");
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x y/z");
        assert_eq!(m["c"], "");
        assert_eq!(m["csrf"], "<");
    }

    #[test]
    fn origins() {
        let mut h = http::HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9001"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9001"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }
}

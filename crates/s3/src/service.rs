//! The HTTP front of the S3 port: request ids on every response, `/_seedbucket/...` routes
//! (which no bucket name can reach, since bucket names cannot contain `_`), then s3s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, HttpError};
use seedbucket_store::credentials::KeyRing;

use crate::body_limits::OverCap;
use crate::connections::ConnActivity;
use crate::guarded_body::{BodyFailure, BodyLimits, BodyReport, GuardedBody};
use crate::{KeyRingAuth, Seedbucket};

/// Path prefix of everything on the S3 port that is not S3.
pub const INTERNAL_PREFIX: &str = "/_seedbucket/";

/// Builds the s3s service: our handlers, signature keys from the key ring, and virtual-host
/// style addressing for `domains` (path style always works).
pub fn s3_service(
    s3: Seedbucket,
    keys: Arc<KeyRing>,
    domains: &[String],
) -> Result<S3Service, String> {
    let mut b = S3ServiceBuilder::new(s3.clone());
    b.set_auth(KeyRingAuth(keys));
    b.set_access(crate::auth::BeforeBody(s3));
    // The front caps each buffered body at its operation's limit (`body_limits`); the
    // codec's own cap is the largest of them, as a backstop.
    let mut config = s3s::config::S3Config::default();
    config.xml_max_body_size =
        usize::try_from(crate::body_limits::LARGEST_CAP).unwrap_or(usize::MAX);
    b.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        config,
    ))));
    if !domains.is_empty() {
        b.set_host(DomainHost::new(domains)?);
    }
    Ok(b.build())
}

/// Virtual-host style addressing: `bucket.<domain>[:port]` names a bucket; any other host
/// (an IP address, `localhost`, the domain itself) is path style.
pub struct DomainHost {
    domains: Vec<String>,
}

impl DomainHost {
    pub fn new(domains: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for d in domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty() || d.contains(['/', ':', ' ']) {
                return Err(format!(
                    "invalid --domain {d:?}: give a host name like s3.example.com"
                ));
            }
            out.push(d);
        }
        Ok(Self { domains: out })
    }

    /// The bucket a host name addresses, if any.
    pub fn bucket_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.domains.iter().find_map(|d| {
            let prefix = name.len().checked_sub(d.len() + 1)?;
            let (bucket, rest) = name.split_at(prefix);
            (rest.len() == d.len() + 1
                && rest.starts_with('.')
                && rest[1..].eq_ignore_ascii_case(d)
                && !bucket.is_empty())
            .then_some(bucket)
        })
    }
}

/// `host[:port]` or `[v6]:port` → host.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

impl S3Host for DomainHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = strip_port(host);
        Ok(match self.bucket_of(name) {
            Some(bucket) => VirtualHost::new(name).with_bucket(bucket),
            None => VirtualHost::new(name),
        })
    }
}

/// The hyper service of the S3 port.
#[derive(Clone)]
pub struct Frontend {
    s3: S3Service,
    app: Seedbucket,
    /// The peer address of the connection this clone serves.
    remote: Option<std::net::SocketAddr>,
    counter: Arc<AtomicU64>,
    node: u32,
    /// Virtual-host domains, to find the bucket of a CORS request.
    domains: Option<Arc<DomainHost>>,
    /// Caps, timeouts and the memory budget of request bodies.
    body_limits: Arc<BodyLimits>,
    /// What this connection is doing, for its idle and header timeouts.
    activity: Option<Arc<ConnActivity>>,
}

/// True when the query string has the `torrent` subresource.
fn is_torrent_request(uri: &http::Uri) -> bool {
    uri.query()
        .unwrap_or("")
        .split('&')
        .any(|p| p == "torrent" || p.starts_with("torrent="))
}

fn xml_error(status: StatusCode, code: &str, message: &str, extra: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message>{extra}</Error>"
    );
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}

/// A header holding a number (Content-Length and its kin), if it does.
fn header_u64(headers: &http::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Error bodies larger than this are passed on as they are (S3's are a few hundred bytes).
const ERROR_BODY_MAX: u64 = 64 * 1024;

/// An S3 XML error with its message, resource and request id filled in where missing
/// ([`crate::error_body`]); any other response as it is.
async fn completed_error(
    resp: Response<Body>,
    request_id: &str,
    path: &str,
    vhost_bucket: Option<&str>,
) -> Response<Body> {
    use http_body::Body as _;
    use http_body_util::BodyExt;
    let status = resp.status();
    let xml = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/xml") || t.starts_with("text/xml"));
    let small = resp
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= ERROR_BODY_MAX);
    if status.is_success() || status == StatusCode::NOT_MODIFIED || !xml || !small {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let bytes = collected.to_bytes();
    let resource = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let addressed = crate::error_body::Addressed::of(&resource, vhost_bucket);
    let fallback = status.canonical_reason().unwrap_or("Error");
    match crate::error_body::complete(
        &String::from_utf8_lossy(&bytes),
        request_id,
        addressed,
        fallback,
    ) {
        Some(body) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// The seed's JSON envelope for an error: S3's code, or `VALIDATION_ERROR` for malformed
/// parameters; the status stays.
async fn json_error(resp: Response<Body>) -> Response<Body> {
    use http_body_util::BodyExt;
    let (mut parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let xml = String::from_utf8_lossy(&bytes);
    let code = crate::error_body::field(&xml, "Code").unwrap_or_else(|| {
        parts
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .to_owned()
    });
    let code = if code == "InvalidArgument" {
        "VALIDATION_ERROR".to_owned()
    } else {
        code
    };
    let message = crate::error_body::field(&xml, "Message").unwrap_or_else(|| code.clone());
    let json = serde_json::json!({"success": false, "error": {"code": code, "message": message}});
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json.to_string()))
}

impl Frontend {
    pub fn new(s3: S3Service, app: Seedbucket, domains: &[String]) -> Result<Self, String> {
        let domains = if domains.is_empty() {
            None
        } else {
            Some(Arc::new(DomainHost::new(domains)?))
        };
        Ok(Self {
            s3,
            app,
            remote: None,
            counter: Arc::new(AtomicU64::new(0)),
            node: rand_node(),
            domains,
            body_limits: Arc::default(),
            activity: None,
        })
    }

    /// With these limits on request bodies instead of the defaults.
    pub fn with_body_limits(mut self, limits: Arc<BodyLimits>) -> Self {
        self.body_limits = limits;
        self
    }

    /// The bucket a request addresses (virtual host or first path segment), for CORS.
    fn bucket_of(&self, req: &Request<Incoming>) -> Option<String> {
        if let Some(b) = self.vhost_bucket(req) {
            return Some(b);
        }
        let first = req.uri().path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_owned())
    }

    /// The bucket named by the Host header (virtual-hosted style), if any.
    fn vhost_bucket(&self, req: &Request<Incoming>) -> Option<String> {
        let domains = self.domains.as_ref()?;
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(strip_port)?;
        domains.bucket_of(host).map(str::to_owned)
    }

    /// A CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`): 200
    /// with the allowing rule's headers, or 403 as S3 answers when no rule matches.
    async fn preflight(&self, req: &Request<Incoming>, origin: &str) -> Response<Body> {
        let method = req
            .headers()
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let wanted = crate::cors::requested_headers(req.headers());
        let rules = match self.bucket_of(req) {
            Some(b) => self.app.cors_rules(&b).await,
            None => Vec::new(),
        };
        match crate::cors::matching_rule(&rules, origin, method, &wanted) {
            Some(rule) => {
                let mut r = Response::new(Body::empty());
                *r.headers_mut() = crate::cors::preflight_headers(rule, origin, &wanted);
                r
            }
            None => xml_error(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                &format!("<Method>{method}</Method><ResourceType>OBJECT</ResourceType>"),
            ),
        }
    }

    /// A clone for one connection from `remote`.
    pub fn for_connection(&self, remote: std::net::SocketAddr) -> Self {
        Self {
            remote: Some(remote),
            ..self.clone()
        }
    }

    /// A clone for one connection from `remote` whose requests are noted in `activity`.
    pub fn for_tracked_connection(
        &self,
        remote: std::net::SocketAddr,
        activity: Arc<ConnActivity>,
    ) -> Self {
        Self {
            remote: Some(remote),
            activity: Some(activity),
            ..self.clone()
        }
    }

    /// Whether the request names an object (not only a bucket).
    fn names_key(&self, req: &Request<Incoming>) -> bool {
        let virtual_host = match (&self.domains, req.headers().get(http::header::HOST)) {
            (Some(d), Some(h)) => h
                .to_str()
                .ok()
                .map(strip_port)
                .is_some_and(|h| d.bucket_of(h).is_some()),
            _ => false,
        };
        crate::body_limits::path_has_key(req.uri().path(), virtual_host)
    }

    /// Hands a request to s3s once its head passes the checks that need no body: the SigV4
    /// form, and the body's declared size against its operation's cap. The body goes in
    /// guarded (cap, stall and rate limits, buffer budget); if it was cut, the answer is the
    /// S3 error for why.
    async fn call_s3(&self, mut req: Request<Incoming>) -> Result<Response<Body>, HttpError> {
        let blank = |v: &HeaderValue| v.as_bytes().trim_ascii().is_empty();
        // An empty Authorization header authenticates nobody: the request is anonymous, and
        // refused with AccessDenied where it needs a signature (S3 does not call it malformed).
        if req
            .headers()
            .get(http::header::AUTHORIZATION)
            .is_some_and(blank)
        {
            req.headers_mut().remove(http::header::AUTHORIZATION);
        }
        if req.headers().get("content-md5").is_some_and(blank) {
            return Ok(xml_error(
                StatusCode::BAD_REQUEST,
                "InvalidDigest",
                "The Content-MD5 you specified is not valid.",
                "",
            ));
        }
        let query = req.uri().query().unwrap_or("");
        if let Err(r) =
            crate::sigv4_checks::check(req.headers(), query, req.uri().authority().is_some())
        {
            tracing::debug!(code = r.code, message = %r.message, "refused before the signature check");
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
            return Ok(xml_error(status, r.code, &r.message, &r.extra));
        }
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let kind = crate::body_limits::classify(
            req.method().as_str(),
            self.names_key(&req),
            query,
            content_type,
        );
        let declared = header_u64(req.headers(), http::header::CONTENT_LENGTH.as_str());
        let Some((cap, over)) = kind.cap() else {
            return Ok(xml_error(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "POST Object (browser form uploads) is not supported; use PUT.",
                "",
            ));
        };
        if let Some(len) = declared
            && len > cap
        {
            return Ok(over_cap_error(over, cap, Some(len)));
        }
        let report: Arc<std::sync::Mutex<BodyReport>> = Arc::default();
        let buffered = kind.is_buffered();
        let limits = self.body_limits.clone();
        let req = req.map(|incoming| {
            Body::http_body_unsync(
                GuardedBody::new(
                    incoming,
                    limits,
                    Some((cap, over)),
                    buffered,
                    report.clone(),
                )
                .with_declared_length(declared),
            )
        });
        let resp = self.s3.call(req).await?;
        let (failure, head, received) = match report.lock() {
            Ok(r) => (r.failure, r.head.clone(), r.received),
            Err(_) => (None, Vec::new(), 0),
        };
        if buffered && resp.status().is_client_error() && !head.is_empty() {
            tracing::debug!(
                status = resp.status().as_u16(),
                body = %crate::body_limits::excerpt(&head, received),
                "refused a configuration body"
            );
        }
        Ok(match failure {
            None => resp,
            Some(BodyFailure::TooLarge { over, cap }) => over_cap_error(over, cap, None),
            Some(BodyFailure::Stalled) => xml_error(
                StatusCode::BAD_REQUEST,
                "RequestTimeout",
                "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.",
                "",
            ),
            Some(BodyFailure::NoBudget) => {
                let mut r = xml_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    "Please reduce your request rate.",
                    "",
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        })
    }

    /// The client of a request: the connection's peer, or, when that peer is a trusted
    /// proxy (`--trusted-proxy`), the address it appended to `X-Forwarded-For`.
    fn client_addr(&self, headers: &http::HeaderMap) -> Option<std::net::SocketAddr> {
        let remote = self.remote?;
        Some(crate::tracker_http::forwarded_client(
            remote,
            headers,
            &self.app.options.trusted_proxies,
        ))
    }

    fn next_request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08X}{:08X}", self.node, n)
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<Body>, HttpError> {
        let _in_progress = self.activity.as_ref().map(|a| a.request_started());
        let request_id = self.next_request_id();
        let is_head = req.method() == Method::HEAD;
        let path = req.uri().path().to_owned();
        let vhost_bucket = self.vhost_bucket(&req);
        // What the request is, for the metrics and (when on) the access log.
        let started = std::time::Instant::now();
        let query = req.uri().query().unwrap_or("");
        let recording = self.app.stats.recording();
        let logging = self.app.options.access_log.is_on();
        let described = (recording || logging).then(|| {
            crate::request_log::describe(req.method(), &path, query, vhost_bucket.as_deref())
        });
        let operation = described.as_ref().map(|d| d.operation.clone());
        let bytes_in = header_u64(req.headers(), "x-amz-decoded-content-length")
            .or_else(|| header_u64(req.headers(), "content-length"))
            .unwrap_or(0);
        let logged = described.filter(|_| logging).map(|mut e| {
            e.remote = self.client_addr(req.headers()).map(|a| a.to_string());
            e.key = crate::request_log::access_key_id(req.headers(), query);
            e.bytes_in = bytes_in;
            (e, started)
        });
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let method = req.method().clone();
        // A request that sends a body (or will, after `100 Continue`) and is refused may leave
        // body bytes unread on the connection; the connection closes after such an answer so
        // those bytes are never read as the next request.
        let sends_body = req.headers().contains_key(http::header::EXPECT)
            || req.headers().contains_key(http::header::TRANSFER_ENCODING)
            || header_u64(req.headers(), http::header::CONTENT_LENGTH.as_str())
                .is_some_and(|n| n > 0);
        let mut cors_bucket = None;
        let mut resp = if let Some(rest) = path.strip_prefix(INTERNAL_PREFIX) {
            if let Some(ws) = rest.strip_prefix("webseed/") {
                let mut r = if method == Method::OPTIONS {
                    Response::new(Body::empty())
                } else {
                    self.app.webseed(req.method(), ws, req.headers()).await
                };
                let asked = req
                    .headers()
                    .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
                    .cloned();
                crate::cors::webseed_headers(r.headers_mut(), asked.as_ref());
                r
            } else if rest == "tracker/ws" && crate::tracker_ws::is_websocket_upgrade(&req) {
                let client = self.client_addr(req.headers());
                return Ok(self.app.websocket_tracker(req, client));
            } else if let Some(t) = rest.strip_prefix("tracker/") {
                let query = req.uri().query().unwrap_or("").to_owned();
                let client = self.client_addr(req.headers());
                self.app.tracker(t, &query, client).await
            } else {
                internal_route(&req)
            }
        } else if path == "/announce" && crate::tracker_ws::is_websocket_upgrade(&req) {
            let client = self.client_addr(req.headers());
            return Ok(self.app.websocket_tracker(req, client));
        } else if crate::tracker_http::is_tracker_request(&path, req.uri().query().unwrap_or("")) {
            let query = req.uri().query().unwrap_or("").to_owned();
            let client = self.client_addr(req.headers());
            self.app
                .tracker(path.trim_start_matches('/'), &query, client)
                .await
        } else if let (Some(o), true) = (&origin, method == Method::OPTIONS) {
            // Browser preflights, `?torrent` included, answer by the bucket's CORS rules.
            self.preflight(&req, o).await
        } else if is_torrent_request(req.uri()) {
            let json = crate::handlers::wants_json(req.headers());
            if origin.is_some() {
                // A page fetching a torrent (WebTorrent) gets the bucket's CORS headers.
                cors_bucket = self.bucket_of(&req);
            }
            let resp = if req.method() == Method::GET {
                self.call_s3(req).await?
            } else {
                let extra = format!(
                    "<Method>{}</Method><ResourceType>TORRENT</ResourceType>",
                    req.method()
                );
                let mut r = xml_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                    &extra,
                );
                r.headers_mut()
                    .insert(http::header::ALLOW, HeaderValue::from_static("GET"));
                r
            };
            if json && !resp.status().is_success() {
                // Completed first, so the envelope carries S3's message; an XML error is
                // completed once, below, with every other answer.
                json_error(completed_error(resp, &request_id, &path, vhost_bucket.as_deref()).await)
                    .await
            } else {
                resp
            }
        } else {
            if origin.is_some() {
                cors_bucket = self.bucket_of(&req);
            }
            self.call_s3(req).await?
        };
        if !is_head {
            resp = completed_error(resp, &request_id, &path, vhost_bucket.as_deref()).await;
        }
        if let (Some(o), Some(b)) = (&origin, &cors_bucket) {
            let rules = self.app.cors_rules(b).await;
            if let Some(rule) = crate::cors::matching_rule(&rules, o, method.as_str(), &[]) {
                for (k, v) in &crate::cors::response_headers(rule, o) {
                    resp.headers_mut().append(k, v.clone());
                }
            }
        }
        if resp.status() == StatusCode::NOT_MODIFIED || is_head {
            // 304 and HEAD carry headers only; s3s renders errors with an XML body.
            if resp.status() == StatusCode::NOT_MODIFIED {
                resp.headers_mut().remove(http::header::CONTENT_TYPE);
                resp.headers_mut().remove(http::header::CONTENT_LENGTH);
            }
            if resp.status().is_client_error() || resp.status() == StatusCode::NOT_MODIFIED {
                *resp.body_mut() = Body::empty();
            }
        }
        let refused = !resp.status().is_success();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("x-amz-request-id", v.clone());
            h.insert("x-amz-id-2", v);
        }
        h.insert(http::header::SERVER, HeaderValue::from_static("seedbucket"));
        if sends_body && refused {
            h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let bytes_out = if is_head || resp.status() == StatusCode::NOT_MODIFIED {
            0
        } else {
            header_u64(resp.headers(), http::header::CONTENT_LENGTH.as_str()).unwrap_or(0)
        };
        if let Some(operation) = &operation
            && recording
        {
            self.app.stats.request(
                operation,
                resp.status().as_u16(),
                started.elapsed().as_secs_f64(),
                bytes_in,
                bytes_out,
            );
        }
        if let Some((mut entry, started)) = logged {
            entry.status = resp.status().as_u16().to_string();
            entry.request_id = Some(request_id);
            let declared = if is_head || resp.status() == StatusCode::NOT_MODIFIED {
                Some(0)
            } else {
                header_u64(resp.headers(), http::header::CONTENT_LENGTH.as_str())
            };
            let body = std::mem::replace(resp.body_mut(), Body::empty());
            *resp.body_mut() = Body::http_body(crate::request_log::LoggedBody::new(
                body,
                self.app.options.access_log.clone(),
                entry,
                started,
                declared,
            ));
        }
        Ok(resp)
    }
}

/// The answer to a body over its operation's cap. `declared`: its Content-Length, when the
/// refusal comes before reading.
fn over_cap_error(over: OverCap, cap: u64, declared: Option<u64>) -> Response<Body> {
    let mut extra = String::new();
    if over == OverCap::EntityTooLarge {
        if let Some(len) = declared {
            extra.push_str(&format!("<ProposedSize>{len}</ProposedSize>"));
        }
        extra.push_str(&format!("<MaxSizeAllowed>{cap}</MaxSizeAllowed>"));
    }
    xml_error(StatusCode::BAD_REQUEST, over.code(), over.message(), &extra)
}

fn rand_node() -> u32 {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn internal_route(req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let rest = path.strip_prefix(INTERNAL_PREFIX).unwrap_or("");
    let (status, body) = match rest {
        "health" => (StatusCode::OK, "ok\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut resp = Response::new(Body::from(body.to_owned()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

impl hyper::service::Service<Request<Incoming>> for Frontend {
    type Response = Response<Body>;
    type Error = HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        Box::pin(self.clone().handle(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts() {
        let h = DomainHost::new(&["s3.example.com".to_owned()]).unwrap();
        assert_eq!(h.bucket_of("data.s3.example.com"), Some("data"));
        assert_eq!(
            h.bucket_of("my.dotted.bucket.s3.example.com"),
            Some("my.dotted.bucket")
        );
        assert_eq!(h.bucket_of("s3.example.com"), None);
        assert_eq!(h.bucket_of(".s3.example.com"), None);
        assert_eq!(h.bucket_of("xs3.example.com"), None);
        assert_eq!(h.bucket_of("127.0.0.1"), None);
        assert_eq!(strip_port("a.b:9000"), "a.b");
        assert_eq!(strip_port("[::1]:9000"), "::1");
        assert_eq!(strip_port("localhost"), "localhost");
        assert!(DomainHost::new(&["http://x".to_owned()]).is_err());
    }
}

//! The HTTP front of the S3 port: request ids on every response, `/_seedbucket/...` routes
//! (which no bucket name can reach, since bucket names cannot contain `_`), then s3s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use s3s::host::MultiDomain;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, HttpError};
use seedbucket_store::credentials::KeyRing;

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
    let mut b = S3ServiceBuilder::new(s3);
    b.set_auth(KeyRingAuth(keys));
    if !domains.is_empty() {
        b.set_host(MultiDomain::new(domains).map_err(|e| format!("invalid --domain: {e}"))?);
    }
    Ok(b.build())
}

/// The hyper service of the S3 port.
#[derive(Clone)]
pub struct Frontend {
    s3: S3Service,
    counter: Arc<AtomicU64>,
    node: u32,
}

impl Frontend {
    pub fn new(s3: S3Service) -> Self {
        Self {
            s3,
            counter: Arc::new(AtomicU64::new(0)),
            node: rand_node(),
        }
    }

    fn next_request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:08X}{:08X}", self.node, n)
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<Body>, HttpError> {
        let request_id = self.next_request_id();
        let is_head = req.method() == Method::HEAD;
        let mut resp = if req.uri().path().starts_with(INTERNAL_PREFIX) {
            internal_route(&req)
        } else {
            self.s3.call(req.map(Body::from)).await?
        };
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
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("x-amz-request-id", v.clone());
            h.insert("x-amz-id-2", v);
        }
        h.insert(http::header::SERVER, HeaderValue::from_static("seedbucket"));
        Ok(resp)
    }
}

fn rand_node() -> u32 {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn internal_route(req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let (status, body) = match path.strip_prefix(INTERNAL_PREFIX) {
        Some("health") => (StatusCode::OK, "ok\n"),
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

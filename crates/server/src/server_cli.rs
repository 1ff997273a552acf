//! `seedbucket bucket list|create|delete|chown|public` and `seedbucket stats`: clients of a
//! running server, through the console's JSON API on its admin listener (docs/console.md). They
//! log in as the console does (an access key and its secret, over the admin listener, which
//! stays on loopback by default), so they can do exactly what that key may do, and work the
//! same in embedded and gateway mode while the server runs.

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use seedbucket_store::credentials::{KeyFile, ROOT_KEY_NAME};

use crate::cli::{BucketAction, ServerAccess};
use crate::config::{DEFAULT_ADMIN_LISTEN, FileConfig};
use crate::console::form_encode as q;

/// A logged-in console session.
struct Session {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
    cookie: String,
    csrf: String,
}

/// The admin listener's URL and the key to act as.
fn target(access: &ServerAccess, file: &FileConfig) -> anyhow::Result<(String, String, String)> {
    let listen = access
        .admin_listen
        .clone()
        .or_else(|| file.admin_listen.clone())
        .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
    let base = if listen.starts_with("http://") || listen.starts_with("https://") {
        listen.trim_end_matches('/').to_owned()
    } else {
        let addr: std::net::SocketAddr = listen.parse().with_context(|| {
            format!("--admin-listen takes an address like 127.0.0.1:9001, got {listen:?}")
        })?;
        let ip = if addr.ip().is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            addr.ip()
        };
        format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
    };
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (ak, sk) = match (&access.access_key, &access.secret_key) {
        (Some(a), Some(s)) => (a.clone(), s.clone()),
        (Some(_), None) | (None, Some(_)) => {
            bail!(
                "give both --access-key and --secret-key (SEEDBUCKET_ACCESS_KEY / SEEDBUCKET_SECRET_KEY)"
            )
        }
        (None, None) => match (
            env("SEEDBUCKET_ROOT_ACCESS_KEY"),
            env("SEEDBUCKET_ROOT_SECRET_KEY"),
        ) {
            (Some(a), Some(s)) => (a, s),
            _ => {
                let dir = access
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| file.data_dir.clone());
                let keys = KeyFile::new(&dir).load().with_context(|| {
                    format!(
                        "no key given and no root key in {} (give --access-key and --secret-key)",
                        dir.display()
                    )
                })?;
                let root = keys
                    .into_iter()
                    .find(|k| k.name == ROOT_KEY_NAME)
                    .with_context(|| {
                        format!(
                            "no root key in {}; give --access-key and --secret-key",
                            dir.display()
                        )
                    })?;
                (root.access_key, root.secret_key)
            }
        },
    };
    Ok((base, ak, sk))
}

impl Session {
    async fn open(access: &ServerAccess, file: &FileConfig) -> anyhow::Result<Self> {
        let (base, ak, sk) = target(access, file)?;
        let http = Client::builder(TokioExecutor::new()).build_http();
        let form = format!("access_key={}&secret_key={}", q(&ak), q(&sk));
        let req = http::Request::post(format!("{base}/login"))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(form)))?;
        let resp = http.request(req).await.with_context(|| {
            format!("reaching the server's admin listener at {base} (is the server running? --admin-listen)")
        })?;
        match resp.status().as_u16() {
            303 => {}
            401 => bail!("the server refused the key {ak}: wrong access key or secret key"),
            404 => bail!(
                "the admin listener at {base} has no console (the server runs with --console off)"
            ),
            s => bail!("logging in at {base} failed: HTTP {s}"),
        }
        let cookie = resp
            .headers()
            .get(http::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("the server opened no session")?
            .to_owned();
        let mut session = Self {
            http,
            base,
            cookie,
            csrf: String::new(),
        };
        let (_, me) = session.call(http::Method::GET, "/api/session").await?;
        session.csrf = me["csrf"].as_str().unwrap_or_default().to_owned();
        Ok(session)
    }

    /// One API call; `Err` when the server answers with an error.
    async fn call(
        &self,
        method: http::Method,
        path_and_query: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base))
            .header(http::header::COOKIE, &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .body(Full::new(Bytes::new()))?;
        let resp = self.http.request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(
            |_| serde_json::json!({ "error": String::from_utf8_lossy(&body).trim().to_owned() }),
        );
        if let Some(e) = value.get("error").and_then(|e| e.as_str()) {
            bail!("{e}");
        }
        if status >= 400 {
            bail!("HTTP {status}");
        }
        Ok((status, value))
    }
}

impl Session {
    /// `POST /api/buckets/<call>?bucket=...&<more>`.
    async fn bucket_call(
        &self,
        call: &str,
        bucket: &str,
        more: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let mut path = format!("/api/buckets/{call}?bucket={}", q(bucket));
        for (k, v) in more {
            path.push_str(&format!("&{k}={}", q(v)));
        }
        self.call(http::Method::POST, &path).await.map(|_| ())
    }
}

pub async fn bucket(
    action: BucketAction,
    access: &ServerAccess,
    file: &FileConfig,
) -> anyhow::Result<()> {
    let s = Session::open(access, file).await?;
    match action {
        BucketAction::List => {
            let (_, rows) = s.call(http::Method::GET, "/api/buckets").await?;
            let rows = rows.as_array().cloned().unwrap_or_default();
            let with_owner = rows.iter().any(|r| r["owner"].is_string());
            if with_owner {
                println!("{:<40} {:<22} OWNER", "NAME", "CREATED");
            } else {
                println!("{:<40} CREATED", "NAME");
            }
            for r in rows {
                let name = r["name"].as_str().unwrap_or_default();
                let created = r["created"].as_str().unwrap_or_default();
                if with_owner {
                    println!(
                        "{name:<40} {created:<22} {}",
                        r["owner"].as_str().unwrap_or("-")
                    );
                } else {
                    println!("{name:<40} {created}");
                }
            }
        }
        BucketAction::Create { bucket } => {
            s.bucket_call("create", &bucket, &[]).await?;
            println!("bucket {bucket} created");
        }
        BucketAction::Delete { bucket } => {
            s.bucket_call("delete", &bucket, &[]).await?;
            println!("bucket {bucket} deleted");
        }
        BucketAction::Chown { bucket, owner } => {
            s.bucket_call("chown", &bucket, &[("owner", &owner)])
                .await?;
            println!("bucket {bucket} now belongs to {owner}");
        }
        BucketAction::Public { bucket, state } => {
            s.bucket_call("public", &bucket, &[("public", &state)])
                .await?;
            if state == "on" {
                println!(
                    "bucket {bucket} is public: anyone may read its objects and their torrents"
                );
            } else {
                println!("bucket {bucket} has no policy now: its objects are as their ACLs say");
            }
        }
        BucketAction::Assign { .. } => {
            bail!("`bucket assign` works on a gateway's backend (give --backend s3)")
        }
    }
    Ok(())
}

pub async fn stats(access: &ServerAccess, file: &FileConfig, as_json: bool) -> anyhow::Result<()> {
    let s = Session::open(access, file).await?;
    let (_, totals) = s
        .call(http::Method::GET, "/api/totals")
        .await
        .context("the totals are for administrator keys")?;
    let (_, buckets) = s.call(http::Method::GET, "/api/buckets").await?;
    let n = |k: &str| totals[k].as_u64().unwrap_or(0);
    let count = buckets.as_array().map_or(0, Vec::len);
    if as_json {
        let mut v = totals.clone();
        v["buckets"] = count.into();
        println!("{v}");
        return Ok(());
    }
    let human = crate::console::human;
    let delivered = n("delivered");
    let share = if delivered > 0 {
        format!(
            " ({:.0}% of the BitTorrent bytes came from peers)",
            100.0 * n("saved") as f64 / delivered as f64
        )
    } else {
        String::new()
    };
    println!("buckets                          {count}");
    if let Some(objects) = totals["objects"].as_u64() {
        println!("objects stored                   {objects}");
        println!(
            "bytes stored                     {}",
            human(n("bytes_stored"))
        );
    }
    println!("sent by HTTP GET                 {}", human(n("get")));
    println!("sent by the webseed              {}", human(n("webseed")));
    println!("sent over the peer wire          {}", human(n("peer")));
    println!("delivered to BitTorrent clients  {}", human(delivered));
    println!(
        "egress saved by peers            {}{share}",
        human(n("saved"))
    );
    println!("(since the server started; a download counts as delivered when it finishes)");
    Ok(())
}

//! Wiring: open the store, make sure the root key exists, serve S3 until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use seedbucket_s3::connections::{
    ActivityIo, ConnActivity, ConnCounter, ConnLimits, refusal_response, watchdog,
};
use seedbucket_s3::guarded_body::BodyLimits;
use seedbucket_s3::service::{Frontend, s3_service};
use seedbucket_s3::tokens::TokenKey;
use seedbucket_s3::{S3Options, Seedbucket};
use seedbucket_store::credentials::{AccessKey, KeyFile, KeyRing, ROOT_KEY_NAME, ensure_root_in};
use seedbucket_store::{Store, StoreOptions};
use tokio::net::TcpListener;

use crate::config::Config;

/// The root key's values from `SEEDBUCKET_ROOT_ACCESS_KEY` / `SEEDBUCKET_ROOT_SECRET_KEY`.
fn fixed_root_key() -> anyhow::Result<Option<(String, String)>> {
    Ok(
        match (
            std::env::var("SEEDBUCKET_ROOT_ACCESS_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
            std::env::var("SEEDBUCKET_ROOT_SECRET_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
        ) {
            (Some(a), Some(s)) => Some((a, s)),
            (None, None) => None,
            _ => anyhow::bail!(
                "set both SEEDBUCKET_ROOT_ACCESS_KEY and SEEDBUCKET_ROOT_SECRET_KEY, or neither"
            ),
        },
    )
}

/// A root key made by this start, to be shown once the server is listening.
struct GeneratedRoot {
    key: AccessKey,
    kept_in: String,
}

/// Prints generated root credentials on stdout (never into the log stream, which may be JSON
/// shipped elsewhere).
fn print_generated(root: &GeneratedRoot) {
    println!(
        "Generated root credentials (shown once; kept in {}):",
        root.kept_in
    );
    println!("  access key: {}", root.key.access_key);
    println!("  secret key: {}", root.key.secret_key);
}

/// Takes back a root key this start generated but never showed (the start failed), so that the
/// next start makes one again and shows it.
async fn forget_generated_root(store: &Store, config: &Config, root: &GeneratedRoot) {
    let forgotten = match store.shared_keys().await {
        Ok(Some(mut keys)) => {
            keys.retain(|k| k.access_key != root.key.access_key);
            store
                .save_shared_keys(&keys)
                .await
                .map_err(anyhow::Error::from)
        }
        Ok(None) => {
            let file = KeyFile::new(&config.data_dir);
            file.load()
                .and_then(|mut keys| {
                    keys.retain(|k| k.access_key != root.key.access_key);
                    file.replace(&keys)
                })
                .map_err(anyhow::Error::from)
        }
        Err(e) => Err(e.into()),
    };
    if let Err(e) = forgotten {
        eprintln!("note: the generated root key could not be taken back ({e})");
    }
}

/// Opens the store the configuration names: the data dir, or the S3 backend.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    match &config.backend {
        Some(gateway) => Store::open_gateway(gateway.clone())
            .await
            .context("connecting to the S3 backend (--backend-endpoint)"),
        None => {
            let mut store_options = StoreOptions::new(&config.data_dir);
            store_options.hash_pieces = config.piece_hashing;
            Store::open(store_options)
                .await
                .with_context(|| format!("opening the data dir {}", config.data_dir.display()))
        }
    }
}

/// How long a buffered request body waits for memory budget before 503 SlowDown.
const BODY_BUDGET_WAIT: Duration = Duration::from_secs(2);

/// How often a gateway node re-reads the keys in the metadata bucket.
const KEY_REFRESH: Duration = Duration::from_secs(2);

/// The access keys: the data dir's `keys.json`, or in gateway mode the metadata bucket's,
/// re-read every [`KEY_REFRESH`], and at once when another node's change notice says they
/// changed. Makes sure the root key exists either way.
async fn key_ring(
    store: &Store,
    config: &Config,
) -> anyhow::Result<(Arc<KeyRing>, Option<GeneratedRoot>)> {
    let fixed = fixed_root_key()?;
    let Some(mut keys) = store.shared_keys().await? else {
        let key_file = KeyFile::new(&config.data_dir);
        let (root, generated) = key_file.ensure_root(fixed)?;
        let generated = generated.then(|| GeneratedRoot {
            key: root,
            kept_in: key_file.path().display().to_string(),
        });
        return Ok((Arc::new(KeyRing::new(key_file)?), generated));
    };
    let (root, generated, changed) = ensure_root_in(&mut keys, fixed);
    if changed {
        store.save_shared_keys(&keys).await?;
    }
    let generated = generated.then(|| GeneratedRoot {
        key: root.clone(),
        kept_in: "the backend's metadata bucket, keys.json".to_owned(),
    });
    store.set_default_owner(&root.user_id);
    let ring = Arc::new(KeyRing::pushed(keys));
    let (refreshing, store) = (ring.clone(), store.clone());
    let mut changes = store.subscribe_changes();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEY_REFRESH);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                change = changes.recv() => match change {
                    Ok(c) if c.remote && (c.key.is_empty() || c.key == "keys.json") => {}
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
            match store.shared_keys().await {
                Ok(Some(keys)) => {
                    if let Some(root) = keys.iter().find(|k| k.name == ROOT_KEY_NAME) {
                        store.set_default_owner(&root.user_id);
                    }
                    refreshing.replace(keys);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "could not re-read the keys; keeping the old ones")
                }
            }
        }
    });
    Ok((ring, generated))
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let (keys, generated) = key_ring(&store, &config).await?;
    let shown = std::sync::atomic::AtomicBool::new(false);
    let served = serve_with_keys(&config, store.clone(), keys, generated.as_ref(), &shown).await;
    if served.is_err()
        && !shown.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(root) = &generated
    {
        forget_generated_root(&store, &config, root).await;
    }
    served
}

/// Everything after the keys: listeners, tracker, seeder, the S3 loop. Generated root
/// credentials are shown once every listener is bound (`shown` says whether they were).
async fn serve_with_keys(
    config: &Config,
    store: Store,
    keys: Arc<KeyRing>,
    generated: Option<&GeneratedRoot>,
    shown: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let secret = match store.shared_secret().await? {
        Some(s) => s,
        None => server_secret(&config.data_dir)?,
    };
    // The seeder's socket first: with port 0 its real port is what the tracker hands out.
    let peer_listener =
        match config.peer_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("binding the seeder to {addr} (--peer-listen, or off)")
            })?),
            None => None,
        };
    let seeder_addr = match &peer_listener {
        Some(l) => Some(advertised(
            l.local_addr()?,
            config.peer_advertise,
            &config.public_url,
        )),
        None => None,
    };
    let access_log = seedbucket_access_log::AccessLog::open(&config.access_log, config.log_json)
        .with_context(|| format!("opening the access log ({:?})", config.access_log))?;
    let options = S3Options {
        region: config.region.clone(),
        public_url: config.public_url.clone(),
        torrent_max_size: config.torrent_max_size,
        torrent_format: config.torrent_format,
        webseed_expiry_secs: config.webseed_expiry,
        token_key: TokenKey::new(&secret),
        tracker_rate_limit: config.tracker_rate_limit,
        open_tracker: config.open_tracker,
        seeder_addr,
        trusted_proxies: config.trusted_proxies.clone(),
        access_log: access_log.clone(),
        webtorrent: config.webtorrent,
        webseed_rate_limit: config.webseed_rate_limit,
    };
    let cluster = match &config.redis {
        Some(url) => Some(
            seedbucket_cluster::Cluster::start(
                url,
                &store,
                config.tracker.clone(),
                config.tracker_rate_limit,
                seeder_addr,
            )
            .await
            .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let s3 = match &cluster {
        Some(c) => {
            let s3 = Seedbucket::with_tracker(store, keys.clone(), options, c.swarms.clone())
                .with_shared_browsers(c.browsers.clone());
            // Offers and answers other nodes relay to this node's browsers.
            let relayed = c.browser_messages.lock().ok().and_then(|mut m| m.take());
            if let Some(mut relayed) = relayed {
                let app = s3.clone();
                tokio::spawn(async move {
                    while let Some((swarm, to, text)) = relayed.recv().await {
                        app.deliver_browser_message(swarm, to, text);
                    }
                });
            }
            s3
        }
        None => {
            let tracker = Arc::new(seedbucket_tracker::Tracker::new(
                config.tracker.clone(),
                options.tracker_rate_limit,
                options.seeder_addr,
            ));
            Seedbucket::with_tracker(store, keys.clone(), options, tracker)
        }
    };
    let service =
        s3_service(s3.clone(), keys.clone(), &config.domains).map_err(anyhow::Error::msg)?;
    // The UDP tracker (BEP 15) on the same port number as S3.
    match tokio::net::UdpSocket::bind(config.listen).await {
        Ok(socket) => {
            tracing::info!(listen = %config.listen, "UDP tracker listening");
            // One receive loop per core, all on the same socket.
            let socket = Arc::new(socket);
            let loops = std::thread::available_parallelism().map_or(1, |n| n.get());
            for _ in 0..loops {
                tokio::spawn(s3.clone().serve_udp_tracker(socket.clone()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, listen = %config.listen, "no UDP tracker: cannot bind the UDP port")
        }
    }
    let expiring = s3.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            expiring.expire_tracker_peers().await;
        }
    });
    let mut seeder_task = None;
    let mut seeder_handle = None;
    if let (Some(listener), Some(advertised)) = (peer_listener, seeder_addr) {
        let options = seedbucket_seeder::SeederOptions {
            max_unchoked: config.seed_slots,
            upload_rate_limit_total: Some(config.seed_rate_limit).filter(|&n| n > 0),
            upload_rate_limit_per_peer: Some(config.seed_peer_rate_limit).filter(|&n| n > 0),
            max_connections: config.seed_max_connections,
            max_connections_per_address: config.seed_max_connections_per_address,
            inactive_timeout: config.seed_inactive_timeout,
            encryption: config.seed_encryption,
            ..Default::default()
        };
        let library = Arc::new(seedbucket_s3::seed_library::StoreLibrary::new(s3.clone()));
        let seeder =
            seedbucket_seeder::Seeder::with_access_log(library, options, access_log.clone());
        seeder_handle = Some(seeder.clone());
        let tcp_addr = listener.local_addr()?;
        // uTP on the same port number, over UDP: where clients look for it first.
        let utp = if config.seed_utp {
            match seedbucket_seeder::UtpListener::bind(tcp_addr, config.seed_max_connections).await
            {
                Ok(u) => Some(u),
                Err(e) => {
                    tracing::warn!(error = %e, "no uTP for the seeder (TCP only)");
                    None
                }
            }
        } else {
            None
        };
        tracing::info!(listen = %tcp_addr, utp = utp.is_some(), advertised = %advertised, "BitTorrent seeder listening");
        seeder_task = Some(tokio::spawn(async move {
            let served = match utp {
                Some(utp) => {
                    seeder
                        .serve_with_utp(listener, utp, shutdown_signal())
                        .await
                }
                None => seeder.serve(listener, shutdown_signal()).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "the seeder stopped");
            }
        }));
    }
    if config.lifecycle_interval > 0 {
        let (app, every) = (s3.clone(), Duration::from_secs(config.lifecycle_interval));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match app.run_lifecycle(None).await {
                    Ok(r) => tracing::info!(
                        buckets = r.buckets,
                        expired = r.expired,
                        noncurrent_removed = r.noncurrent_removed,
                        delete_markers_removed = r.delete_markers_removed,
                        uploads_aborted = r.uploads_aborted,
                        "lifecycle pass"
                    ),
                    Err(e) => tracing::warn!(error = %e, "lifecycle pass failed"),
                }
            }
        });
    }
    let body_limits = Arc::new(BodyLimits::new(
        config.http.body_timeout,
        config.http.min_body_rate,
        config.http.body_buffer_bytes,
        BODY_BUDGET_WAIT,
    ));
    let frontend = Frontend::new(service, s3.clone(), &config.domains)
        .map_err(anyhow::Error::msg)?
        .with_body_limits(body_limits);
    let conn_limits = ConnLimits {
        header_timeout: config.http.header_timeout,
        idle_timeout: config.http.idle_timeout,
        max_connections: config.http.max_connections,
        max_per_address: config.http.max_connections_per_address,
        exempt: config.trusted_proxies.clone(),
    };
    let connections = ConnCounter::new(conn_limits.clone());

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the S3 listener to {}", config.listen))?;
    let s3_listen = listener.local_addr()?;
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %config.public_url,
        backend = %match &config.backend {
            Some(g) => format!("s3 gateway ({})", g.endpoint),
            None => format!("embedded ({})", config.data_dir.display()),
        },
        "seedbucket is serving S3"
    );
    if let Some(addr) = config.admin_listen {
        match TcpListener::bind(addr).await {
            Ok(admin) => {
                let console = config.console.then(|| {
                    crate::console::Console::start(
                        s3.clone(),
                        keys.clone(),
                        s3_listen,
                        &config.region,
                    )
                });
                tracing::info!(
                    listen = %addr,
                    console = config.console,
                    "admin listener (web console, /metrics, /health, /lifecycle/run)"
                );
                // Metrics are recorded only when something can read them.
                let metrics = crate::telemetry::Metrics::install();
                if metrics.is_some() {
                    s3.enable_request_metrics();
                }
                tokio::spawn(crate::admin::serve(
                    admin,
                    s3.clone(),
                    seeder_handle,
                    metrics,
                    console,
                ));
            }
            Err(e) if !config.admin_listen_required => tracing::warn!(
                listen = %addr,
                error = %e,
                "the default admin listener (console, metrics) could not be bound; going on without it (give --admin-listen ADDR or off)"
            ),
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("binding the admin listener to {addr}"))
                );
            }
        }
    }
    if let Some(root) = generated {
        print_generated(root);
        shown.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (socket, remote) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = socket.set_nodelay(true);
        let slot = match connections.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(client = %remote, ?why, "connection refused: over the cap");
                // Best effort, without waiting on the client: the answer fits a socket buffer.
                let _ = socket.try_write(&refusal_response(why));
                continue;
            }
        };
        let activity = Arc::new(ConnActivity::default());
        let io = TokioIo::new(ActivityIo::new(socket, activity.clone()));
        // With upgrades: the WebSocket tracker takes its connection over from HTTP.
        let conn = http.serve_connection_with_upgrades(
            io,
            frontend.for_tracked_connection(remote, activity.clone()),
        );
        let conn = graceful.watch(conn.into_owned());
        let limits = conn_limits.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = conn => {}
                () = watchdog(activity, limits) => {
                    tracing::debug!(client = %remote, "closed an idle or slow connection");
                }
            }
        });
    }
    tracing::info!("shutting down");
    if let Some(c) = &cluster {
        c.leave().await;
    }
    if let Some(t) = seeder_task {
        t.abort();
    }
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("connections still open after 10 s; closing them");
        }
    }
    // Lines wait up to 100 ms for their batch: out with them before the process ends.
    access_log.flush();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The address peers dial: `--peer-advertise`, else the bound address if it is a concrete IP,
/// else the public URL's host when that is an IP, else loopback.
fn advertised(
    bound: std::net::SocketAddr,
    explicit: Option<std::net::SocketAddr>,
    public_url: &str,
) -> std::net::SocketAddr {
    if let Some(a) = explicit {
        return a;
    }
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let host = public_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .map(|h| match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => h,
        })
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    match host.and_then(|h| h.parse::<std::net::IpAddr>().ok()) {
        Some(ip) => std::net::SocketAddr::new(ip, bound.port()),
        None => std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port()),
    }
}

/// The server's own secret (token MACs), made on first start and kept in the data dir.
fn server_secret(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("server.secret");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(hex::decode(text.trim()).context("server.secret is not hex")?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            let tmp = path.with_extension("tmp");
            {
                use std::io::Write;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp)?;
                f.write_all(hex::encode(secret).as_bytes())?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            Ok(secret.to_vec())
        }
        Err(e) => Err(e.into()),
    }
}

//! Configuration: defaults, then the TOML file, then `SEEDBUCKET_*` variables, then flags.
//! Clap resolves flag-over-env; the file fills whatever neither set.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::cli::{BackendArgs, ServeArgs};
use seedbucket_store::GatewayOptions;

/// The configuration file (`--config FILE`). Every field is optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Directory holding objects, metadata and keys. Example: "/var/lib/seedbucket".
    pub data_dir: PathBuf,
    /// Address of the S3 HTTP listener. Example: "0.0.0.0:9000".
    pub listen: SocketAddr,
    /// Base URL clients reach this server at; every URL the server hands out (torrents,
    /// webseeds) starts with it. Default: "http://" + listen. Example: "https://s3.example.com".
    pub public_url: Option<String>,
    /// Domains for virtual-host style requests (`bucket.DOMAIN`). Example: ["s3.example.com"].
    pub domains: Vec<String>,
    /// Region reported to clients. Example: "us-east-1".
    pub region: String,
    /// Largest object GetObjectTorrent makes a torrent for, in bytes (S3: 5368709120).
    pub torrent_max_size: u64,
    /// Form of `?torrent` when the request names none: "v1", "hybrid" or "v2".
    pub torrent_format: String,
    /// Seconds the webseed URL in a private torrent stays valid. Example: 604800 (7 days).
    pub webseed_expiry: u64,
    /// Seconds between lifecycle passes (expiring objects by the buckets' rules); 0 = never.
    pub lifecycle_interval: u64,
    /// Tracker announces per second from one address (bursts of twice that); 0 = no limit.
    pub tracker_rate_limit: u32,
    /// Track any info-hash, not only torrents this server issued. Example: false.
    pub open_tracker: bool,
    /// The BitTorrent seeder's TCP address, or "off". Default: the listen IP, port 6881.
    /// Example: "0.0.0.0:6881".
    pub peer_listen: Option<String>,
    /// Address peers dial to reach the seeder, when it differs from peer_listen (NAT,
    /// 0.0.0.0). Example: "203.0.113.7:6881".
    pub peer_advertise: Option<SocketAddr>,
    /// Seeder upload slots per torrent (peers of one torrent unchoked at once). Example: 4.
    pub seed_slots: usize,
    /// Seeder upload limit, bytes per second for all peers together; 0 = none.
    pub seed_rate_limit: u64,
    /// Webseed bytes per second, all answers together (0: no limit). Example: 50000000.
    pub webseed_rate_limit: u64,
    /// Seeder upload limit, bytes per second per peer; 0 = none.
    pub seed_peer_rate_limit: u64,
    /// Most simultaneous seeder connections; at the cap a new one takes the slot of the
    /// longest-idle peer (one with no requests outstanding). Example: 500.
    pub seed_max_connections: usize,
    /// Most simultaneous seeder connections from one address (IPv4 address, IPv6 /64).
    /// Example: 8.
    pub seed_max_connections_per_address: usize,
    /// Seconds a seeder peer may go without requesting anything while not waiting for an
    /// upload slot. Example: 180.
    pub seed_inactive_timeout: u64,
    /// Encrypted peer handshakes: "allow" (plain and encrypted), "require" (encrypted, RC4
    /// payload) or "off" (plain only). Example: "allow".
    pub seed_encryption: String,
    /// uTP beside TCP on the seeder's port number. Example: true.
    pub seed_utp: bool,
    /// Tracker entries in one swarm; a full swarm evicts its stalest entry. Example: 20000.
    pub tracker_max_peers_per_torrent: usize,
    /// Tracker entries one address (IPv4 address, IPv6 /64) holds in one swarm. Example: 16.
    pub tracker_max_peers_per_address_per_torrent: usize,
    /// Tracker entries one address holds over all swarms. Example: 2000.
    pub tracker_max_peers_per_address: usize,
    /// Admin listener (web console, /metrics, /health), or "off". Example: "127.0.0.1:9001".
    pub admin_listen: Option<String>,
    /// The web console on the admin listener: "on" or "off".
    pub console: String,
    /// Where objects live: "embedded" (the data dir) or "s3" (gateway mode over an existing
    /// S3 cluster; see docs/deployment.md).
    pub backend: String,
    /// Gateway mode: the backend's S3 endpoint. Example: "https://s3.eu-west-1.amazonaws.com".
    pub backend_endpoint: Option<String>,
    /// Gateway mode: the backend's region. Example: "eu-west-1".
    pub backend_region: String,
    /// Gateway mode: path-style requests (MinIO, Garage, Ceph RGW, seedbucket need it).
    pub backend_path_style: bool,
    /// Gateway mode: the service credential's access key id (or SEEDBUCKET_BACKEND_ACCESS_KEY).
    pub backend_access_key: Option<String>,
    /// Gateway mode: the service credential's secret (or SEEDBUCKET_BACKEND_SECRET_KEY).
    pub backend_secret_key: Option<String>,
    /// Gateway mode: the bucket holding seedbucket's keys, ACLs, piece hashes and torrents.
    pub backend_meta_bucket: String,
    /// Gateway mode: MiB of memory for recently served object blocks (seeder, webseed).
    pub piece_cache: u64,
    /// Gateway mode, several nodes: Redis URL for their shared state (or SEEDBUCKET_REDIS).
    /// Example: "redis://10.0.0.5:6379/".
    pub redis: Option<String>,
    /// Load balancers whose X-Forwarded-For names the real client of tracker requests.
    /// Example: ["10.0.0.2"].
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// S3 port: seconds to send a complete request head once started. Example: 20.
    pub http_header_timeout: u64,
    /// S3 port: seconds a connection may sit with no request and no bytes moving. Example: 60.
    pub http_idle_timeout: u64,
    /// S3 port: seconds a request body may send nothing before it is cut. Example: 30.
    pub http_body_timeout: u64,
    /// S3 port: bytes per second a body must average per body-timeout window; 0 = no floor.
    pub http_min_body_rate: u64,
    /// S3 port: connections open at once, all clients; 0 = no limit. Example: 4096.
    pub http_max_connections: usize,
    /// S3 port: connections open at once from one address; 0 = no limit. Example: 256.
    pub http_max_connections_per_address: usize,
    /// S3 port: MiB of memory for buffered request bodies (configuration XML). Example: 64.
    pub http_body_buffer: u64,
    /// One line per request (S3, webseed, tracker over HTTP and UDP) and per peer connection:
    /// "off", "stderr", or a file path (appended to). Example: "/var/log/seedbucket/access.log".
    pub access_log: String,
    /// Log format of stderr's log and the access log: "text" or "json".
    pub log_format: String,
    /// Hash torrent pieces while objects are written: "on" or "off" (off only to measure what
    /// hashing costs).
    pub piece_hashing: String,
    /// List the WebSocket tracker in private torrents too: "on" or "off" (open torrents always
    /// list it).
    pub webtorrent: String,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./seedbucket-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            public_url: None,
            domains: Vec::new(),
            region: "us-east-1".to_owned(),
            torrent_max_size: 5 * 1024 * 1024 * 1024,
            torrent_format: "v1".to_owned(),
            webseed_expiry: 7 * 24 * 3600,
            lifecycle_interval: 3600,
            tracker_rate_limit: 50,
            open_tracker: false,
            peer_listen: None,
            peer_advertise: None,
            seed_slots: 4,
            seed_rate_limit: 0,
            webseed_rate_limit: 0,
            seed_peer_rate_limit: 0,
            seed_max_connections: 500,
            seed_max_connections_per_address: 8,
            seed_inactive_timeout: 180,
            seed_encryption: "allow".to_owned(),
            seed_utp: true,
            tracker_max_peers_per_torrent: 20_000,
            tracker_max_peers_per_address_per_torrent: 16,
            tracker_max_peers_per_address: 2_000,
            admin_listen: None,
            console: "on".to_owned(),
            backend: "embedded".to_owned(),
            backend_endpoint: None,
            backend_region: "us-east-1".to_owned(),
            backend_path_style: false,
            backend_access_key: None,
            backend_secret_key: None,
            backend_meta_bucket: "seedbucket-meta".to_owned(),
            piece_cache: 256,
            redis: None,
            trusted_proxies: Vec::new(),
            http_header_timeout: 20,
            http_idle_timeout: 60,
            http_body_timeout: 30,
            http_min_body_rate: 1024,
            http_max_connections: 4096,
            http_max_connections_per_address: 256,
            http_body_buffer: 64,
            access_log: "stderr".to_owned(),
            log_format: "text".to_owned(),
            piece_hashing: "on".to_owned(),
            webtorrent: "off".to_owned(),
        }
    }
}

/// Seconds a gateway node trusts its cached copy of a record another node may change.
pub const GATEWAY_CACHE_SECS: u64 = 5;

/// Reads the configuration file, or the defaults without one.
pub fn load_file(path: Option<&std::path::Path>) -> anyhow::Result<FileConfig> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("parsing config file {}", path.display()))
        }
        None => Ok(FileConfig::default()),
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// The gateway backend's settings, or `None` for the embedded store.
pub fn resolve_backend(
    args: &BackendArgs,
    file: &FileConfig,
    piece_cache_mib: Option<u64>,
    hash_pieces: bool,
) -> anyhow::Result<Option<GatewayOptions>> {
    let kind = args.backend.clone().unwrap_or_else(|| file.backend.clone());
    match kind.as_str() {
        "embedded" => return Ok(None),
        "s3" => {}
        other => bail!("backend must be embedded or s3, got {other:?}"),
    }
    let endpoint = args
        .backend_endpoint
        .clone()
        .or_else(|| file.backend_endpoint.clone())
        .context("--backend s3 needs --backend-endpoint (or backend_endpoint in the file)")?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        bail!("--backend-endpoint must start with http:// or https://, got {endpoint:?}");
    }
    let access_key = env_nonempty("SEEDBUCKET_BACKEND_ACCESS_KEY")
        .or_else(|| file.backend_access_key.clone())
        .context(
            "gateway mode needs SEEDBUCKET_BACKEND_ACCESS_KEY (or backend_access_key in the file)",
        )?;
    let secret_key = env_nonempty("SEEDBUCKET_BACKEND_SECRET_KEY")
        .or_else(|| file.backend_secret_key.clone())
        .context(
            "gateway mode needs SEEDBUCKET_BACKEND_SECRET_KEY (or backend_secret_key in the file)",
        )?;
    let meta_bucket = args
        .backend_meta_bucket
        .clone()
        .unwrap_or_else(|| file.backend_meta_bucket.clone());
    let mib = piece_cache_mib.unwrap_or(file.piece_cache);
    Ok(Some(GatewayOptions {
        endpoint,
        region: args
            .backend_region
            .clone()
            .unwrap_or_else(|| file.backend_region.clone()),
        path_style: args.backend_path_style || file.backend_path_style,
        access_key,
        secret_key,
        meta_bucket,
        piece_cache_bytes: mib.saturating_mul(1024 * 1024),
        cache_ttl: std::time::Duration::from_secs(GATEWAY_CACHE_SECS),
        hash_pieces,
        min_part_size: seedbucket_store::MIN_PART_SIZE,
    }))
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub public_url: String,
    pub domains: Vec<String>,
    pub region: String,
    pub torrent_max_size: u64,
    pub torrent_format: seedbucket_torrent::Format,
    pub webseed_expiry: u64,
    /// Seconds between lifecycle passes; 0: none but those asked for on the admin listener.
    pub lifecycle_interval: u64,
    /// Where the access log goes, and whether its lines are JSON (`--log-format json`).
    pub access_log: seedbucket_access_log::Destination,
    pub log_json: bool,
    pub piece_hashing: bool,
    pub webtorrent: bool,
    pub tracker_rate_limit: u32,
    pub open_tracker: bool,
    /// `None`: no seeder.
    pub peer_listen: Option<SocketAddr>,
    pub peer_advertise: Option<SocketAddr>,
    pub seed_slots: usize,
    pub seed_rate_limit: u64,
    pub webseed_rate_limit: u64,
    pub seed_peer_rate_limit: u64,
    pub seed_max_connections: usize,
    pub seed_max_connections_per_address: usize,
    pub seed_inactive_timeout: std::time::Duration,
    pub seed_encryption: seedbucket_seeder::Encryption,
    pub seed_utp: bool,
    /// The tracker's swarm limits (in this process or in Redis).
    pub tracker: seedbucket_tracker::TrackerConfig,
    pub admin_listen: Option<SocketAddr>,
    /// The admin listener was asked for by name (a flag, the environment or the file): failing
    /// to bind it fails the start. The default one is skipped with a warning when its port is
    /// taken (another seedbucket on this machine).
    pub admin_listen_required: bool,
    /// The web console on the admin listener.
    pub console: bool,
    /// Gateway mode's backend; `None`: the embedded store in `data_dir`.
    pub backend: Option<GatewayOptions>,
    /// Redis for the state several gateway nodes share; `None`: all in this process.
    pub redis: Option<String>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Timeouts and caps of the S3 port's connections and request bodies.
    pub http: HttpLimits,
}

/// Timeouts and caps of the S3 port (S3, the HTTP tracker and the webseed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub min_body_rate: u64,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub body_buffer_bytes: usize,
}

impl HttpLimits {
    fn resolve(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let secs =
            |flag: Option<u64>, file: u64, name: &str| -> anyhow::Result<std::time::Duration> {
                let v = flag.unwrap_or(file);
                if v == 0 {
                    bail!("--{name} must be at least 1 second");
                }
                Ok(std::time::Duration::from_secs(v))
            };
        let mib = args.http_body_buffer.unwrap_or(file.http_body_buffer);
        if mib == 0 {
            bail!("--http-body-buffer must be at least 1 MiB");
        }
        Ok(Self {
            header_timeout: secs(
                args.http_header_timeout,
                file.http_header_timeout,
                "http-header-timeout",
            )?,
            idle_timeout: secs(
                args.http_idle_timeout,
                file.http_idle_timeout,
                "http-idle-timeout",
            )?,
            body_timeout: secs(
                args.http_body_timeout,
                file.http_body_timeout,
                "http-body-timeout",
            )?,
            min_body_rate: args.http_min_body_rate.unwrap_or(file.http_min_body_rate),
            max_connections: args
                .http_max_connections
                .unwrap_or(file.http_max_connections),
            max_connections_per_address: args
                .http_max_connections_per_address
                .unwrap_or(file.http_max_connections_per_address),
            body_buffer_bytes: usize::try_from(mib.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
        })
    }
}

/// An address, or `off`/empty for none.
/// The admin listener (console, metrics) unless told otherwise: loopback only.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9001);

fn optional_addr(
    value: Option<String>,
    default: Option<SocketAddr>,
    flag: &str,
) -> anyhow::Result<Option<SocketAddr>> {
    match value.as_deref().map(str::trim) {
        None => Ok(default),
        Some("" | "off" | "none") => Ok(None),
        Some(v) => v.parse().map(Some).with_context(|| {
            format!("{flag} takes an address like 0.0.0.0:6881 or off, got {v:?}")
        }),
    }
}

impl Config {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = load_file(args.backend.config.as_deref())?;
        let http = HttpLimits::resolve(args, &file)?;
        let one_of = |flag: Option<&String>, file: &str, name: &str, allowed: [&str; 2]| {
            let v = flag.map_or(file, String::as_str);
            if allowed.contains(&v) {
                Ok(v == allowed[0])
            } else {
                Err(anyhow::anyhow!(
                    "{name} is {} or {}, got {v:?}",
                    allowed[0],
                    allowed[1]
                ))
            }
        };
        let piece_hashing = one_of(
            args.piece_hashing.as_ref(),
            &file.piece_hashing,
            "piece_hashing",
            ["on", "off"],
        )?;
        let webtorrent = one_of(
            args.webtorrent.as_ref(),
            &file.webtorrent,
            "webtorrent",
            ["on", "off"],
        )?;
        let log_json = one_of(
            args.log_format.as_ref(),
            &file.log_format,
            "log_format",
            ["json", "text"],
        )?;
        let backend = resolve_backend(&args.backend, &file, args.piece_cache, piece_hashing)?;
        let redis = redis_url(&args.backend, &file);
        let listen = args.listen.unwrap_or(file.listen);
        let public_url = args
            .public_url
            .clone()
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("--public-url must start with http:// or https://, got {public_url:?}");
        }
        let domains = if args.domain.is_empty() {
            file.domains
        } else {
            args.domain.clone()
        };
        for d in &domains {
            if d.contains('/') || d.contains(':') {
                bail!("--domain takes a host name like s3.example.com, got {d:?}");
            }
        }
        let format_name = args.torrent_format.clone().unwrap_or(file.torrent_format);
        let torrent_format =
            seedbucket_torrent::Format::parse(&format_name).with_context(|| {
                format!("--torrent-format must be v1, hybrid or v2, got {format_name:?}")
            })?;
        let peer_listen = optional_addr(
            args.peer_listen.clone().or(file.peer_listen),
            Some(SocketAddr::new(listen.ip(), 6881)),
            "--peer-listen",
        )?;
        if redis.is_some() && backend.is_none() {
            bail!(
                "--redis shares state between gateway nodes; it needs --backend s3 (embedded mode keeps everything in its data dir)"
            );
        }
        let trusted_proxies = if args.trusted_proxy.is_empty() {
            file.trusted_proxies
        } else {
            args.trusted_proxy.clone()
        };
        let admin_listen_required = args.admin_listen.is_some() || file.admin_listen.is_some();
        let admin_listen = optional_addr(
            args.admin_listen.clone().or(file.admin_listen),
            Some(DEFAULT_ADMIN_LISTEN),
            "--admin-listen",
        )?;
        let console = one_of(
            args.console.as_ref(),
            &file.console,
            "console",
            ["on", "off"],
        )?;
        Ok(Self {
            http,
            peer_listen,
            peer_advertise: args.peer_advertise.or(file.peer_advertise),
            seed_slots: args.seed_slots.unwrap_or(file.seed_slots).max(1),
            seed_rate_limit: args.seed_rate_limit.unwrap_or(file.seed_rate_limit),
            webseed_rate_limit: args.webseed_rate_limit.unwrap_or(file.webseed_rate_limit),
            seed_peer_rate_limit: args
                .seed_peer_rate_limit
                .unwrap_or(file.seed_peer_rate_limit),
            seed_max_connections: args
                .seed_max_connections
                .unwrap_or(file.seed_max_connections)
                .max(1),
            seed_max_connections_per_address: args
                .seed_max_connections_per_address
                .unwrap_or(file.seed_max_connections_per_address)
                .max(1),
            seed_inactive_timeout: std::time::Duration::from_secs(
                args.seed_inactive_timeout
                    .unwrap_or(file.seed_inactive_timeout)
                    .max(1),
            ),
            seed_encryption: match args
                .seed_encryption
                .as_deref()
                .unwrap_or(&file.seed_encryption)
            {
                "allow" => seedbucket_seeder::Encryption::Allow,
                "require" => seedbucket_seeder::Encryption::Require,
                "off" => seedbucket_seeder::Encryption::Off,
                other => bail!("seed_encryption must be allow, require or off, not {other:?}"),
            },
            seed_utp: match args.seed_utp.as_deref() {
                Some(v) => v == "on",
                None => file.seed_utp,
            },
            tracker: seedbucket_tracker::TrackerConfig {
                max_peers_per_torrent: args
                    .tracker_max_peers_per_torrent
                    .unwrap_or(file.tracker_max_peers_per_torrent)
                    .max(1),
                max_peers_per_address_per_torrent: args
                    .tracker_max_peers_per_address_per_torrent
                    .unwrap_or(file.tracker_max_peers_per_address_per_torrent)
                    .max(1),
                max_peers_per_address: args
                    .tracker_max_peers_per_address
                    .unwrap_or(file.tracker_max_peers_per_address)
                    .max(1),
                ..seedbucket_tracker::TrackerConfig::default()
            },
            admin_listen,
            admin_listen_required,
            console,
            torrent_max_size: args.torrent_max_size.unwrap_or(file.torrent_max_size),
            torrent_format,
            webseed_expiry: args.webseed_expiry.unwrap_or(file.webseed_expiry),
            lifecycle_interval: args.lifecycle_interval.unwrap_or(file.lifecycle_interval),
            piece_hashing,
            webtorrent,
            backend,
            redis,
            trusted_proxies,
            tracker_rate_limit: args.tracker_rate_limit.unwrap_or(file.tracker_rate_limit),
            open_tracker: args.open_tracker || file.open_tracker,
            data_dir: args.data_dir.clone().unwrap_or(file.data_dir),
            listen,
            public_url,
            domains,
            region: args.region.clone().unwrap_or(file.region),
            access_log: seedbucket_access_log::Destination::parse(
                args.access_log.as_deref().unwrap_or(&file.access_log),
            ),
            log_json,
        })
    }
}

/// The Redis URL of `--redis`, `SEEDBUCKET_REDIS` or the file's `redis`, if any.
pub fn redis_url(args: &BackendArgs, file: &FileConfig) -> Option<String> {
    args.redis
        .clone()
        .or_else(|| file.redis.clone())
        .filter(|r| !r.trim().is_empty())
}

/// `seedbucket config default`: the defaults as a commented TOML file.
pub fn default_toml() -> anyhow::Result<String> {
    let defaults = FileConfig {
        admin_listen: Some(DEFAULT_ADMIN_LISTEN.to_string()),
        ..FileConfig::default()
    };
    let body = toml::to_string_pretty(&defaults)?;
    Ok(format!(
        "# seedbucket configuration (all keys optional). Flags and SEEDBUCKET_* variables override it.\n\
         # public_url = \"https://s3.example.com\"   # default: http://<listen>\n{body}"
    ))
}

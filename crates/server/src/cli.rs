//! Command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "seedbucket",
    version,
    about = "An S3-compatible object store that serves every object over BitTorrent too"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Manage access keys (works while the server runs).
    Key {
        #[command(subcommand)]
        action: KeyAction,
        /// Data directory of the server whose keys these are [default: the config file's
        /// `data_dir`, else ./seedbucket-data]. It must hold a server's data already.
        #[arg(long, env = "SEEDBUCKET_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Buckets of a running server: list, create, delete, chown, public (through its admin
    /// listener, as the console does); `assign` works on a gateway's backend directly.
    Bucket {
        #[command(subcommand)]
        action: BucketAction,
        #[command(flatten)]
        backend: BackendArgs,
        #[command(flatten)]
        server: ServerAccess,
    },
    /// A running server's totals: buckets, bytes sent per channel, bytes delivered to
    /// BitTorrent clients, and the egress peers saved (an administrator key).
    Stats {
        #[command(flatten)]
        server: ServerAccess,
        /// TOML configuration file (flags and environment variables override it).
        #[arg(long, env = "SEEDBUCKET_CONFIG")]
        config: Option<PathBuf>,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// SSE-S3 master keys (embedded mode; in the data dir's sse-s3-keys.json).
    SseKey {
        #[command(subcommand)]
        action: SseKeyAction,
        /// Data directory of the server [default: the config file's `data_dir`, else
        /// ./seedbucket-data].
        #[arg(long, env = "SEEDBUCKET_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
        /// TOML configuration file (its `data_dir`).
        #[arg(long, env = "SEEDBUCKET_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Torrent helpers for local files.
    Torrent {
        #[command(subcommand)]
        action: TorrentAction,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// Where objects live: the data dir (embedded) or an existing S3 cluster (gateway).
#[derive(Debug, Args, Clone, Default)]
pub struct BackendArgs {
    /// TOML configuration file (flags and environment variables override it).
    #[arg(long, env = "SEEDBUCKET_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Storage backend: `embedded` (data dir) or `s3` (gateway over an existing S3 cluster)
    /// [default: embedded].
    #[arg(long, env = "SEEDBUCKET_BACKEND", value_parser = ["embedded", "s3"], global = true)]
    pub backend: Option<String>,
    /// Gateway mode: the backend's S3 endpoint, e.g. https://s3.eu-west-1.amazonaws.com.
    #[arg(long, env = "SEEDBUCKET_BACKEND_ENDPOINT", global = true)]
    pub backend_endpoint: Option<String>,
    /// Gateway mode: the backend's region [default: us-east-1].
    #[arg(long, env = "SEEDBUCKET_BACKEND_REGION", global = true)]
    pub backend_region: Option<String>,
    /// Gateway mode: path-style requests (MinIO, Garage, Ceph RGW, seedbucket).
    #[arg(long, env = "SEEDBUCKET_BACKEND_PATH_STYLE", global = true)]
    pub backend_path_style: bool,
    /// Gateway mode: the bucket holding seedbucket's own records [default: seedbucket-meta].
    #[arg(long, env = "SEEDBUCKET_BACKEND_META_BUCKET", global = true)]
    pub backend_meta_bucket: Option<String>,
    /// Gateway mode, several nodes: Redis URL for the state the nodes share (swarms,
    /// admissions, rate limits, hashing leases, change notices), e.g. redis://10.0.0.5:6379/.
    /// `key` and `bucket` commands given it tell the nodes of their change at once.
    #[arg(long, env = "SEEDBUCKET_REDIS", global = true)]
    pub redis: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Data directory [default: ./seedbucket-data].
    #[arg(long, env = "SEEDBUCKET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// S3 listen address [default: 127.0.0.1:9000].
    #[arg(long, env = "SEEDBUCKET_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Public base URL used in every URL the server hands out [default: http://<listen>].
    #[arg(long, env = "SEEDBUCKET_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Domain for virtual-host style requests (repeatable).
    #[arg(long, env = "SEEDBUCKET_DOMAIN", value_delimiter = ',')]
    pub domain: Vec<String>,
    /// Region reported to clients [default: us-east-1].
    #[arg(long, env = "SEEDBUCKET_REGION")]
    pub region: Option<String>,
    /// Largest object to make a torrent for, in bytes [default: 5368709120].
    #[arg(long, env = "SEEDBUCKET_TORRENT_MAX_SIZE")]
    pub torrent_max_size: Option<u64>,
    /// Default form of ?torrent: v1, hybrid or v2 [default: v1].
    #[arg(long, env = "SEEDBUCKET_TORRENT_FORMAT")]
    pub torrent_format: Option<String>,
    /// Seconds a private torrent's webseed URL stays valid [default: 604800].
    #[arg(long, env = "SEEDBUCKET_WEBSEED_EXPIRY")]
    pub webseed_expiry: Option<u64>,
    /// Seconds between passes applying the buckets' lifecycle rules; 0 = never (the admin
    /// listener's `POST /lifecycle/run` still runs one) [default: 3600].
    #[arg(long, env = "SEEDBUCKET_LIFECYCLE_INTERVAL")]
    pub lifecycle_interval: Option<u64>,
    /// Hash torrent pieces while objects are written [default: on]. Off makes every first
    /// ?torrent read the object once; it exists to measure what hashing costs.
    #[arg(long, env = "SEEDBUCKET_PIECE_HASHING", value_parser = ["on", "off"])]
    pub piece_hashing: Option<String>,
    /// List the WebSocket tracker (for browsers, WebTorrent) in private torrents too; open
    /// torrents always list it [default: off].
    #[arg(long, env = "SEEDBUCKET_WEBTORRENT", value_parser = ["on", "off"])]
    pub webtorrent: Option<String>,
    /// Tracker announces allowed per second from one address, bursts of twice that; 0 = no
    /// limit [default: 50].
    #[arg(long, env = "SEEDBUCKET_TRACKER_RATE_LIMIT")]
    pub tracker_rate_limit: Option<u32>,
    /// Track any info-hash, not only torrents this server issued.
    #[arg(long, env = "SEEDBUCKET_OPEN_TRACKER")]
    pub open_tracker: bool,
    /// Address of the BitTorrent seeder (peer wire); `off` for no seeder; port 0 picks a free
    /// port [default: the listen address's IP, port 6881].
    #[arg(long, env = "SEEDBUCKET_PEER_LISTEN")]
    pub peer_listen: Option<String>,
    /// Address peers should dial to reach the seeder, when it differs from --peer-listen
    /// (behind NAT, or listening on 0.0.0.0) [default: the public URL's host if it is an IP
    /// address, else the listen address].
    #[arg(long, env = "SEEDBUCKET_PEER_ADVERTISE")]
    pub peer_advertise: Option<SocketAddr>,
    /// Seeder upload slots per torrent: peers of one torrent unchoked at once [default: 4].
    #[arg(long, env = "SEEDBUCKET_SEED_SLOTS")]
    pub seed_slots: Option<usize>,
    /// Seeder upload limit in bytes per second, all peers together; 0 = none [default: 0].
    #[arg(long, env = "SEEDBUCKET_SEED_RATE_LIMIT")]
    pub seed_rate_limit: Option<u64>,
    /// Webseed bytes per second, all answers together; 0 = no limit [default: 0]. With a cap,
    /// BitTorrent clients take more from each other and from the seeder.
    #[arg(long, env = "SEEDBUCKET_WEBSEED_RATE_LIMIT")]
    pub webseed_rate_limit: Option<u64>,
    /// Seeder upload limit in bytes per second for each peer; 0 = none [default: 0].
    #[arg(long, env = "SEEDBUCKET_SEED_PEER_RATE_LIMIT")]
    pub seed_peer_rate_limit: Option<u64>,
    /// Most simultaneous seeder connections; at the cap a new one takes the slot of the
    /// longest-idle peer [default: 500].
    #[arg(long, env = "SEEDBUCKET_SEED_MAX_CONNECTIONS")]
    pub seed_max_connections: Option<usize>,
    /// Most simultaneous seeder connections from one address (IPv4 address, IPv6 /64); past it
    /// a new one takes the slot of that address's longest-idle peer [default: 8].
    #[arg(long, env = "SEEDBUCKET_SEED_MAX_CONNECTIONS_PER_ADDRESS")]
    pub seed_max_connections_per_address: Option<usize>,
    /// Seconds a seeder peer may go without requesting anything while not waiting for an
    /// upload slot before it is dropped [default: 180].
    #[arg(long, env = "SEEDBUCKET_SEED_INACTIVE_TIMEOUT")]
    pub seed_inactive_timeout: Option<u64>,
    /// Encrypted peer handshakes (Message Stream Encryption): `allow` accepts plain and
    /// encrypted ones, `require` only encrypted ones with an RC4 payload, `off` only plain
    /// ones [default: allow].
    #[arg(long, env = "SEEDBUCKET_SEED_ENCRYPTION", value_parser = ["allow", "require", "off"])]
    pub seed_encryption: Option<String>,
    /// uTP (BEP 29) beside TCP on the seeder's port number, over UDP [default: on].
    #[arg(long, env = "SEEDBUCKET_SEED_UTP", value_parser = ["on", "off"])]
    pub seed_utp: Option<String>,
    /// Tracker entries in one swarm; a full swarm evicts its stalest entry [default: 20000].
    #[arg(long, env = "SEEDBUCKET_TRACKER_MAX_PEERS_PER_TORRENT")]
    pub tracker_max_peers_per_torrent: Option<usize>,
    /// Tracker entries one address (IPv4 address, IPv6 /64) holds in one swarm; one more
    /// evicts that address's stalest entry there [default: 16].
    #[arg(long, env = "SEEDBUCKET_TRACKER_MAX_PEERS_PER_ADDRESS_PER_TORRENT")]
    pub tracker_max_peers_per_address_per_torrent: Option<usize>,
    /// Tracker entries one address holds over all swarms; more are refused [default: 2000].
    #[arg(long, env = "SEEDBUCKET_TRACKER_MAX_PEERS_PER_ADDRESS")]
    pub tracker_max_peers_per_address: Option<usize>,
    /// Admin listener serving the web console, /metrics (Prometheus text) and /health; `off`
    /// to disable. Keep it on a private address [default: 127.0.0.1:9001].
    #[arg(long, env = "SEEDBUCKET_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// The web console on the admin listener (log in with an access key) [default: on].
    #[arg(long, env = "SEEDBUCKET_CONSOLE", value_parser = ["on", "off"])]
    pub console: Option<String>,
    /// Gateway mode: memory for recently served object blocks (seeder and webseed), in MiB;
    /// 0 = none [default: 256].
    #[arg(long, env = "SEEDBUCKET_PIECE_CACHE")]
    pub piece_cache: Option<u64>,
    /// A load balancer in front of this node whose X-Forwarded-For header names the real
    /// client of tracker requests (repeatable, IP addresses).
    #[arg(long, env = "SEEDBUCKET_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<std::net::IpAddr>,
    /// S3 port: seconds a client has to send a complete request head once it starts one
    /// (or after the previous response); slower connections are closed [default: 20].
    #[arg(long, env = "SEEDBUCKET_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Option<u64>,
    /// S3 port: seconds a connection may stay open with no request in progress and no bytes
    /// moving (kept-alive and silent connections, stalled downloads) [default: 60].
    #[arg(long, env = "SEEDBUCKET_HTTP_IDLE_TIMEOUT")]
    pub http_idle_timeout: Option<u64>,
    /// S3 port: seconds a request body may send nothing before it is cut (400
    /// RequestTimeout; an upload's temporary file is removed) [default: 30].
    #[arg(long, env = "SEEDBUCKET_HTTP_BODY_TIMEOUT")]
    pub http_body_timeout: Option<u64>,
    /// S3 port: bytes per second a request body must average over each body-timeout window;
    /// 0 = only the body timeout [default: 1024].
    #[arg(long, env = "SEEDBUCKET_HTTP_MIN_BODY_RATE")]
    pub http_min_body_rate: Option<u64>,
    /// S3 port: connections open at once, all clients; 0 = no limit [default: 4096].
    #[arg(long, env = "SEEDBUCKET_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// S3 port: connections open at once from one client address (--trusted-proxy addresses
    /// are exempt); 0 = no limit [default: 256].
    #[arg(long, env = "SEEDBUCKET_HTTP_MAX_CONNECTIONS_PER_ADDRESS")]
    pub http_max_connections_per_address: Option<usize>,
    /// S3 port: MiB of memory for buffered request bodies (configuration XML, DeleteObjects,
    /// CompleteMultipartUpload) of all requests together; over it, requests wait up to 2 s
    /// and then get 503 SlowDown [default: 64].
    #[arg(long, env = "SEEDBUCKET_HTTP_BODY_BUFFER")]
    pub http_body_buffer: Option<u64>,
    /// Access log, one line per request (S3, webseed, tracker over HTTP and UDP) and per peer
    /// connection of the seeder: off, stderr, or a file path, appended to [default: stderr].
    /// JSON lines with --log-format json.
    #[arg(long, env = "SEEDBUCKET_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Log format of stderr's log and the access log: text or json [default: text].
    #[arg(long, env = "SEEDBUCKET_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create a key (a new user) and print its id and secret.
    Create {
        /// A name for the key.
        name: String,
        /// Import this access key id instead of generating one (3 to 128 letters, digits, '.',
        /// '_' or '-'; with --secret-key).
        #[arg(long, requires = "secret_key")]
        access_key: Option<String>,
        /// The imported key's secret (at least 16 characters; with --access-key).
        #[arg(long, requires = "access_key")]
        secret_key: Option<String>,
        /// An administrator: may list and manage every bucket as its owner would (the root
        /// key is one).
        #[arg(long)]
        admin: bool,
    },
    /// List keys (secrets are not shown).
    List,
    /// Delete a key by access key id or name. The root key cannot be deleted, and a key that
    /// owns buckets only with --transfer-to.
    Delete {
        id_or_name: String,
        /// Hand the key's buckets to this key (name or access key id). Embedded mode: only
        /// while the server is stopped (it holds the database while it runs).
        #[arg(long)]
        transfer_to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SseKeyAction {
    /// Add a new master key and make it the one new SSE-S3 writes use (restart the server to
    /// start using it); objects written with older keys keep reading with them.
    Rotate,
}

/// How the `bucket` and `stats` commands reach a running server: its admin listener, and
/// the key they act as.
#[derive(Debug, Args, Clone, Default)]
pub struct ServerAccess {
    /// The server's admin listener (as given to `serve`) [default: the config file's
    /// `admin_listen`, else 127.0.0.1:9001].
    #[arg(long, env = "SEEDBUCKET_ADMIN_LISTEN", global = true)]
    pub admin_listen: Option<String>,
    /// Access key to act as [default: the root key: SEEDBUCKET_ROOT_ACCESS_KEY, else the data
    /// dir's keys.json].
    #[arg(long, env = "SEEDBUCKET_ACCESS_KEY", global = true)]
    pub access_key: Option<String>,
    /// Its secret key.
    #[arg(
        long,
        env = "SEEDBUCKET_SECRET_KEY",
        global = true,
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// Data directory whose root key to use when no key is given [default: the config file's
    /// `data_dir`, else ./seedbucket-data].
    #[arg(long, env = "SEEDBUCKET_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BucketAction {
    /// List the buckets the key may list (every bucket, with owners, for an administrator).
    List,
    /// Create a bucket owned by the key.
    Create { bucket: String },
    /// Delete an empty bucket.
    Delete { bucket: String },
    /// Give a bucket to another key (an administrator key).
    Chown {
        bucket: String,
        /// Name or access key id of the new owner.
        owner: String,
    },
    /// Let anyone read every object of a bucket and get its torrent (`on`: a bucket policy
    /// that allows it, replacing the bucket's policy), or stop (`off`: deletes the policy).
    Public {
        bucket: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Make a key the owner of a bucket (gateway mode; buckets found in the backend belong to
    /// the root key until assigned).
    Assign {
        bucket: String,
        /// Name or access key id of the new owner.
        #[arg(long)]
        owner: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the default configuration file.
    Default,
}

#[derive(Debug, Subcommand)]
pub enum TorrentAction {
    /// Make a .torrent for a local file (the same builder GetObjectTorrent uses).
    Create {
        /// The file.
        file: PathBuf,
        /// Name inside the torrent [default: the file name].
        #[arg(long)]
        name: Option<String>,
        /// Piece length in bytes, a power of two >= 16384 [default: the size rule].
        #[arg(long)]
        piece_length: Option<u64>,
        /// v1, hybrid or v2.
        #[arg(long, default_value = "v1")]
        format: String,
        /// Tracker announce URL.
        #[arg(long)]
        announce: Option<String>,
        /// Webseed URL (repeatable).
        #[arg(long)]
        webseed: Vec<String>,
        /// Mark private (BEP 27).
        #[arg(long)]
        private: bool,
        /// Output file [default: <name>.torrent].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Print what a .torrent holds: name, size, pieces, info-hashes, trackers, webseeds.
    Show { file: PathBuf },
}

//! Seeds one local file over BitTorrent, to try the seeder with real clients.
//!
//! ```text
//! cargo run -p seedbucket-seeder --example seed_file -- FILE [--port 6881] [--format hybrid]
//!     [--announce URL] [--torrent OUT.torrent] [--piece-length BYTES] [--bind 0.0.0.0]
//! ```
//!
//! Hashes FILE, writes a `.torrent` (no tracker unless `--announce`; default `FILE.torrent`),
//! prints the info-hashes and a magnet link, then serves the file until Ctrl-C. Point a client
//! at the port directly (libtorrent's `handle.connect_peer(("127.0.0.1", port))`, as
//! `libtorrent_fetch.py` beside this file does), or through a tracker given with `--announce`
//! (aria2c has no way to add a peer by hand; it also computes a different info-hash for hybrid
//! torrents, so give it `--format v1`).

use std::fs::File;
use std::io::{self, Read as _};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use seedbucket_seeder::{CLIENT_VERSION, Library, SeedTorrent, Seeder, SeederOptions};
use seedbucket_torrent::{
    Format, InfoHashes, Outer, PieceHasher, build_torrent, magnet_uri, piece_length_for,
};

struct Args {
    file: PathBuf,
    port: u16,
    bind: String,
    format: Format,
    announce: Option<String>,
    torrent: Option<PathBuf>,
    piece_length: Option<u64>,
}

fn usage() -> String {
    "usage: seed_file FILE [--port N] [--bind ADDR] [--format v1|hybrid|v2] [--announce URL] \
     [--torrent OUT] [--piece-length BYTES]"
        .to_owned()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        file: PathBuf::new(),
        port: 6881,
        bind: "0.0.0.0".to_owned(),
        format: Format::Hybrid,
        announce: None,
        torrent: None,
        piece_length: None,
    };
    let mut file = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--port" => args.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--bind" => args.bind = value()?,
            "--format" => {
                let v = value()?;
                args.format = Format::parse(&v).ok_or_else(|| format!("unknown format {v}"))?;
            }
            "--announce" => args.announce = Some(value()?),
            "--torrent" => args.torrent = Some(PathBuf::from(value()?)),
            "--piece-length" => {
                let v: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--piece-length: {e}"))?;
                if !v.is_power_of_two() || v < 16384 {
                    return Err("--piece-length must be a power of two of at least 16384".into());
                }
                args.piece_length = Some(v);
            }
            "-h" | "--help" => return Err(usage()),
            _ if file.is_none() && !a.starts_with("--") => file = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a}\n{}", usage())),
        }
    }
    args.file = file.ok_or_else(usage)?;
    Ok(args)
}

/// One file, served by reading it at the requested offsets.
struct FileLibrary {
    torrent: Arc<SeedTorrent>,
    file: Arc<File>,
}

#[async_trait::async_trait]
impl Library for FileLibrary {
    async fn lookup(&self, info_hash: &[u8; 20], peer: SocketAddr) -> Option<Arc<SeedTorrent>> {
        let found = self.torrent.matches(info_hash);
        tracing::info!(%peer, found, "handshake");
        found.then(|| Arc::clone(&self.torrent))
    }

    async fn read(&self, _torrent: &SeedTorrent, offset: u64, len: u32) -> io::Result<Bytes> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(io::Error::other)?
    }
}

fn hash_file(
    path: &PathBuf,
    piece_length: Option<u64>,
) -> io::Result<seedbucket_torrent::PieceHashes> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let piece_length = piece_length.unwrap_or_else(|| piece_length_for(size));
    let mut h = PieceHasher::new(piece_length, true, true);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or("FILE has no file name")?;
    let hashes = tokio::task::spawn_blocking({
        let path = args.file.clone();
        move || hash_file(&path, args.piece_length)
    })
    .await??;
    let torrent = SeedTorrent::build(name.clone(), &name, &hashes, args.format, false)?;

    let piece_layers = match (torrent.pieces_root, &hashes.v2_layer) {
        (Some(root), Some(layer)) if args.format.has_v2() && !layer.is_empty() => {
            vec![(root, layer.clone())]
        }
        _ => Vec::new(),
    };
    let outer = Outer {
        announce: args.announce.clone(),
        created_by: Some(CLIENT_VERSION.to_owned()),
        piece_layers,
        ..Outer::default()
    };
    let out = args.torrent.clone().unwrap_or_else(|| {
        let mut p = args.file.clone().into_os_string();
        p.push(".torrent");
        PathBuf::from(p)
    });
    std::fs::write(&out, build_torrent(&torrent.info, &outer))?;
    let ih = InfoHashes {
        v1: torrent.info_hash_v1,
        v2: torrent.info_hash_v2,
    };
    let trackers: Vec<String> = args.announce.iter().cloned().collect();
    println!("torrent:      {}", out.display());
    println!("format:       {}", args.format.as_str());
    println!(
        "length:       {} bytes, {} pieces of {}",
        torrent.total_length,
        torrent.piece_count().unwrap_or(0),
        torrent.piece_length
    );
    if let Some(v1) = ih.v1 {
        println!("info-hash v1: {}", hex(&v1));
    }
    if let Some(v2) = ih.v2 {
        println!("info-hash v2: {}", hex(&v2));
    }
    println!(
        "magnet:       {}",
        magnet_uri(&ih, &name, torrent.total_length, &trackers, &[])
    );

    let library = Arc::new(FileLibrary {
        torrent: Arc::new(torrent),
        file: Arc::new(File::open(&args.file)?),
    });
    let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port)).await?;
    println!("seeding on    {}", listener.local_addr()?);
    let seeder = Seeder::new(library, SeederOptions::default());
    let stats = seeder.clone();
    seeder
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    println!("{:?}", stats.stats());
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

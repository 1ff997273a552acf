//! `seedbucket torrent create|show`: the torrent builder on local files.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use seedbucket_torrent::{
    Format, InfoHashes, Outer, PieceHasher, build_info, build_torrent, parse_torrent,
    piece_length_for,
};

use crate::cli::TorrentAction;

pub fn run(action: TorrentAction) -> anyhow::Result<()> {
    match action {
        TorrentAction::Create {
            file,
            name,
            piece_length,
            format,
            announce,
            webseed,
            private,
            output,
            quiet,
        } => {
            let format = Format::parse(&format).context("--format must be v1, hybrid or v2")?;
            let name = match name {
                Some(n) => n,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("the file has no UTF-8 name; give --name")?
                    .to_owned(),
            };
            let size = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            let piece_length = piece_length.unwrap_or_else(|| piece_length_for(size));
            if !piece_length.is_power_of_two() || piece_length < 16 * 1024 {
                bail!("--piece-length must be a power of two of at least 16384");
            }
            let hashes = hash_file(&file, size, piece_length, format, quiet)?;
            let info = build_info(&name, &hashes, format, private)?;
            let outer = Outer {
                announce: announce.clone(),
                created_by: Some(concat!("seedbucket/", env!("CARGO_PKG_VERSION")).to_owned()),
                piece_layers: hashes
                    .v2_root
                    .zip(hashes.v2_layer.clone())
                    .into_iter()
                    .collect(),
                url_list: webseed,
                ..Outer::default()
            };
            let torrent = build_torrent(&info, &outer);
            let out = output.unwrap_or_else(|| format!("{name}.torrent").into());
            std::fs::write(&out, &torrent).with_context(|| format!("writing {}", out.display()))?;
            let ih = InfoHashes::of_info(&info, format);
            if let Some(v1) = ih.v1 {
                println!("info-hash v1: {}", hex::encode(v1));
            }
            if let Some(v2) = ih.v2 {
                println!("info-hash v2: {}", hex::encode(v2));
            }
            println!("wrote {}", out.display());
            Ok(())
        }
        TorrentAction::Show { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let t = parse_torrent(&bytes).context("not a valid (canonical) torrent")?;
            println!("name:          {}", t.name);
            println!("format:        {}", t.format.as_str());
            if let Some(len) = t.length {
                println!("length:        {len}");
            }
            println!("piece length:  {}", t.piece_length);
            println!("private:       {}", t.private);
            if let Some(v1) = t.hashes.v1 {
                println!("info-hash v1:  {}", hex::encode(v1));
            }
            if let Some(v2) = t.hashes.v2 {
                println!("info-hash v2:  {}", hex::encode(v2));
            }
            if let Some(a) = &t.announce {
                println!("announce:      {a}");
            }
            for w in &t.url_list {
                println!("webseed:       {w}");
            }
            Ok(())
        }
    }
}

/// Reads on this thread, hashes on another (SHA-1 and SHA-256 overlap with IO).
fn hash_file(
    path: &Path,
    size: u64,
    piece_length: u64,
    format: Format,
    quiet: bool,
) -> anyhow::Result<seedbucket_torrent::PieceHashes> {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(size)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let worker = std::thread::spawn(move || {
        let mut h = PieceHasher::new(piece_length, format.has_v1(), format.has_v2());
        for buf in rx {
            h.update(&buf);
        }
        h.finish()
    });
    let mut f = File::open(path)?;
    loop {
        let mut buf = vec![0u8; 4 << 20];
        let mut filled = 0;
        while filled < buf.len() {
            let n = f.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        bar.inc(filled as u64);
        if tx.send(buf).is_err() {
            break;
        }
    }
    drop(tx);
    bar.finish_and_clear();
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the hashing thread failed"))
}

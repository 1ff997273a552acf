//! `seedbucket torrent create|show`: the torrent builder on local files.

use std::fs::File;
use std::path::Path;

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
            if let Some(c) = &t.comment {
                println!("comment:       {c}");
            }
            Ok(())
        }
    }
}

/// The bytes of the file at `path`, mapped read-only.
///
/// Hashing is the whole cost of `torrent create`, and on two cores copying the file out of the
/// page cache with `read` took a further 13% (hybrid) to 17% (v1) of CPU time beside it; a
/// mapping lets the hashers read the cached pages in place.
fn map_file(path: &Path) -> anyhow::Result<memmap2::Mmap> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the mapping is read-only and private to this process, and only read while the
    // file is hashed. Another program that rewrites the file meanwhile makes the hashes wrong
    // (as it would with `read`), and one that truncates it makes the kernel stop this process
    // with SIGBUS: a command-line tool on a local file accepts that, as other hashing tools do.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mapping {}", path.display()))?;
    Ok(map)
}

/// v1 piece hashes and v2 leaves of one range of the file.
type RawHashes = (Option<Vec<u8>>, Option<Vec<[u8; 32]>>);

/// Hashes the mapped file on every core, in piece-aligned units; the units' piece hashes and
/// leaves are joined in order.
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
    let map = map_file(path)?;
    if map.len() as u64 != size {
        bail!("the file changed size while it was being opened");
    }
    // Piece-aligned units of about 32 MiB, taken in turn by every core: a core slowed by
    // another program leaves its share to the others instead of finishing last.
    let unit = (32u64 << 20).div_ceil(piece_length).max(1) * piece_length;
    let units = usize::try_from(size.div_ceil(unit))?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(units.max(1));
    let per_thread: Vec<anyhow::Result<Vec<(usize, RawHashes)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (map, bar, next) = (&map, &bar, &next);
                s.spawn(move || -> anyhow::Result<_> {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= units {
                            return Ok(done);
                        }
                        let start = usize::try_from(i as u64 * unit)?;
                        let end = usize::try_from(((i as u64 + 1) * unit).min(size))?;
                        // Map the unit's cached pages in one call rather than fault by fault
                        // (5% of the CPU time); kernels before 5.14 refuse it, which is harmless.
                        let _ = map.advise_range(memmap2::Advice::PopulateRead, start, end - start);
                        let mut h =
                            PieceHasher::new(piece_length, format.has_v1(), format.has_v2());
                        for step in map[start..end].chunks(1 << 20) {
                            h.update(step);
                            bar.inc(step.len() as u64);
                        }
                        done.push((i, h.finish_raw()));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a hashing thread failed"))?
            })
            .collect()
    });
    let mut results = Vec::with_capacity(units);
    for r in per_thread {
        results.extend(r?);
    }
    results.sort_unstable_by_key(|(i, _)| *i);
    bar.finish_and_clear();
    let (mut v1, mut leaves) = (
        format.has_v1().then(Vec::new),
        format.has_v2().then(Vec::new),
    );
    for (_, (a, b)) in results {
        if let (Some(v), Some(a)) = (v1.as_mut(), a) {
            v.extend(a);
        }
        if let (Some(l), Some(b)) = (leaves.as_mut(), b) {
            l.extend(b);
        }
    }
    Ok(seedbucket_torrent::PieceHashes::assemble(
        size,
        piece_length,
        v1,
        leaves.as_deref(),
    ))
}

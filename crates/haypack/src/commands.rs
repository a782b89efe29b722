//! The subcommands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use haypack_format::{Compression, Container, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, Entry};
use haypack_pack::{PackOptions, PushOptions};
use haypack_read::Archive;
use haypack_s3::{S3Options, S3Store};
use haypack_store::{LocalStore, Store};

use crate::human::bytes;
use crate::progress::Bar;
use crate::{Cli, CodecArg, Command, S3Args};

/// What every subcommand may need: how loud to be and how to reach S3.
pub struct Ctx {
    quiet: bool,
    s3: S3Options,
    cache_dir: Option<PathBuf>,
}

impl Ctx {
    /// The store an archive location names: `s3://bucket/prefix`, or a local directory.
    async fn store(&self, location: &str) -> Result<Arc<dyn Store>> {
        if location.starts_with("s3://") {
            return Ok(Arc::new(S3Store::connect(location, self.s3.clone()).await?));
        }
        if location.contains("://") {
            bail!("{location}: an archive is a local directory or s3://bucket/prefix");
        }
        Ok(Arc::new(LocalStore::new(location)))
    }

    /// Opens an archive; a remote one keeps its index blocks in the cache directory, so the
    /// next command starts warm.
    async fn open(&self, location: &str) -> Result<Archive> {
        let cache = self.cache_dir.clone().filter(|_| location.starts_with("s3://"));
        Ok(Archive::open_with_cache(self.store(location).await?, cache).await?)
    }
}

/// `$XDG_CACHE_HOME/haypack/blocks`, or `~/.cache/haypack/blocks`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("haypack").join("blocks"))
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let S3Args { endpoint_url, part_size, concurrency } = cli.s3;
    let s3 = S3Options { endpoint_url, part_size: part_size as usize, concurrency, ..S3Options::default() };
    let cache_dir = match (cli.no_cache, cli.cache_dir) {
        (true, _) => None,
        (false, Some(dir)) => Some(dir),
        (false, None) => default_cache_dir(),
    };
    let ctx = &Ctx { quiet: cli.quiet, s3, cache_dir };
    match cli.command {
        Command::Pack { src, dest, codec, level, pack_size, skip_unreadable, follow_symlinks, force } => {
            let compression = match codec {
                CodecArg::Zstd => Compression {
                    container: Container::Zstd,
                    level: level.unwrap_or(DEFAULT_ZSTD_LEVEL),
                    compress: true,
                },
                CodecArg::Gzip => Compression {
                    container: Container::Gzip,
                    level: level.unwrap_or(DEFAULT_GZIP_LEVEL as i32),
                    compress: true,
                },
                CodecArg::Stored => Compression { container: Container::Zstd, level: 0, compress: false },
            };
            let opts = PackOptions { compression, pack_size, skip_unreadable, follow_symlinks, force };
            pack(ctx, &src, &dest, opts).await
        }
        Command::Push { src, dest, force, jobs } => {
            push(ctx, &src, &dest, PushOptions { force, objects_in_flight: jobs }).await
        }
        Command::Uploads { archive, abort } => uploads(ctx, &archive, abort).await,
        Command::Get { archive, key, output } => get(ctx, &archive, &key, output.as_deref()).await,
        Command::Ls { archive, prefix, long, json } => ls(ctx, &archive, &prefix, long, json).await,
        Command::Extract { archive, dir, prefix } => extract(ctx, &archive, &dir, &prefix).await,
        Command::Verify { archive } => verify(ctx, &archive).await,
        Command::Info { archive, json } => info(ctx, &archive, json).await,
    }
}

async fn pack(ctx: &Ctx, src: &Path, dest: &str, opts: PackOptions) -> Result<ExitCode> {
    let quiet = ctx.quiet;
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read the source {}", src.display()))?;
    let store = ctx.store(dest).await?;
    if meta.is_dir() && !dest.starts_with("s3://") {
        refuse_dest_inside_src(src, Path::new(dest))?;
    }
    let bar = Arc::new(Bar::new(quiet, "packing", "files"));
    // The count walks the whole source once more: on a few cores that slows packing by a few
    // percent, which is only worth it when someone watches the bar.
    if bar.is_visible() {
        count_in_background(src.to_owned(), opts.follow_symlinks, bar.clone());
    }
    let started = Instant::now();
    let report = haypack_pack::pack(src, store, opts, bar.clone()).await;
    bar.finish();
    let report = report.with_context(|| format!("packing {} into {dest}", src.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if !quiet {
        let m = &report.manifest;
        let stored = m.pack_bytes();
        eprintln!(
            "packed {} files, {} into {} in {} pack(s) ({:.2}x) in {secs:.2} s: {:.0} files/s, {:.1} MiB/s",
            m.records,
            bytes(m.raw_bytes),
            bytes(stored),
            m.packs.len(),
            m.raw_bytes as f64 / stored.max(1) as f64,
            m.records as f64 / secs,
            m.raw_bytes as f64 / secs / 1048576.0,
        );
        eprintln!(
            "index: {} ({:.1} bytes per record); archive: {dest} (generation {})",
            bytes(m.index.size),
            m.index.size as f64 / m.records.max(1) as f64,
            m.generation
        );
        if !report.kept.is_empty() {
            eprintln!(
                "resumed an interrupted run: {} object(s) were already there with the same bytes, not sent again",
                report.kept.len()
            );
        }
        print_skipped(&report.skipped);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reports passed-over entries grouped by reason, a few paths each (all with HAYPACK_LOG=debug).
fn print_skipped(skipped: &[haypack_pack::Skipped]) {
    const SHOWN: usize = 5;
    let mut reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    // Unreadable files each have their own reason (it names the error), so they list in full.
    for reason in reasons {
        let paths: Vec<_> = skipped.iter().filter(|s| s.reason == reason).map(|s| s.path.display()).collect();
        if paths.len() == 1 {
            eprintln!("skipped {}: {reason}", paths[0]);
            continue;
        }
        eprintln!("skipped {} entries: {reason}", paths.len());
        for p in paths.iter().take(SHOWN) {
            eprintln!("  {p}");
        }
        if paths.len() > SHOWN {
            eprintln!("  ... and {} more", paths.len() - SHOWN);
        }
    }
}

/// Packing into a directory inside the source would pack the archive into itself.
fn refuse_dest_inside_src(src: &Path, dest: &Path) -> Result<()> {
    let src = src.canonicalize().with_context(|| format!("resolving {}", src.display()))?;
    // DEST may not exist yet: resolve its nearest existing ancestor.
    let mut probe = std::path::absolute(dest)?;
    let mut rest = Vec::new();
    let resolved = loop {
        match probe.canonicalize() {
            Ok(p) => break rest.into_iter().rev().fold(p, |p: PathBuf, c| p.join(c)),
            Err(_) => match (probe.file_name().map(|f| f.to_owned()), probe.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    probe = parent.to_owned();
                }
                _ => break probe,
            },
        }
    };
    if resolved.starts_with(&src) {
        return Err(haypack_pack::Error::DestInsideSource { src, dest: resolved }.into());
    }
    Ok(())
}

/// Counts the source's bytes on a side thread, so the bar gets a total (and an ETA) without
/// delaying the start of packing.
fn count_in_background(src: PathBuf, follow: bool, bar: Arc<Bar>) {
    std::thread::spawn(move || {
        let total: u64 = walkdir_sizes(&src, follow);
        bar.set_total(total);
    });
}

fn walkdir_sizes(src: &Path, follow: bool) -> u64 {
    fn visit(p: &Path, follow: bool) -> u64 {
        let meta = if follow { std::fs::metadata(p) } else { std::fs::symlink_metadata(p) };
        match meta {
            Ok(m) if m.is_file() => m.len(),
            Ok(m) if m.is_dir() => {
                std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| visit(&e.path(), follow)).sum()).unwrap_or(0)
            }
            _ => 0,
        }
    }
    visit(src, follow)
}

async fn get(ctx: &Ctx, location: &str, key: &str, output: Option<&Path>) -> Result<ExitCode> {
    let archive = ctx.open(location).await?;
    match output {
        None => {
            let mut out = HoldFlushes(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout()));
            if let Err(e) = archive.get_to(key, &mut out).await {
                // Drop the buffered bytes unwritten: a record that failed its check must not
                // reach stdout (one larger than the buffer may already have, in part).
                let _ = out.0.into_parts();
                return Err(e.into());
            }
            out.0.flush()?;
        }
        Some(path) => {
            // Write beside the target and rename, so a failed check leaves no file.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut temp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            let mut out = std::io::BufWriter::new(temp.as_file_mut());
            archive.get_to(key, &mut out).await?;
            out.flush().with_context(|| format!("writing {}", path.display()))?;
            drop(out);
            temp.persist(path).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Passes writes on but holds back flushes: the record decoder flushes its sink as it ends,
/// before the checksum is known, and the caller flushes only once the record verified.
struct HoldFlushes<W>(W);

impl<W: Write> Write for HoldFlushes<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn ls(ctx: &Ctx, location: &str, prefix: &str, long: bool, json: bool) -> Result<ExitCode> {
    let archive = ctx.open(location).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<std::io::Error> = None;
    archive
        .scan(prefix, |e| {
            let line = if json {
                entry_json(e).to_string()
            } else if long {
                format!("{:04o} {:>12} {} {}", e.mode, e.raw_len, crate::human::utc(e.mtime.secs), e.key)
            } else {
                e.key.clone()
            };
            match writeln!(out, "{line}") {
                Ok(()) => true,
                Err(err) => {
                    failed = Some(err);
                    false
                }
            }
        })
        .await?;
    if let Some(err) = failed {
        return Err(err.into());
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn entry_json(e: &Entry) -> serde_json::Value {
    serde_json::json!({
        "key": e.key,
        "size": e.raw_len,
        "stored": e.len,
        "mtime": e.mtime.secs,
        "mtime_nanos": e.mtime.nanos,
        "mode": format!("{:o}", e.mode),
        "content_type": e.content_type,
        "pack": e.pack,
        "offset": e.offset,
    })
}

async fn extract(ctx: &Ctx, location: &str, dir: &Path, prefix: &str) -> Result<ExitCode> {
    let quiet = ctx.quiet;
    let archive = ctx.open(location).await?;
    let bar = Bar::new(quiet, "extracting", "files");
    let entries = archive.list(prefix).await?;
    let total: u64 = entries.iter().map(|e| e.raw_len).sum();
    bar.set_total(total);
    let started = Instant::now();
    let report = archive.extract_entries(dir, entries, |n| bar.inc(1, n)).await;
    bar.finish();
    let report = report.with_context(|| format!("extracting {location} into {}", dir.display()))?;
    if !quiet {
        eprintln!(
            "extracted {} files, {} into {} in {:.2} s",
            report.files,
            bytes(report.bytes),
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(ctx: &Ctx, location: &str) -> Result<ExitCode> {
    let quiet = ctx.quiet;
    let archive = ctx.open(location).await?;
    let started = Instant::now();
    let report = archive.verify().await?;
    let mut out = std::io::stdout().lock();
    for p in &report.problems {
        // The exit code carries the verdict: a reader that stopped listening (a closed pipe)
        // must neither panic `println!` nor turn a failed check into success.
        if writeln!(out, "BAD {p}").is_err() {
            break;
        }
    }
    drop(out);
    if !quiet {
        eprintln!(
            "verified {} records in {} packs, {} read in {:.2} s: {}",
            report.records,
            report.packs,
            bytes(report.bytes),
            started.elapsed().as_secs_f64(),
            if report.problems.is_empty() {
                "all good".to_owned()
            } else {
                format!("{} problem(s)", report.problems.len())
            }
        );
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn info(ctx: &Ctx, location: &str, json: bool) -> Result<ExitCode> {
    let archive = ctx.open(location).await?;
    let m = archive.manifest();
    let stored = m.pack_bytes();
    let per_record = |n: u64| n as f64 / m.records.max(1) as f64;
    // `writeln!`, not `println!`: a closed pipe (`haypack info A | head -1`) is an error that
    // `main` ends quietly, where `println!` would panic.
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "archive": location,
            "generation": m.generation,
            "records": m.records,
            "packs": m.packs.len(),
            "raw_bytes": m.raw_bytes,
            "stored_bytes": stored,
            "ratio": m.raw_bytes as f64 / stored.max(1) as f64,
            "index_bytes": m.index.size,
            "index_blocks": m.index.blocks.len(),
            "index_bytes_per_record": per_record(m.index.size),
            "manifest_bytes": m.to_json().len(),
            "created_by": m.created_by,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "archive      {location} (generation {}, written by {})", m.generation, m.created_by)?;
    writeln!(out, "records      {}", m.records)?;
    writeln!(out, "packs        {}", m.packs.len())?;
    writeln!(out, "raw bytes    {} ({})", m.raw_bytes, bytes(m.raw_bytes))?;
    writeln!(
        out,
        "stored bytes {} ({}, {:.2}x, {:.1} bytes per record)",
        stored,
        bytes(stored),
        m.raw_bytes as f64 / stored.max(1) as f64,
        per_record(stored)
    )?;
    writeln!(
        out,
        "index        {} in {} blocks ({:.2} bytes per record); root in manifest: {}",
        bytes(m.index.size),
        m.index.blocks.len(),
        per_record(m.index.size),
        bytes(m.to_json().len() as u64)
    )?;
    for p in &m.packs {
        writeln!(out, "  {}  {} records  {}  raw {}", p.name, p.records, bytes(p.size), bytes(p.raw_bytes))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn push(ctx: &Ctx, src: &str, dest: &str, opts: PushOptions) -> Result<ExitCode> {
    let (from, to) = (ctx.store(src).await?, ctx.store(dest).await?);
    let total = Archive::open(from.clone()).await?.manifest().pack_bytes();
    let bar = Arc::new(Bar::new(ctx.quiet, "pushing", "objects"));
    bar.set_total(total);
    let started = Instant::now();
    let report = haypack_pack::push(from, to, opts, bar.clone()).await;
    bar.finish();
    let report = report.with_context(|| format!("pushing {src} to {dest}"))?;
    if !ctx.quiet {
        let secs = started.elapsed().as_secs_f64();
        if report.up_to_date {
            eprintln!("{dest} already holds this archive: nothing to send");
        } else {
            eprintln!(
                "pushed {} objects, {} in {secs:.2} s ({:.1} MiB/s){}",
                report.sent.len(),
                bytes(report.bytes_sent),
                report.bytes_sent as f64 / secs / 1048576.0,
                match report.present.len() {
                    0 => String::new(),
                    n => format!("; {n} already there, not sent again"),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn uploads(ctx: &Ctx, location: &str, abort: bool) -> Result<ExitCode> {
    if !location.starts_with("s3://") {
        bail!("{location}: only S3 archives have multipart uploads");
    }
    let store = S3Store::connect(location, ctx.s3.clone()).await?;
    let pending = store.pending_uploads().await?;
    let mut out = std::io::stdout().lock();
    for upload in &pending {
        writeln!(out, "{}  {}  {}", upload.initiated, upload.name, upload.upload_id)?;
        if abort {
            store.abort_upload(upload).await?;
        }
    }
    if !ctx.quiet {
        let verb = if abort { "aborted" } else { "pending (billed until aborted: pass --abort)" };
        eprintln!("{} multipart upload(s) {verb}", pending.len());
    }
    Ok(ExitCode::SUCCESS)
}

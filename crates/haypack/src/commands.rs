//! The subcommands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use haypack_format::{Compression, Container, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, Entry, Segment};
use haypack_pack::{CompactOptions, DictChoice, Duplicates, Format, PackOptions, PushOptions, Writer};
use haypack_read::{Archive, ExtractOptions};
use haypack_s3::{S3Options, S3Store};
use haypack_store::Store;

use crate::human::bytes;
use crate::progress::Bar;
use crate::{Cli, CodecArg, Command, DictArg, DictCommand, DuplicatesArg, FormatArg, PackingArgs, S3Args};

/// What every subcommand may need: how loud to be and how to reach S3.
pub struct Ctx {
    quiet: bool,
    s3: S3Options,
    cache_dir: Option<PathBuf>,
}

impl Ctx {
    /// The store an archive location names: `s3://bucket/prefix`, or a local directory.
    async fn store(&self, location: &str) -> Result<Arc<dyn Store>> {
        Ok(haypack_s3::store_at(location, self.s3.clone()).await?)
    }

    /// Opens an archive; a remote one keeps its index blocks in the cache directory, so the
    /// next command starts warm.
    async fn open(&self, location: &str) -> Result<Archive> {
        let cache = self.cache_dir.clone().filter(|_| haypack_s3::is_remote(location));
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
    let S3Args { endpoint_url, part_size, concurrency, no_server_copy, timeout } = cli.s3;
    let s3 = S3Options {
        endpoint_url,
        part_size: part_size as usize,
        concurrency,
        server_side_copy: !no_server_copy,
        read_timeout: timeout,
        ..S3Options::default()
    };
    let cache_dir = match (cli.no_cache, cli.cache_dir) {
        (true, _) => None,
        (false, Some(dir)) => Some(dir),
        (false, None) => default_cache_dir(),
    };
    let ctx = &Ctx { quiet: cli.quiet, s3, cache_dir };
    match cli.command {
        Command::Pack { src, dest, packing, dict, force, segment_out } => {
            let dictionary = match dict {
                DictArg::Off => DictChoice::Off,
                DictArg::On => DictChoice::On,
                DictArg::Auto => DictChoice::Auto,
            };
            let opts = PackOptions { dictionary, ..packing.options(force) };
            match segment_out {
                Some(out) => pack_segment(ctx, &src, &dest, &out, opts).await,
                None => pack(ctx, &src, &dest, opts).await,
            }
        }
        Command::Commit { archive, segments, duplicates } => commit(ctx, &archive, &segments, duplicates.into()).await,
        Command::Dict(DictCommand::Export { archive, output }) => dict_export(ctx, &archive, &output).await,
        Command::Add { archive, src, prefix, packing } => {
            add(ctx, &archive, &src, &prefix, packing.options(false)).await
        }
        Command::Rm { archive, keys, prefix, missing_ok } => rm(ctx, &archive, &keys, &prefix, missing_ok).await,
        Command::Compact { archive, min_garbage, pack_size, gc, json } => {
            compact(ctx, &archive, CompactOptions { min_garbage, pack_size }, gc, json).await
        }
        Command::Gc { archive, grace } => gc(ctx, &archive, grace).await,
        Command::Push { src, dest, force, jobs } => {
            push(ctx, &src, &dest, PushOptions { force, objects_in_flight: jobs }).await
        }
        Command::Uploads { archive, abort } => uploads(ctx, &archive, abort).await,
        Command::Get { archive, key, output } => get(ctx, &archive, &key, output.as_deref()).await,
        Command::Ls { archive, prefix, long, json } => ls(ctx, &archive, &prefix, long, json).await,
        Command::Extract { archive, dir, prefix, keep_special_bits } => {
            extract(ctx, &archive, &dir, &prefix, ExtractOptions { keep_special_bits }).await
        }
        Command::Export { archive, prefix, output } => export(ctx, &archive, &prefix, output.as_deref()).await,
        Command::Verify { archive } => verify(ctx, &archive).await,
        Command::Info { archive, json } => info(ctx, &archive, json).await,
        Command::Serve { archive, listen, cache_control, reload_every, timeout, write_timeout, max_upstream } => {
            let options = haypack_serve::ServeOptions {
                listen,
                cache_control,
                reload_every,
                request_timeout: timeout,
                write_timeout,
                max_upstream,
                ..Default::default()
            };
            serve(ctx, &archive, options).await
        }
    }
}

impl PackingArgs {
    fn options(self, force: bool) -> PackOptions {
        let PackingArgs { codec, level, pack_size, skip_unreadable, follow_symlinks, duplicates, format } = self;
        let compression = match codec {
            CodecArg::Zstd => {
                Compression { container: Container::Zstd, level: level.unwrap_or(DEFAULT_ZSTD_LEVEL), compress: true }
            }
            CodecArg::Gzip => Compression {
                container: Container::Gzip,
                level: level.unwrap_or(DEFAULT_GZIP_LEVEL as i32),
                compress: true,
            },
            CodecArg::Stored => Compression { container: Container::Zstd, level: 0, compress: false },
        };
        PackOptions {
            compression,
            pack_size,
            skip_unreadable,
            follow_symlinks,
            force,
            duplicates: duplicates.into(),
            format: format.map(|f| match f {
                FormatArg::Dir => Format::Dir,
                FormatArg::Tar => Format::Tar,
                FormatArg::Zip => Format::Zip,
                FormatArg::Warc => Format::Warc,
            }),
            ..PackOptions::default()
        }
    }
}

impl From<DuplicatesArg> for Duplicates {
    fn from(d: DuplicatesArg) -> Self {
        match d {
            DuplicatesArg::Error => Duplicates::Refuse,
            DuplicatesArg::KeepLast => Duplicates::KeepLast,
        }
    }
}

/// `pack --segment-out`: packs without committing, and writes the segment's description.
async fn pack_segment(ctx: &Ctx, src: &Path, dest: &str, out: &Path, opts: PackOptions) -> Result<ExitCode> {
    let is_dir = source_is_dir(src)?;
    let store = ctx.store(dest).await?;
    if is_dir && !dest.starts_with("s3://") {
        refuse_dest_inside_src(src, Path::new(dest))?;
    }
    let bar = Arc::new(Bar::new(ctx.quiet, "packing", "files"));
    let started = Instant::now();
    let written = async {
        let mut writer = Writer::open(store, opts, bar.clone()).await?;
        let src = src.to_owned();
        let writer = tokio::task::spawn_blocking(move || writer.write_from(&src).map(|()| writer)).await??;
        anyhow::Ok(writer.segment().await?)
    };
    let written = written.await;
    bar.finish();
    let (segment, skipped) = written.with_context(|| format!("packing {} into a segment of {dest}", src.display()))?;
    let segment = segment.with_context(|| format!("{} holds no files to pack", src.display()))?;
    if out == Path::new("-") {
        std::io::stdout().write_all(&segment.to_json()).context("writing the segment to standard output")?;
    } else {
        write_file_atomically(out, &segment.to_json()).with_context(|| format!("writing {}", out.display()))?;
    }
    if !ctx.quiet {
        eprintln!(
            "packed {} records, {} into {} pack(s) in {:.2} s, not committed: `haypack commit {dest} {}` commits them",
            segment.records,
            bytes(segment.raw_bytes),
            segment.packs.len(),
            started.elapsed().as_secs_f64(),
            out.display(),
        );
        print_skipped(&skipped);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path` through a new temporary file beside it, renamed into place.
fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path)?;
    Ok(())
}

async fn commit(ctx: &Ctx, location: &str, files: &[PathBuf], duplicates: Duplicates) -> Result<ExitCode> {
    let mut segments = Vec::with_capacity(files.len());
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("reading the segment {}", f.display()))?;
        segments.push(Segment::parse(&bytes).with_context(|| format!("reading the segment {}", f.display()))?);
    }
    let store = ctx.store(location).await?;
    let started = Instant::now();
    let report = haypack_pack::commit_segments(store, &segments, duplicates)
        .await
        .with_context(|| format!("committing {} segment(s) into {location}", files.len()))?;
    if !ctx.quiet {
        if !report.already.is_empty() {
            eprintln!("{} segment(s) were committed before; skipped", report.already.len());
        }
        match &report.change.manifest {
            Some(m) => eprintln!(
                "committed {} new and {} replaced record(s) in {:.2} s; {location} is now generation {} ({} records){}",
                report.change.added,
                report.change.removed,
                started.elapsed().as_secs_f64(),
                m.generation,
                m.records,
                retried(report.change.retries),
            ),
            None => eprintln!("nothing to commit"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn add(ctx: &Ctx, location: &str, src: &Path, prefix: &str, opts: PackOptions) -> Result<ExitCode> {
    let is_dir = source_is_dir(src)?;
    let store = ctx.store(location).await?;
    if is_dir && !location.starts_with("s3://") {
        refuse_dest_inside_src(src, Path::new(location))?;
    }
    // A prefix names a directory in the archive: `photos` and `photos/` both mean `photos/...`.
    let prefix = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_owned() } else { format!("{prefix}/") };
    let bar = Arc::new(Bar::new(ctx.quiet, "adding", "files"));
    if is_dir {
        count_in_background(src.to_owned(), opts.follow_symlinks, bar.clone());
    }
    let started = Instant::now();
    let report = haypack_pack::add(src, store, &prefix, opts, bar.clone()).await;
    bar.finish();
    let report = report.with_context(|| format!("adding {} to {location}", src.display()))?;
    if !ctx.quiet {
        let m = report.manifest.as_ref().expect("an add commits");
        eprintln!(
            "added {} new and {} replaced record(s) in {:.2} s; {location} is now generation {} ({} records){}",
            report.added,
            report.removed,
            started.elapsed().as_secs_f64(),
            m.generation,
            m.records,
            retried(report.retries),
        );
        print_skipped(&report.skipped);
    }
    Ok(ExitCode::SUCCESS)
}

async fn rm(ctx: &Ctx, location: &str, keys: &[String], prefixes: &[String], missing_ok: bool) -> Result<ExitCode> {
    if keys.is_empty() && prefixes.is_empty() {
        bail!("name the keys to delete, or pass --prefix");
    }
    let store = ctx.store(location).await?;
    let report = haypack_pack::remove(store, keys, prefixes, missing_ok)
        .await
        .with_context(|| format!("deleting from {location}"))?;
    if !ctx.quiet {
        match &report.manifest {
            None => eprintln!("no record matched: nothing deleted, {location} unchanged"),
            Some(m) => eprintln!(
                "deleted {} record(s); {location} is now generation {} ({} records); run `haypack compact` to reclaim space{}",
                report.removed,
                m.generation,
                m.records,
                retried(report.retries),
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn compact(
    ctx: &Ctx,
    location: &str,
    opts: CompactOptions,
    grace: Option<Duration>,
    json: bool,
) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&opts.min_garbage) {
        bail!("--min-garbage is a fraction between 0 and 1, not {}", opts.min_garbage);
    }
    let store = ctx.store(location).await?;
    let bar = Arc::new(Bar::new(ctx.quiet, "compacting", "records"));
    let started = Instant::now();
    let report = haypack_pack::compact(store.clone(), opts, bar.clone()).await;
    bar.finish();
    let report = report.with_context(|| format!("compacting {location}"))?;
    let secs = started.elapsed().as_secs_f64();
    if json {
        let v = serde_json::json!({
            "generation": report.manifest.as_ref().map(|m| m.generation),
            "compacted": report.compacted,
            "written": report.written,
            "live_bytes": report.live_bytes,
            "downloaded_bytes": report.downloaded,
            "copied_in_store_bytes": report.copied_in_store,
            "reclaimable_bytes": report.reclaimable,
            "seconds": secs,
        });
        writeln!(std::io::stdout().lock(), "{v}")?;
    }
    if !ctx.quiet {
        match &report.manifest {
            None => eprintln!("no pack has enough dead bytes to compact: {location} unchanged"),
            Some(m) if report.compacted.is_empty() => eprintln!(
                "no pack had enough dead bytes; rewrote the index into one object; {location} is now generation {}{}",
                m.generation,
                retried(report.retries)
            ),
            Some(m) => {
                eprintln!(
                    "compacted {} pack(s) into {} in {secs:.2} s: {} of live records ({:.1} MiB/s), {} read{}; {} reclaimable by `haypack gc`; {location} is now generation {}{}",
                    report.compacted.len(),
                    report.written.len(),
                    bytes(report.live_bytes),
                    report.live_bytes as f64 / secs / 1048576.0,
                    bytes(report.downloaded),
                    match report.copied_in_store {
                        0 => String::new(),
                        n => format!(", {} copied inside the store", bytes(n)),
                    },
                    bytes(report.reclaimable),
                    m.generation,
                    retried(report.retries),
                );
            }
        }
    }
    match grace {
        Some(grace) => gc(ctx, location, grace).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn gc(ctx: &Ctx, location: &str, grace: Duration) -> Result<ExitCode> {
    let store = ctx.store(location).await?;
    let report = haypack_pack::gc(store, grace).await.with_context(|| format!("collecting garbage in {location}"))?;
    if !ctx.quiet {
        let kept = report.retired.iter().filter(|n| !report.deleted.contains(n)).count();
        eprintln!(
            "deleted {} object(s), {}{}{}",
            report.deleted.len(),
            bytes(report.bytes),
            match kept {
                0 => String::new(),
                n => format!("; retired {n} object(s) no generation names, to delete after the grace period"),
            },
            match report.waiting {
                0 => String::new(),
                n => format!("; {n} retired object(s) wait out the grace period"),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn dict_export(ctx: &Ctx, location: &str, output: &Path) -> Result<ExitCode> {
    let archive = ctx.open(location).await?;
    let Some(dict) = archive.dictionaries().await?.iter().max_by_key(|d| d.id()) else {
        bail!("{location} has no dictionary: its packs decompress with plain `zstd -dc`");
    };
    std::fs::write(output, dict.bytes()).with_context(|| format!("writing {}", output.display()))?;
    if !ctx.quiet {
        eprintln!(
            "wrote dictionary {} ({}) to {}; read a pack with: zstd -D {} -dc PACK",
            dict.id(),
            bytes(dict.bytes().len() as u64),
            output.display(),
            output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn retried(retries: u32) -> String {
    match retries {
        0 => String::new(),
        n => format!(" (merged on top of {n} concurrent commit(s))"),
    }
}

/// Whether the source is a directory (`-`, standard input, is not); an error names a source
/// that cannot be read.
fn source_is_dir(src: &Path) -> Result<bool> {
    if src == Path::new("-") {
        return Ok(false);
    }
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read the source {}", src.display()))?;
    Ok(meta.is_dir())
}

async fn pack(ctx: &Ctx, src: &Path, dest: &str, opts: PackOptions) -> Result<ExitCode> {
    let quiet = ctx.quiet;
    let is_dir = source_is_dir(src)?;
    let store = ctx.store(dest).await?;
    if is_dir && !dest.starts_with("s3://") {
        refuse_dest_inside_src(src, Path::new(dest))?;
    }
    let bar = Arc::new(Bar::new(quiet, "packing", "files"));
    // The count walks the whole source once more: on a few cores that slows packing by a few
    // percent, which is only worth it when someone watches the bar.
    if is_dir && bar.is_visible() {
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
            bytes(m.index_bytes()),
            m.index_bytes() as f64 / m.records.max(1) as f64,
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
        None => to_stream(&archive, key, std::io::stdout()).await?,
        // A device or a pipe (`-o /dev/null`, `-o /dev/stdout`) is written as stdout is: a
        // rename would replace it with a file.
        Some(path) if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) => {
            let device = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {} to write the record", path.display()))?;
            to_stream(&archive, key, device).await?;
        }
        Some(path) => {
            // Write beside the target and rename, so a failed check leaves no file.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("record");
            let mut temp = haypack_store::create_temp_in(dir, name)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            let temp_path = temp.path().to_owned();
            let writing = || format!("writing the temporary file {} (for {})", temp_path.display(), path.display());
            let mut out = std::io::BufWriter::new(temp.as_file_mut());
            match archive.get_to(key, &mut out).await {
                Ok(_) => {}
                // The record read fine; the file could not take it (a full disk, say).
                Err(haypack_read::Error::Output(e)) => return Err(anyhow::Error::new(e).context(writing())),
                Err(e) => return Err(e.into()),
            }
            out.flush().with_context(writing)?;
            drop(out);
            // A rename: a link at `path` is replaced, never written through.
            temp.persist(path).with_context(|| format!("renaming {} to {}", temp_path.display(), path.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the record `key` to a stream that cannot be taken back (stdout, a pipe, a device):
/// buffered, so that a record that fails its check reaches it only in part when it is larger
/// than the buffer.
async fn to_stream(archive: &Archive, key: &str, stream: impl Write + Send) -> Result<()> {
    let mut out = HoldFlushes(std::io::BufWriter::with_capacity(1 << 20, stream));
    if let Err(e) = archive.get_to(key, &mut out).await {
        // Drop the buffered bytes unwritten: a record that failed its check must not reach
        // the stream (one larger than the buffer may already have, in part).
        let _ = out.0.into_parts();
        return Err(e.into());
    }
    out.0.flush()?;
    Ok(())
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
    let terminal = std::io::IsTerminal::is_terminal(&stdout);
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<std::io::Error> = None;
    archive
        .scan(prefix, |e| {
            let line = if json {
                entry_json(e).to_string()
            } else if long {
                let key = for_terminal(&e.key, terminal);
                format!("{:04o} {:>12} {} {key}", e.mode, e.raw_len, crate::human::utc(e.mtime.secs))
            } else {
                for_terminal(&e.key, terminal).into_owned()
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

/// `text` as it may be written where a terminal shows it: keys come from archives anyone can
/// make, and an ESC, a CR or a bidirectional override in one would otherwise drive the terminal
/// or disguise the line. On a terminal those (every control character, and U+202A–U+202E,
/// U+2066–U+2069) become `\xNN` or `\u{NNNN}`, and a backslash `\\`, so an escape reads one
/// way only; anywhere else (a pipe, a file) the text is written as it is, for programs to read.
pub fn for_terminal(text: &str, terminal: bool) -> std::borrow::Cow<'_, str> {
    let special =
        |c: char| c == '\\' || c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if !terminal || !text.chars().any(special) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if special(c) && u32::from(c) < 0x100 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if special(c) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.into()
}

fn entry_json(e: &Entry) -> serde_json::Value {
    serde_json::json!({
        "key": e.key,
        "size": e.raw_len,
        "stored": e.len,
        "mtime": e.mtime.secs,
        "mode": format!("{:o}", e.mode),
        "content_type": e.content_type,
        "pack": e.pack,
        "offset": e.offset,
    })
}

async fn extract(ctx: &Ctx, location: &str, dir: &Path, prefix: &str, options: ExtractOptions) -> Result<ExitCode> {
    let quiet = ctx.quiet;
    let archive = ctx.open(location).await?;
    let bar = Bar::new(quiet, "extracting", "files");
    let entries = archive.list(prefix).await?;
    let total: u64 = entries.iter().map(|e| e.raw_len).sum();
    bar.set_total(total);
    let started = Instant::now();
    let report = archive.extract_entries_with(dir, entries, options, |n| bar.inc(1, n)).await;
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

async fn export(ctx: &Ctx, location: &str, prefix: &str, output: Option<&Path>) -> Result<ExitCode> {
    let archive = Arc::new(ctx.open(location).await?);
    let bar = Bar::new(ctx.quiet, "exporting", "records");
    let started = Instant::now();
    let report = match output.filter(|p| *p != Path::new("-")) {
        None => {
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
            archive.export(prefix, out, |n| bar.inc(1, n)).await
        }
        Some(path) => {
            // Write beside the target and rename, so a failed export leaves no file.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut temp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            let out = std::io::BufWriter::with_capacity(1 << 20, temp.as_file_mut());
            let report = archive.export(prefix, out, |n| bar.inc(1, n)).await;
            if report.is_ok() {
                temp.persist(path).with_context(|| format!("writing {}", path.display()))?;
            }
            report
        }
    };
    bar.finish();
    let report = report.with_context(|| format!("exporting {location}"))?;
    if !ctx.quiet {
        eprintln!(
            "exported {} records, {} in {:.2} s",
            report.records,
            bytes(report.bytes),
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
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut out = std::io::stdout().lock();
    for p in &report.problems {
        // The exit code carries the verdict: a reader that stopped listening (a closed pipe)
        // must neither panic `println!` nor turn a failed check into success.
        if writeln!(out, "BAD {}", for_terminal(&p.to_string(), terminal)).is_err() {
            break;
        }
    }
    drop(out);
    if !quiet {
        let live = archive.manifest().records;
        eprintln!(
            "verified {} records{} in {} packs, {} read in {:.2} s: {}",
            report.records,
            match report.records.checked_sub(live) {
                Some(dead) if dead > 0 => format!(" ({live} live, {dead} deleted or replaced)"),
                _ => String::new(),
            },
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
    let dead: u64 = m.packs.iter().map(|p| p.dead_bytes).sum();
    let index = m.index_bytes();
    let live_index = archive.live_index_bytes().await?;
    let pages = archive.pages().await?.len();
    let per_record = |n: u64| n as f64 / m.records.max(1) as f64;
    let garbage = |dead: u64, size: u64| dead as f64 / size.max(1) as f64;
    // `writeln!`, not `println!`: a closed pipe (`haypack info A | head -1`) is an error that
    // `main` ends quietly, where `println!` would panic.
    let mut out = std::io::stdout().lock();
    if json {
        let packs: Vec<_> = (m.packs.iter())
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "bytes": p.size,
                    "records": p.records,
                    "live_records": p.records - p.dead_records,
                    "dead_bytes": p.dead_bytes,
                    "garbage": garbage(p.dead_bytes, p.size),
                })
            })
            .collect();
        let v = serde_json::json!({
            "archive": location,
            "generation": m.generation,
            "records": m.records,
            "packs": m.packs.len(),
            "raw_bytes": m.raw_bytes,
            "stored_bytes": stored,
            "dead_bytes": dead,
            "ratio": m.raw_bytes as f64 / stored.max(1) as f64,
            "index_bytes": index,
            "index_live_bytes": live_index,
            "index_objects": m.index.objects.len(),
            "index_pages": pages,
            "index_root": m.index.blocks.len(),
            "index_bytes_per_record": per_record(live_index),
            "manifest_bytes": m.to_json().len(),
            "retired_objects": m.retired.len(),
            "dictionary_bytes": m.dictionaries.iter().map(|d| d.size()).sum::<u64>(),
            "created_by": m.created_by,
            "pack_list": packs,
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
        "stored bytes {} ({}, {:.2}x, {:.1} bytes per record); dead: {} ({:.1}%)",
        stored,
        bytes(stored),
        m.raw_bytes as f64 / stored.max(1) as f64,
        per_record(stored),
        bytes(dead),
        100.0 * garbage(dead, stored),
    )?;
    writeln!(
        out,
        "index        {} in {} pages in {} object(s) ({:.2} bytes per record, {} superseded); manifest: {}",
        bytes(live_index),
        pages,
        m.index.objects.len(),
        per_record(live_index),
        bytes(index.saturating_sub(live_index)),
        bytes(m.to_json().len() as u64)
    )?;
    if !m.retired.is_empty() {
        writeln!(out, "retired      {} object(s), kept for older readers until `haypack gc`", m.retired.len())?;
    }
    for d in &m.dictionaries {
        writeln!(
            out,
            "dictionary   {} ({}); for stock zstd: haypack dict export ARCHIVE -o FILE, then zstd -D FILE -dc PACK",
            d.id(),
            bytes(d.size())
        )?;
    }
    for p in &m.packs {
        writeln!(
            out,
            "  {}  {}  {} of {} records live  raw {}  dead {} ({:.1}%)",
            p.name,
            bytes(p.size),
            p.records - p.dead_records,
            p.records,
            bytes(p.raw_bytes),
            bytes(p.dead_bytes),
            100.0 * garbage(p.dead_bytes, p.size),
        )?;
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

// ---------------------------------------------------------------------------------------------
// serve

async fn serve(ctx: &Ctx, location: &str, options: haypack_serve::ServeOptions) -> Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let cache = ctx.cache_dir.clone().filter(|_| location.starts_with("s3://"));
    let opener = haypack_serve::opener(ctx.store(location).await?, cache);
    let server = haypack_serve::Server::bind(opener, options).await.with_context(|| format!("serving {location}"))?;
    let handle = server.handle();
    if !ctx.quiet {
        eprintln!("serving {location} (generation {}) on http://{}", handle.generation(), server.local_addr());
    }
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let quiet = ctx.quiet;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match handle.reload().await {
                Ok(generation) if !quiet => eprintln!("reloaded: serving generation {generation}"),
                Ok(_) => {}
                Err(e) => eprintln!("haypack: reload failed, still serving generation {}: {e}", handle.generation()),
            }
        }
    });
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    server.run(shutdown).await?;
    if !quiet {
        eprintln!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `500ms`, `30s`, `5m` or `1h`.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s"))?;
    let ms = match unit {
        "ms" => 1,
        "s" | "" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    n.checked_mul(ms)
        .filter(|&ms| ms > 0)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::for_terminal;

    #[test]
    fn keys_are_escaped_for_a_terminal_only() {
        let key = "a\x1b[2Jb\rc\\d\u{202e}e\u{9b}f é.txt";
        assert_eq!(for_terminal(key, true), "a\\x1b[2Jb\\x0dc\\\\d\\u{202e}e\\x9bf é.txt");
        assert_eq!(for_terminal(key, false), key);
        assert!(matches!(for_terminal("plain/ünïcødé.json", true), std::borrow::Cow::Borrowed(_)));
    }
}

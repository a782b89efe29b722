//! `haypack`: pack millions of small files into a few large packs, then read any one back by
//! key with a single range read.

mod commands;
mod hints;
mod human;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Pack many small files into a few large packs, with an index for random access.
#[derive(Debug, Parser)]
#[command(name = "haypack", version, about, max_term_width = 100)]
struct Cli {
    /// No progress bars or summaries on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(flatten)]
    s3: S3Args,
    /// Where to keep index blocks of S3 archives between runs [default: $XDG_CACHE_HOME/haypack/blocks].
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Keep no index blocks on disk.
    #[arg(long, global = true)]
    no_cache: bool,
    #[command(subcommand)]
    command: Command,
}

/// Reaching S3 (for `s3://bucket/prefix` archives). Credentials and region come from the
/// standard AWS chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_REGION.
#[derive(Debug, clap::Args)]
struct S3Args {
    /// An S3-compatible endpoint such as http://127.0.0.1:3900 (also read from AWS_ENDPOINT_URL);
    /// it switches to path-style addressing.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", hide_env_values = true)]
    endpoint_url: Option<String>,
    /// Multipart upload part size (at least 5M).
    #[arg(long = "s3-part-size", global = true, default_value = "8M", value_parser = human::parse_size)]
    part_size: u64,
    /// Parts uploaded at once, per object.
    #[arg(long = "s3-concurrency", global = true, default_value_t = 8)]
    concurrency: usize,
    /// Never copy inside the store (UploadPartCopy): `compact` downloads and uploads every live
    /// byte instead. For S3-compatible stores that lack UploadPartCopy.
    #[arg(long = "s3-no-server-copy", global = true)]
    no_server_copy: bool,
    /// How long to wait for an answer to start, and for each next piece of its body, before
    /// asking again (e.g. 30s, 2m).
    #[arg(long = "s3-timeout", global = true, default_value = "60s", value_parser = human::parse_duration)]
    timeout: std::time::Duration,
}

/// How files become records and packs: shared by `pack` and `add`.
#[derive(Debug, clap::Args)]
struct PackingArgs {
    /// Compression for every record; a record that does not shrink is stored.
    #[arg(long, value_enum, default_value = "zstd")]
    codec: CodecArg,
    /// Compression level (zstd 1-22, default 3; gzip 0-9, default 6).
    #[arg(long)]
    level: Option<i32>,
    /// Target pack size, e.g. 256M or 1G; a file larger than this gets a pack of its own.
    #[arg(long, default_value = "256M", value_parser = human::parse_size)]
    pack_size: u64,
    /// Skip files that cannot be read or named (and report them) instead of failing.
    #[arg(long)]
    skip_unreadable: bool,
    /// Pack the targets of symbolic links; by default links are skipped and reported.
    #[arg(long)]
    follow_symlinks: bool,
    /// Two records with one key in the input: an error (nothing is committed), or keep the
    /// one that comes last.
    #[arg(long, value_enum, default_value = "error")]
    duplicates: DuplicatesArg,
    /// What SRC is; by default told from its bytes (WARC files need no flag either).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
}

/// What a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// A directory tree.
    Dir,
    /// A tar archive: plain, gzip, zstd, xz or bzip2.
    Tar,
    /// A zip file (stored and deflate entries, zip64).
    Zip,
    /// A WARC or WARC.gz file: one record per response or resource, keyed by its target URI.
    Warc,
}

/// What two records with the same key mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DuplicatesArg {
    /// Refuse, naming the key.
    Error,
    /// The last one wins; the others are dead bytes until `compact`.
    KeepLast,
}

/// Whether to use a trained dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DictArg {
    /// No dictionary: plain `zstd -dc` reads the packs.
    Off,
    /// Always train one.
    On,
    /// Train one when the median file is 16 KiB or smaller.
    Auto,
}

/// How records are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CodecArg {
    /// zstd packs: `zstd -dc PACK` prints the contents.
    Zstd,
    /// gzip packs: `gzip -dc PACK` prints the contents.
    Gzip,
    /// No compression (zstd framing, so `zstd -dc` still reads the packs).
    Stored,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pack the files under SRC into a new archive at DEST.
    Pack {
        /// What to pack: a directory (keys are paths relative to it), a tar archive (plain,
        /// .gz, .zst, .xz, .bz2), a zip file, a WARC file, or - for a tar or WARC stream on
        /// standard input. Nothing is extracted to disk.
        src: PathBuf,
        /// The archive to create: a directory, or s3://bucket/prefix (packs stream straight up).
        dest: String,
        #[command(flatten)]
        packing: PackingArgs,
        /// Train a zstd dictionary on a sample of the files and compress small records with it
        /// (often 2-3x smaller for files of a few KB). `--dict=auto`: only if the files are small.
        /// Packs then need the dictionary to decompress: `haypack dict export` writes it out
        /// for `zstd -D`.
        #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_value = "off", default_missing_value = "on")]
        dict: DictArg,
        /// Replace an archive already at DEST, as its next generation.
        #[arg(long, conflicts_with = "segment_out")]
        force: bool,
        /// Write the packs into DEST without committing them, and describe them in FILE (`-`:
        /// standard output) for `haypack commit`: how many processes or machines pack parts of
        /// one archive at once.
        #[arg(long, value_name = "FILE", conflicts_with = "dict")]
        segment_out: Option<PathBuf>,
    },
    /// Commit segments written by `pack --segment-out` into ARCHIVE (created if there is none)
    /// as one new generation.
    Commit {
        /// The archive the segments were written into.
        archive: String,
        /// Segment descriptions.
        #[arg(required = true)]
        segments: Vec<PathBuf>,
        /// The same key in two segments: an error, or keep the one from the later segment.
        #[arg(long, value_enum, default_value = "error")]
        duplicates: DuplicatesArg,
    },
    /// Add the files under SRC to an existing archive, as new packs; a key the archive already
    /// holds gets the new content (the old record is dead until `compact`).
    Add {
        /// The archive.
        archive: String,
        /// What to add, as for `pack`. Keys are PREFIX followed by the source's keys.
        src: PathBuf,
        /// Put the files under this key prefix (a directory: `photos` means `photos/...`).
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        packing: PackingArgs,
    },
    /// Delete records, from the next generation on; their bytes stay in the packs until `compact`.
    Rm {
        /// The archive.
        archive: String,
        /// Keys to delete.
        keys: Vec<String>,
        /// Delete every key starting with this too (may be repeated).
        #[arg(long)]
        prefix: Vec<String>,
        /// Do not fail on a key the archive does not hold.
        #[arg(long)]
        missing_ok: bool,
    },
    /// Rewrite the packs whose dead fraction reached a threshold, without their dead records, and
    /// the index into one object. The old packs are retired, not deleted: see `gc`.
    Compact {
        /// The archive.
        archive: String,
        /// Rewrite a pack once this fraction of its bytes is dead (deleted or replaced records).
        #[arg(long, default_value_t = 0.3)]
        min_garbage: f64,
        /// Target size of the new packs.
        #[arg(long, default_value = "256M", value_parser = human::parse_size)]
        pack_size: u64,
        /// Then delete what was retired longer than this ago, like `haypack gc --grace`.
        #[arg(long, value_parser = human::parse_duration)]
        gc: Option<std::time::Duration>,
        /// Print what was done as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete retired objects (packs replaced by `compact`, a replaced archive's objects) once the
    /// grace period has passed. Objects no generation names (left by interrupted writers) older
    /// than it are retired first, and go once retired for GRACE (with 0s, in the same run); a
    /// writer never commits an object gc retired. Readers that opened a generation less than
    /// GRACE ago keep working.
    Gc {
        /// The archive.
        archive: String,
        /// How long an object stays after it was retired, e.g. 30m, 1h, 2d. It must outlast the
        /// longest reader and the longest-running writer.
        #[arg(long, default_value = "1h", value_parser = human::parse_duration)]
        grace: std::time::Duration,
    },
    /// Work with an archive's zstd dictionary.
    #[command(subcommand)]
    Dict(DictCommand),
    /// Copy an archive to another store, e.g. a local archive to s3://bucket/prefix. Interrupted,
    /// it resumes: objects already there are not sent again; the manifest goes last.
    Push {
        /// The archive to copy.
        src: String,
        /// Where to: s3://bucket/prefix or a directory.
        dest: String,
        /// Replace a different archive already at DEST.
        #[arg(long)]
        force: bool,
        /// Objects (packs) uploaded at once; each also uploads several parts at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
    /// List (or abort) unfinished multipart uploads under an S3 archive: they are billed.
    Uploads {
        /// The s3://bucket/prefix archive.
        archive: String,
        /// Abort them.
        #[arg(long)]
        abort: bool,
    },
    /// Print one record's content (or write it to a file).
    Get {
        /// The archive.
        archive: String,
        /// The record's key.
        key: String,
        /// Write to this file instead of stdout (created only if the record verifies).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List keys, sorted, optionally under a prefix.
    Ls {
        /// The archive.
        archive: String,
        /// Only keys starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Show mode, size, modification time and key.
        #[arg(long, short)]
        long: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Restore records as files under DIR (with their mode and modification time).
    Extract {
        /// The archive.
        archive: String,
        /// The directory to extract into (created if missing).
        dir: PathBuf,
        /// Only keys starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Restore setuid, setgid and sticky bits as the archive records them (by default they
        /// are cleared: an archive from someone else should not plant a setuid program).
        #[arg(long)]
        keep_special_bits: bool,
    },
    /// Write records as a tar stream (keys in order, each with its mode and mtime), so that
    /// `haypack export A | tar -x` restores what `haypack extract A` does.
    Export {
        /// The archive.
        archive: String,
        /// Only keys starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Write to this file (created only once the whole stream is written); `-` or nothing
        /// for stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read everything and check every checksum and structure; exit 1 if anything is wrong.
    Verify {
        /// The archive.
        archive: String,
    },
    /// Show records, packs, sizes, compression ratio and index cost.
    Info {
        /// The archive.
        archive: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve every record over HTTP by its key: GET /KEY (ranges, conditionals, gzip or zstd
    /// as stored), GET /?prefix=P&after=K&limit=N (keys as JSON), GET /healthz. SIGHUP reloads the
    /// archive, SIGTERM stops after requests in flight. Access logs:
    /// HAYPACK_LOG=haypack_serve::access=info.
    Serve {
        /// The archive: a directory or s3://bucket/prefix.
        archive: String,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The Cache-Control header sent with every record.
        #[arg(long, default_value = "public, max-age=300")]
        cache_control: String,
        /// Look for a new generation this often, e.g. 30s or 5m (SIGHUP also reloads).
        #[arg(long, value_parser = commands::parse_duration)]
        reload_every: Option<std::time::Duration>,
        /// The longest a request may take before its response starts (then 504).
        #[arg(long, default_value = "30s", value_parser = commands::parse_duration)]
        timeout: std::time::Duration,
        /// The longest a client may take nothing of its response before its connection is
        /// closed, so that a stalled client cannot keep a response's memory.
        #[arg(long, default_value = "30s", value_parser = commands::parse_duration)]
        write_timeout: std::time::Duration,
        /// Reads from the archive's store in flight at once, across all requests (a read holds
        /// its slot while it runs, not while a client takes the bytes).
        #[arg(long, default_value_t = 64)]
        max_upstream: usize,
    },
}

#[derive(Debug, Subcommand)]
enum DictCommand {
    /// Write the archive's dictionary to a file, so stock zstd reads its packs:
    /// `zstd -D FILE -dc PACK`.
    Export {
        /// The archive.
        archive: String,
        /// Where to write it.
        #[arg(long, short)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("HAYPACK_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("haypack: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Print the chain once: skip a cause whose text the line above already quotes.
            // Keys (and paths made of them) may hold control characters: escaped on a terminal.
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let mut shown = e.to_string();
            eprintln!("haypack: error: {}", commands::for_terminal(&shown, terminal));
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {}", commands::for_terminal(&text, terminal));
                }
                shown = text;
            }
            if let Some(hint) = hints::hint(&e) {
                eprintln!("  hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `haypack ls | head` closes the pipe early: that is the reader's choice, not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(c.downcast_ref::<haypack_read::Error>(), Some(haypack_read::Error::Output(io)) if io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

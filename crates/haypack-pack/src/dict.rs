//! Training a zstd dictionary on a sample of the files about to be packed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use haypack_format::{DEFAULT_DICTIONARY, Dictionary};

use haypack_source::{Content, DirSource, Item, Record, Skipped, Source, SourceOptions};

use crate::records::STREAM_THRESHOLD;
use crate::{Error, PackOptions, Result};

/// Whether to compress records against a trained dictionary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DictChoice {
    /// No dictionary: every pack stays readable by a plain `zstd -dc`.
    #[default]
    Off,
    /// Train one and use it for every small record.
    On,
    /// Train one if the files are small, where it pays.
    Auto,
}

/// Files sampled at most; zstd suggests samples of about 100 times the dictionary's size.
const SAMPLES: usize = 4096;
/// Sample bytes at most.
const SAMPLE_BYTES: u64 = 8 << 20;
/// Files larger than this gain little from a dictionary and are not sampled.
const SMALL: u64 = 128 << 10;
/// `Auto` trains when the median sampled file is no larger than this.
const AUTO_MEDIAN: u64 = 16 << 10;
/// Fewer samples than this cannot train a useful dictionary.
const MIN_SAMPLES: usize = 16;

/// Trains dictionary `id` on files spread evenly over the tree at `src`, or returns `None` when
/// `choice` (and for `Auto`, the files) says not to. (A stream is sampled as it is packed: see
/// [`Head`].)
pub(crate) fn train(src: &Path, opts: &PackOptions, id: u32) -> Result<Option<Dictionary>> {
    let choice = opts.dictionary;
    if choice == DictChoice::Off {
        return Ok(None);
    }
    // An even spread without knowing the count: keep every `stride`-th small file, and when the
    // sample is full, drop every other one and double the stride.
    let mut picked = Vec::new();
    let (mut stride, mut seen) = (1u64, 0u64);
    let source_opts = SourceOptions { skip_unreadable: true, follow_symlinks: opts.follow_symlinks };
    let mut walk = DirSource::new(src, &source_opts);
    // A file that cannot be read or named now is reported by the packing pass, with the options
    // that say what to do about it; the sample just goes without it.
    while let Ok(Some(item)) = walk.next_item() {
        let Item::Record(r) = item else { continue };
        let Content::File { path, len } = r.content else { continue };
        if len == 0 || len > SMALL {
            continue;
        }
        if seen.is_multiple_of(stride) {
            picked.push((path, len));
            if picked.len() == SAMPLES {
                picked = picked.into_iter().step_by(2).collect();
                stride *= 2;
            }
        }
        seen += 1;
    }
    let sizes: Vec<u64> = picked.iter().map(|(_, len)| *len).collect();
    if !worth_training(src, choice, sizes)? {
        return Ok(None);
    }
    let mut samples = Vec::with_capacity(picked.len());
    let mut total = 0;
    for (path, len) in &picked {
        if total + len > SAMPLE_BYTES {
            break;
        }
        if let Ok(bytes) = std::fs::read(path) {
            total += bytes.len() as u64;
            samples.push(bytes);
        }
    }
    finish(src, id, &samples)
}

/// Whether to train on samples of these sizes: `Auto` only when there are enough and they are
/// small; `On` insists, and fails when there are too few.
fn worth_training(src: &Path, choice: DictChoice, mut sizes: Vec<u64>) -> Result<bool> {
    sizes.sort_unstable();
    let median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    if choice == DictChoice::Auto && (sizes.len() < MIN_SAMPLES || median > AUTO_MEDIAN) {
        tracing::info!("no dictionary: {} small records sampled, median {median} bytes", sizes.len());
        return Ok(false);
    }
    if sizes.len() < MIN_SAMPLES {
        return Err(Error::Dictionary {
            src: src.to_owned(),
            detail: format!("{} small records to learn from, at least {MIN_SAMPLES} are needed", sizes.len()),
        });
    }
    Ok(true)
}

fn finish(src: &Path, id: u32, samples: &[Vec<u8>]) -> Result<Option<Dictionary>> {
    let total: usize = samples.iter().map(Vec::len).sum();
    let dict = Dictionary::train(id, samples, DEFAULT_DICTIONARY)
        .map_err(|e| Error::Dictionary { src: src.to_owned(), detail: e.to_string() })?;
    tracing::info!("trained a {}-byte dictionary on {} files ({total} bytes)", dict.bytes().len(), samples.len());
    Ok(Some(dict))
}

/// The first records of a stream, read to learn a dictionary from before any record is packed
/// (a stream cannot be read twice), to be packed first: the small records in memory (at most
/// the sample's bytes), then the record that ended the sample, if one did: in memory up to
/// [`STREAM_THRESHOLD`], beyond that in a temporary file.
pub(crate) struct Head {
    /// The dictionary learnt from the small records, if any.
    pub dictionary: Option<Dictionary>,
    /// The records read, in the stream's order.
    pub records: Vec<Record<'static>>,
    /// Entries passed over among them.
    pub skipped: Vec<Skipped>,
    /// Holds the large record's content, if it is in a temporary file, until it is packed.
    pub spool: Option<tempfile::NamedTempFile>,
}

/// Reads the head of `source` (up to [`SAMPLES`] small records, [`SAMPLE_BYTES`] in all, and
/// no further than the first record larger than [`SMALL`]) and trains dictionary `id` on its
/// small records, as `opts.dictionary` says. Nothing is lost: every item read is in the
/// returned [`Head`]. The sample is the stream's first records, not a spread over all of them.
pub(crate) fn train_on_head(src: &Path, source: &mut dyn Source, opts: &PackOptions, id: u32) -> Result<Head> {
    let mut head = Head { dictionary: None, records: Vec::new(), skipped: Vec::new(), spool: None };
    let mut total = 0u64;
    while head.records.len() < SAMPLES && total < SAMPLE_BYTES {
        let Some(item) = source.next_item()? else { break };
        let Record { key, mtime, mode, content_type, content } = match item {
            Item::Skipped(s) => {
                head.skipped.push(s);
                continue;
            }
            Item::Record(r) => r,
        };
        let (content, spool) = own(&key, content)?;
        let small = match &content {
            Content::Bytes(b) if b.len() as u64 <= SMALL => {
                total += b.len() as u64;
                true
            }
            _ => false,
        };
        head.records.push(Record { key, mtime, mode, content_type, content });
        if !small {
            head.spool = spool;
            break;
        }
    }
    let samples: Vec<Vec<u8>> = head
        .records
        .iter()
        .filter_map(|r| match &r.content {
            Content::Bytes(b) if !b.is_empty() && b.len() as u64 <= SMALL => Some(b.clone()),
            _ => None,
        })
        .collect();
    if worth_training(src, opts.dictionary, samples.iter().map(|b| b.len() as u64).collect())? {
        head.dictionary = finish(src, id, &samples)?;
    }
    Ok(head)
}

/// A record's content that outlives its source: bytes and files as they are, a stream read into
/// memory up to [`STREAM_THRESHOLD`] bytes and into a temporary file past that.
fn own(key: &str, content: Content<'_>) -> Result<(Content<'static>, Option<tempfile::NamedTempFile>)> {
    let reader = match content {
        Content::Bytes(b) => return Ok((Content::Bytes(b), None)),
        Content::File { path, len } => return Ok((Content::File { path, len }, None)),
        Content::Reader { reader, .. } => reader,
    };
    let failed = |source| Error::Content { key: key.to_owned(), source };
    let mut bytes = Vec::new();
    let mut reader = reader.take(STREAM_THRESHOLD + 1);
    reader.read_to_end(&mut bytes).map_err(failed)?;
    if bytes.len() as u64 <= STREAM_THRESHOLD {
        return Ok((Content::Bytes(bytes), None));
    }
    let temp = |source| Error::Temp { path: PathBuf::from(key), source };
    let mut spool = tempfile::NamedTempFile::new().map_err(temp)?;
    spool.write_all(&bytes).map_err(temp)?;
    let len = bytes.len() as u64 + std::io::copy(&mut reader.into_inner(), &mut spool).map_err(failed)?;
    let path = spool.path().to_owned();
    Ok((Content::File { path, len }, Some(spool)))
}

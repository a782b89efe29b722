//! Training a zstd dictionary on a sample of the files about to be packed.

use std::path::Path;

use haypack_format::{DEFAULT_DICTIONARY, Dictionary};

use haypack_source::{Content, DirSource, Item, Source, SourceOptions};

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
/// `choice` (and for `Auto`, the files) says not to.
pub(crate) fn train(src: &Path, opts: &PackOptions, id: u32) -> Result<Option<Dictionary>> {
    let choice = opts.dictionary;
    if choice == DictChoice::Off {
        return Ok(None);
    }
    if !src.is_dir() {
        return Err(Error::Dictionary {
            src: src.to_owned(),
            detail: "a dictionary is trained on a directory's files, and this is not a directory".into(),
        });
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
    let mut sizes: Vec<u64> = picked.iter().map(|(_, len)| *len).collect();
    sizes.sort_unstable();
    let median = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
    if choice == DictChoice::Auto && (picked.len() < MIN_SAMPLES || median > AUTO_MEDIAN) {
        tracing::info!("no dictionary: {} small files sampled, median {median} bytes", picked.len());
        return Ok(None);
    }
    if picked.len() < MIN_SAMPLES {
        return Err(Error::Dictionary {
            src: src.to_owned(),
            detail: format!("{} small files to learn from, at least {MIN_SAMPLES} are needed", picked.len()),
        });
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
    let dict = Dictionary::train(id, &samples, DEFAULT_DICTIONARY)
        .map_err(|e| Error::Dictionary { src: src.to_owned(), detail: e.to_string() })?;
    tracing::info!("trained a {}-byte dictionary on {} files ({total} bytes)", dict.bytes().len(), samples.len());
    Ok(Some(dict))
}

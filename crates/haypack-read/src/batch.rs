//! Batch reads: many records with few requests. Records are sorted by (pack, offset), neighbours
//! less than [`MAX_GAP`] apart are merged into one range of up to [`MAX_RUN`] bytes, several
//! ranges are in flight at once, and every record is still verified on its own.

use futures::stream::{self, StreamExt, TryStreamExt};
use haypack_format::{Budget, Entry, Timestamp};

use crate::{Archive, Error, Result, decode_whole};

/// Merge two records into one request when fewer bytes than this lie between them: reading a
/// little waste costs less than another round trip.
pub const MAX_GAP: u64 = 1 << 20;
/// The largest merged range: big enough for throughput, small enough to bound memory, and
/// enough for any record read whole.
pub const MAX_RUN: u64 = Budget::WHOLE;
/// Merged ranges fetched at once.
pub const IN_FLIGHT: usize = 4;

/// One request: a byte range of a pack and the records inside it.
#[derive(Debug)]
struct Run {
    start: u64,
    end: u64,
    entries: Vec<Entry>,
}

/// Where records sorted by (pack, offset) are read from: each span is one range of one pack,
/// the records `entries` (indexes into the slice given) inside it. Neighbours less than
/// 1 MiB (`MAX_GAP`) apart share a span as long as it stays within `max_len` bytes; a record longer
/// than that has a span of its own. The one rule for merging reads: batch reads and compaction
/// both use it.
pub fn coalesce(sorted: &[Entry], max_len: u64) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for (i, e) in sorted.iter().enumerate() {
        let end = e.offset.saturating_add(e.len);
        match spans.last_mut() {
            Some(s)
                if s.pack == e.pack
                    && e.offset >= s.bytes.end
                    && e.offset - s.bytes.end < MAX_GAP
                    && end - s.bytes.start <= max_len =>
            {
                s.bytes.end = end;
                s.entries.end = i + 1;
            }
            _ => spans.push(Span { pack: e.pack, bytes: e.offset..end, entries: i..i + 1 }),
        }
    }
    spans
}

/// One range to read (see [`coalesce`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The pack.
    pub pack: u32,
    /// The bytes of it to read.
    pub bytes: std::ops::Range<u64>,
    /// The records inside, as indexes into the entries coalesced.
    pub entries: std::ops::Range<usize>,
}

/// Groups entries into runs. Records [`Budget::whole`] does not allow are returned alone, to be
/// streamed.
fn plan(mut entries: Vec<Entry>) -> (Vec<Run>, Vec<Entry>) {
    entries.sort_by_key(|e| (e.pack, e.offset));
    let (whole, large): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| Budget::whole(e.len, e.raw_len));
    let runs = coalesce(&whole, MAX_RUN)
        .into_iter()
        .map(|s| Run { start: s.bytes.start, end: s.bytes.end, entries: whole[s.entries].to_vec() })
        .collect();
    (runs, large)
}

/// How [`Archive::get_many`] would group `entries` into requests, without reading anything:
/// the number of range requests and the number of records left to stream on their own. Public
/// so the coalescing can be benchmarked (`benches/coalesce.rs`) without a store.
#[doc(hidden)]
pub fn plan_counts(entries: Vec<Entry>) -> (usize, usize) {
    let (runs, large) = plan(entries);
    (runs.len(), large.len())
}

impl Archive {
    /// Reads the records in `entries` and hands each one's verified content to `each`, in
    /// (pack, offset) order, with about (stored bytes / 16 MiB) requests rather than one per
    /// record. Records too large to hold in memory ([`Budget::whole`]: over 16 MiB stored or decoded)
    /// are not read: they are returned, for the caller to stream with [`Archive::get_to`]. Stops at the first error,
    /// from a record or from `each`. `each` gets the record's entry with its mtime to the
    /// nanosecond, from the record's header.
    pub async fn get_many(
        &self,
        entries: Vec<Entry>,
        mut each: impl FnMut(&Entry, Vec<u8>) -> Result<()>,
    ) -> Result<Vec<Entry>> {
        if !self.manifest.dictionaries.is_empty() {
            self.dictionaries().await?;
        }
        let (runs, large) = plan(entries);
        let mut fetched = stream::iter(runs).map(|run| self.fetch_run(run)).buffered(IN_FLIGHT);
        while let Some((run, bytes)) = fetched.try_next().await? {
            for mut e in run.entries {
                let at = (e.offset - run.start) as usize;
                let content;
                (content, e.mtime) = self.decode_in(&e, &bytes[at..at + e.len as usize])?;
                each(&e, content)?;
            }
        }
        Ok(large)
    }

    async fn fetch_run(&self, run: Run) -> Result<(Run, bytes::Bytes)> {
        let pack = self.pack_of(&run.entries[0])?;
        if run.end > pack.size {
            return Err(
                self.corrupt_at(&run.entries[0], format!("record runs past the pack's end ({} bytes)", pack.size))
            );
        }
        let bytes =
            self.read_range(&pack.name, run.start..run.end, Some(&run.entries[0].key)).await.map_err(|e| match e {
                Error::Store(haypack_store::Error::OutOfRange { size, .. }) => {
                    self.corrupt_at(&run.entries[0], format!("pack is truncated at {size} of {} bytes", pack.size))
                }
                e => e,
            })?;
        Ok((run, bytes))
    }

    /// Decodes and verifies one record held whole in memory; returns it and its header's mtime.
    fn decode_in(&self, e: &Entry, bytes: &[u8]) -> Result<(Vec<u8>, Timestamp)> {
        decode_whole(bytes, e, self.loaded_dictionaries()).map_err(|detail| self.corrupt_at(e, detail))
    }

    pub(crate) fn corrupt_at(&self, e: &Entry, detail: String) -> Error {
        let object = self.packs.get(&e.pack).map_or_else(|| format!("pack {}", e.pack), |p| p.name.clone());
        Error::Corrupt { object, offset: e.offset, key: Some(e.key.clone()), detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pack: u32, offset: u64, len: u64) -> Entry {
        Entry {
            key: format!("{pack}-{offset}"),
            pack,
            offset,
            len,
            raw_len: len,
            mtime: Default::default(),
            mode: 0o644,
            content_type: None,
        }
    }

    #[test]
    fn neighbours_merge_and_far_or_large_records_do_not() {
        let entries = vec![
            entry(1, 100, 50),
            entry(1, 0, 100),
            entry(1, 150 + MAX_GAP, 10),  // just too far
            entry(2, 0, 10),              // another pack
            entry(1, 10 << 20, 20 << 20), // larger than one run: streamed
        ];
        let (runs, large) = plan(entries);
        let shape: Vec<(u32, u64, u64, usize)> =
            runs.iter().map(|r| (r.entries[0].pack, r.start, r.end, r.entries.len())).collect();
        assert_eq!(shape, [(1, 0, 150, 2), (1, 150 + MAX_GAP, 160 + MAX_GAP, 1), (2, 0, 10, 1)]);
        assert_eq!(large.len(), 1);
    }

    #[test]
    fn records_that_decode_large_are_streamed() {
        let small_but_expanding = Entry { raw_len: 20 << 20, ..entry(1, 0, 1 << 20) };
        let (runs, large) = plan(vec![small_but_expanding, entry(1, 1 << 20, 10)]);
        assert_eq!((runs.len(), runs[0].entries.len(), large.len()), (1, 1, 1));
    }

    #[test]
    fn runs_stop_at_the_size_limit() {
        let entries: Vec<Entry> = (0..40).map(|i| entry(1, i << 20, 1 << 20)).collect();
        let (runs, _) = plan(entries);
        assert_eq!(runs.len(), 3);
        assert!(runs.iter().all(|r| r.end - r.start <= MAX_RUN));
    }
}

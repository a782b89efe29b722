//! Sorting index entries that arrive in any key order, with bounded memory: entries collect in
//! a buffer of at most [`SORT_BUFFER`] bytes, which is sorted and spilled to an anonymous
//! temporary file as a *run* when full; reading them back merges the runs (a k-way merge that
//! holds one entry per run). A source that arrives in key order (a directory walk) never
//! spills more than it must: runs that follow each other in key order are appended to one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

use haypack_format::{Entry, Timestamp};

use crate::{Error, Result};

/// Entry bytes (keys included) held before a run is spilled.
pub(crate) const SORT_BUFFER: usize = 64 << 20;

/// What two records with the same key in one stream mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Duplicates {
    /// An error naming the key: nothing is committed.
    #[default]
    Refuse,
    /// The record written last wins; the others become dead bytes in their packs.
    KeepLast,
}

/// An entry's weight in the buffer: its key and about what the rest costs in memory.
fn weight(e: &Entry) -> usize {
    e.key.len() + e.content_type.as_ref().map_or(0, String::len) + 96
}

/// Collects entries in any order; [`Sorter::finish`] gives them back sorted.
pub(crate) struct Sorter {
    buffer: Vec<Entry>,
    buffer_bytes: usize,
    runs: Vec<Spill>,
    duplicates: Duplicates,
    /// Entries that lost to a later one under the same key.
    dropped: Vec<Entry>,
    limit: usize,
}

/// A sorted run being spilled to disk, and the last key in it.
struct Spill {
    file: BufWriter<File>,
    last: String,
}

impl Sorter {
    pub fn new(duplicates: Duplicates) -> Self {
        Self::with_limit(duplicates, SORT_BUFFER)
    }

    fn with_limit(duplicates: Duplicates, limit: usize) -> Self {
        Sorter { buffer: Vec::new(), buffer_bytes: 0, runs: Vec::new(), duplicates, dropped: Vec::new(), limit }
    }

    pub fn push(&mut self, e: Entry) -> Result<()> {
        self.buffer_bytes += weight(&e);
        self.buffer.push(e);
        if self.buffer_bytes >= self.limit { self.spill() } else { Ok(()) }
    }

    /// Sorts the buffer, settles its duplicate keys, and writes it out as a run (appended to
    /// the last run when it follows it in key order).
    fn spill(&mut self) -> Result<()> {
        let mut entries = self.settle()?;
        if entries.is_empty() {
            return Ok(());
        }
        let follows = self.runs.last().is_some_and(|r| r.last < entries[0].key);
        if !follows {
            let file = tempfile::tempfile().map_err(spill_error)?;
            self.runs.push(Spill { file: BufWriter::with_capacity(1 << 20, file), last: String::new() });
        }
        let run = self.runs.last_mut().expect("a run was just made");
        for e in &entries {
            write_entry(&mut run.file, e).map_err(spill_error)?;
        }
        run.last = entries.pop().map(|e| e.key).unwrap_or_default();
        Ok(())
    }

    /// The buffer sorted by key (stably: among equal keys the later write comes last), with
    /// each key once.
    fn settle(&mut self) -> Result<Vec<Entry>> {
        let mut entries = std::mem::take(&mut self.buffer);
        self.buffer_bytes = 0;
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
        for e in entries {
            match out.last_mut() {
                Some(prev) if prev.key == e.key => {
                    if self.duplicates == Duplicates::Refuse {
                        return Err(Error::DuplicateKey { key: e.key });
                    }
                    self.dropped.push(std::mem::replace(prev, e));
                }
                _ => out.push(e),
            }
        }
        Ok(out)
    }

    /// Ends the input. The entries come back sorted through [`Sorted::iter`], as often as
    /// needed (a commit that loses a race merges them again).
    pub fn finish(mut self) -> Result<Sorted> {
        if self.runs.is_empty() {
            let entries = self.settle()?;
            return Ok(Sorted {
                memory: entries,
                runs: Vec::new(),
                duplicates: self.duplicates,
                dropped: self.dropped,
            });
        }
        self.spill()?;
        let mut runs = Vec::with_capacity(self.runs.len());
        for run in self.runs {
            let file = run.file.into_inner().map_err(|e| spill_error(e.into_error()))?;
            runs.push(file);
        }
        let mut sorted = Sorted { memory: Vec::new(), runs, duplicates: self.duplicates, dropped: self.dropped };
        if sorted.duplicates == Duplicates::KeepLast && sorted.runs.len() > 1 {
            // Keys repeated across runs are found only by merging them: once, now, so that
            // every record that lost is known before anything is committed.
            let mut it = sorted.iter()?;
            for e in it.by_ref() {
                e?;
            }
            sorted.dropped.append(&mut it.dropped);
        }
        Ok(sorted)
    }
}

/// Entries sorted by key, in memory or in runs on disk.
pub(crate) struct Sorted {
    memory: Vec<Entry>,
    runs: Vec<File>,
    duplicates: Duplicates,
    /// Entries dropped while sorting the buffer (see [`Sorted::dropped`]).
    dropped: Vec<Entry>,
}

impl Sorted {
    /// Records that lost to a later one under the same key.
    pub fn dropped(&self) -> &[Entry] {
        &self.dropped
    }

    /// The entries in key order, each key once.
    pub fn iter(&self) -> Result<Merge> {
        if self.runs.is_empty() {
            let memory: Box<dyn Run> = Box::new(self.memory.clone().into_iter().map(Ok));
            return Merge::new(vec![memory], self.duplicates);
        }
        let mut runs: Vec<Box<dyn Run>> = Vec::with_capacity(self.runs.len());
        for file in &self.runs {
            let mut file = file.try_clone().map_err(spill_error)?;
            file.rewind().map_err(spill_error)?;
            runs.push(Box::new(FileRun(BufReader::with_capacity(64 << 10, file))));
        }
        Merge::new(runs, self.duplicates)
    }
}

/// A sorted sequence of entries, each key at most once.
pub(crate) trait Run: Send {
    fn next_entry(&mut self) -> Result<Option<Entry>>;
}

impl<I: Iterator<Item = Result<Entry>> + Send> Run for I {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        self.next().transpose()
    }
}

/// A run spilled to a temporary file.
struct FileRun(BufReader<File>);

impl Run for FileRun {
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        read_entry(&mut self.0).map_err(spill_error)
    }
}

/// Merges sorted runs into one sorted sequence, holding one entry per run; a key in several
/// runs comes out once, from the last of them (see [`Duplicates`]).
pub(crate) struct Merge {
    runs: Vec<Box<dyn Run>>,
    /// The next entry of each run, smallest key first; among equal keys the earlier run first.
    heap: BinaryHeap<Reverse<(String, usize, HeapEntry)>>,
    duplicates: Duplicates,
    started: bool,
    /// Entries that lost to a later one under the same key.
    pub dropped: Vec<Entry>,
}

/// An entry in the heap, ordered by nothing (the key and run decide).
struct HeapEntry(Entry);

impl PartialEq for HeapEntry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for HeapEntry {}
impl PartialOrd for HeapEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapEntry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Merge {
    /// A merge of `runs`, the later runs holding the later writes. Reads the first entry of
    /// each run lazily, on the first call.
    pub fn new(runs: Vec<Box<dyn Run>>, duplicates: Duplicates) -> Result<Self> {
        Ok(Merge { runs, heap: BinaryHeap::new(), duplicates, started: false, dropped: Vec::new() })
    }

    fn refill(&mut self, run: usize) -> Result<()> {
        if let Some(e) = self.runs[run].next_entry()? {
            self.heap.push(Reverse((e.key.clone(), run, HeapEntry(e))));
        }
        Ok(())
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        if !self.started {
            self.started = true;
            for run in 0..self.runs.len() {
                self.refill(run)?;
            }
        }
        let Some(Reverse((_, run, HeapEntry(mut e)))) = self.heap.pop() else { return Ok(None) };
        self.refill(run)?;
        while let Some(Reverse((key, _, _))) = self.heap.peek() {
            if *key != e.key {
                break;
            }
            if self.duplicates == Duplicates::Refuse {
                return Err(Error::DuplicateKey { key: e.key });
            }
            let Some(Reverse((_, later, HeapEntry(next)))) = self.heap.pop() else { break };
            self.refill(later)?;
            self.dropped.push(std::mem::replace(&mut e, next));
        }
        Ok(Some(e))
    }
}

impl Iterator for Merge {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

fn spill_error(source: std::io::Error) -> Error {
    Error::Temp { path: "index entries spilled for sorting".into(), source }
}

// A run's entries: each field a LEB128 varint (the mtime's seconds zigzag-encoded), the key and
// content type as length-prefixed bytes (the content type's length plus one, 0 for none).

fn put(w: &mut impl Write, mut v: u64) -> std::io::Result<()> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        buf[n] = if v == 0 { byte } else { byte | 0x80 };
        n += 1;
        if v == 0 {
            return w.write_all(&buf[..n]);
        }
    }
}

fn get(r: &mut impl Read) -> std::io::Result<Option<u64>> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8];
        if r.read(&mut b)? == 0 {
            return if shift == 0 { Ok(None) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "varint too long"))
}

fn must(r: &mut impl Read) -> std::io::Result<u64> {
    get(r)?.ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
}

fn write_entry(w: &mut impl Write, e: &Entry) -> std::io::Result<()> {
    put(w, e.key.len() as u64)?;
    w.write_all(e.key.as_bytes())?;
    for v in [u64::from(e.pack), e.offset, e.len, e.raw_len] {
        put(w, v)?;
    }
    put(w, ((e.mtime.secs << 1) ^ (e.mtime.secs >> 63)) as u64)?;
    put(w, u64::from(e.mtime.nanos))?;
    put(w, u64::from(e.mode))?;
    match &e.content_type {
        None => put(w, 0),
        Some(t) => {
            put(w, t.len() as u64 + 1)?;
            w.write_all(t.as_bytes())
        }
    }
}

fn read_string(r: &mut impl Read, len: u64) -> std::io::Result<String> {
    let mut buf = vec![0; len as usize];
    r.read_exact(&mut buf)?;
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads back what [`write_entry`] wrote (this process's own temporary file).
fn read_entry(r: &mut impl Read) -> std::io::Result<Option<Entry>> {
    let Some(key_len) = get(r)? else { return Ok(None) };
    let key = read_string(r, key_len)?;
    let [pack, offset, len, raw_len] = [must(r)?, must(r)?, must(r)?, must(r)?];
    let zz = must(r)?;
    let secs = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
    let nanos = must(r)? as u32;
    let mode = must(r)? as u32;
    let content_type = match must(r)? {
        0 => None,
        n => Some(read_string(r, n - 1)?),
    };
    Ok(Some(Entry {
        key,
        pack: pack as u32,
        offset,
        len,
        raw_len,
        mtime: Timestamp { secs, nanos },
        mode,
        content_type,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, pack: u32) -> Entry {
        Entry {
            key: key.into(),
            pack,
            offset: 7,
            len: 11,
            raw_len: 5,
            mtime: Timestamp { secs: -3, nanos: 9 },
            mode: 0o644,
            content_type: pack.is_multiple_of(2).then(|| "text/plain".into()),
        }
    }

    fn keys(sorter: Sorter) -> Result<Vec<(String, u32)>> {
        let sorted = sorter.finish()?;
        sorted.iter()?.map(|e| e.map(|e| (e.key, e.pack))).collect()
    }

    #[test]
    fn sorts_any_order_in_memory_and_through_spilled_runs() {
        let order: Vec<u32> = (0..500).map(|i| (i * 7919) % 500).collect();
        for limit in [usize::MAX, 1000, 1] {
            let mut s = Sorter::with_limit(Duplicates::Refuse, limit);
            for &i in &order {
                s.push(entry(&format!("k{i:04}"), i)).expect("push");
            }
            let got = keys(s).expect("sorted");
            let want: Vec<_> = (0..500).map(|i| (format!("k{i:04}"), i)).collect();
            assert_eq!(got, want, "limit {limit}");
        }
    }

    #[test]
    fn runs_round_trip_every_field() {
        let mut s = Sorter::with_limit(Duplicates::Refuse, 1);
        let e = entry("a/b", 2);
        s.push(e.clone()).expect("push");
        s.push(entry("a/a", 3)).expect("push");
        let sorted = s.finish().expect("finish");
        let back: Vec<Entry> = sorted.iter().expect("iter").collect::<Result<_>>().expect("read");
        assert_eq!(back[1], e);
        // Iterable again, as a commit that lost a race needs.
        assert_eq!(sorted.iter().expect("iter").count(), 2);
    }

    #[test]
    fn sorted_input_spills_into_one_run() {
        let mut s = Sorter::with_limit(Duplicates::Refuse, 500);
        for i in 0..100 {
            s.push(entry(&format!("k{i:04}"), 1)).expect("push");
        }
        assert_eq!(s.runs.len(), 1);
    }

    #[test]
    fn duplicates_are_refused_or_the_last_kept() {
        for limit in [usize::MAX, 1] {
            let mut s = Sorter::with_limit(Duplicates::Refuse, limit);
            for k in ["b", "a", "b"] {
                s.push(entry(k, 1)).expect("push");
            }
            let err = s.finish().and_then(|s| s.iter()?.collect::<Result<Vec<_>>>()).expect_err("duplicate");
            assert!(matches!(&err, Error::DuplicateKey { key } if key == "b"), "{err}");

            let mut s = Sorter::with_limit(Duplicates::KeepLast, limit);
            for (k, pack) in [("b", 1), ("a", 2), ("b", 3), ("b", 5)] {
                s.push(entry(k, pack)).expect("push");
            }
            let sorted = s.finish().expect("finish");
            let got: Vec<_> =
                sorted.iter().expect("iter").map(|e| e.map(|e| (e.key, e.pack))).collect::<Result<_>>().expect("ok");
            assert_eq!(got, vec![("a".into(), 2), ("b".into(), 5)], "limit {limit}");
            let mut dropped: Vec<_> = sorted.dropped().iter().map(|d| d.pack).collect();
            dropped.sort_unstable();
            assert_eq!(dropped, vec![1, 3]);
        }
    }
}

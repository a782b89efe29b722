//! An archive's records as one tar stream (`haypack export`), in key order, so that
//! `haypack export A | tar -x` restores what `haypack extract A` does.
//!
//! Records are fetched a page at a time with [`Archive::get_many`] (merged range reads, each
//! record verified before it is written) and written in key order; records too large to hold
//! stream through [`Archive::record`] in pieces. Memory stays at one page (at most
//! [`PAGE_BYTES`] of content) whatever the archive's size.

use std::io::{self, Write};
use std::sync::Arc;

use futures::StreamExt;
use haypack_format::{Entry, Timestamp};

use crate::{Archive, Error, Result, Want};

/// Entries listed at a time.
const PAGE_ENTRIES: usize = 1024;
/// Content held at a time: a page is cut into batches of at most this many raw bytes.
const PAGE_BYTES: u64 = 32 << 20;
const BLOCK: u64 = 512;
/// What a ustar header's name field holds; longer keys travel in a PAX `path` record.
const USTAR_NAME: usize = 100;
/// The largest mtime the header's 11 octal digits hold; later (or earlier than 1970, or with a
/// fraction of a second) ones travel in a PAX `mtime` record.
const USTAR_MAX_TIME: i64 = 0o77_777_777_777;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Records written.
    pub records: u64,
    /// Their content bytes.
    pub bytes: u64,
}

impl Archive {
    /// Writes every record whose key starts with `prefix` to `out` as a POSIX (PAX) tar stream:
    /// keys in index order, each a regular file with its mode and its mtime to the nanosecond.
    /// `progress` hears each record's raw bytes. If a record fails its check after part of it
    /// was written (only records over 16 MiB stream before the check), the error returns and
    /// the stream is left cut, which every tar reader reports as truncated.
    pub async fn export(
        self: &Arc<Self>,
        prefix: &str,
        out: impl Write + Send,
        progress: impl Fn(u64),
    ) -> Result<ExportReport> {
        let mut tar = tar::Builder::new(out);
        let mut report = ExportReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(prefix, after.as_deref(), PAGE_ENTRIES).await?;
            for batch in batches(&page.entries) {
                self.export_batch(batch, &mut tar, &mut report, &progress).await?;
            }
            match page.entries.last() {
                Some(last) if page.more => after = Some(last.key.clone()),
                _ => break,
            }
        }
        let mut out = tar.into_inner().map_err(Error::Output)?;
        out.flush().map_err(Error::Output)?;
        Ok(report)
    }

    async fn export_batch<W: Write + Send>(
        self: &Arc<Self>,
        batch: &[Entry],
        tar: &mut tar::Builder<W>,
        report: &mut ExportReport,
        progress: &impl Fn(u64),
    ) -> Result<()> {
        // get_many hands records over in pack order; they are written in key order.
        let mut slots: Vec<Option<(Entry, Vec<u8>)>> = vec![None; batch.len()];
        self.get_many(batch.to_vec(), |e, content| {
            if let Ok(i) = batch.binary_search_by(|b| b.key.cmp(&e.key)) {
                slots[i] = Some((e.clone(), content));
            }
            Ok(())
        })
        .await?;
        for (entry, slot) in batch.iter().zip(slots) {
            match slot {
                Some((e, content)) => {
                    append_header(tar, &e)?;
                    tar.get_mut().write_all(&content).map_err(|err| output(&e.key, err))?;
                }
                None => self.stream_large(entry, tar).await?,
            }
            pad(tar, entry)?;
            report.records += 1;
            report.bytes += entry.raw_len;
            progress(entry.raw_len);
        }
        Ok(())
    }

    /// A record too large to hold: its header first (for the mtime to the nanosecond), then
    /// its content in pieces.
    async fn stream_large<W: Write + Send>(self: &Arc<Self>, entry: &Entry, tar: &mut tar::Builder<W>) -> Result<()> {
        let record = self.record(&entry.key, Want::Header).await?;
        let mut e = entry.clone();
        e.mtime = record.header().mtime;
        append_header(tar, &e)?;
        let mut pieces = Box::pin(record.into_stream(None));
        let mut written = 0u64;
        while let Some(piece) = pieces.next().await {
            let piece = piece?;
            written += piece.len() as u64;
            tar.get_mut().write_all(&piece).map_err(|err| output(&e.key, err))?;
        }
        if written != e.raw_len {
            return Err(output(
                &e.key,
                io::Error::other(format!("{written} bytes came, the index says {}", e.raw_len)),
            ));
        }
        Ok(())
    }
}

/// Cuts a page into runs of consecutive entries holding at most [`PAGE_BYTES`] of content
/// (a record larger than that is a run of its own, and streams).
fn batches(entries: &[Entry]) -> Vec<&[Entry]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, e) in entries.iter().enumerate() {
        if i > start && bytes + e.raw_len > PAGE_BYTES {
            out.push(&entries[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += e.raw_len;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

fn output(key: &str, e: io::Error) -> Error {
    Error::Output(io::Error::new(e.kind(), format!("exporting {key:?}: {e}")))
}

/// The PAX records a header needs (a long key, a precise or out-of-range mtime), then the
/// ustar header itself.
fn append_header<W: Write>(tar: &mut tar::Builder<W>, e: &Entry) -> Result<()> {
    let key = e.key.as_bytes();
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    if key.len() > USTAR_NAME {
        pax.push(("path", key.to_vec()));
    }
    let Timestamp { secs, nanos } = e.mtime;
    if nanos != 0 || !(0..=USTAR_MAX_TIME).contains(&secs) {
        pax.push(("mtime", pax_time(e.mtime).into_bytes()));
    }
    if !pax.is_empty() {
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice()))).map_err(|err| output(&e.key, err))?;
    }
    let mut header = tar::Header::new_ustar();
    // Written as bytes: `set_path` would read the key as a host path (and fold `//`).
    let name = &mut header.as_old_mut().name;
    let n = key.len().min(USTAR_NAME);
    name[..n].copy_from_slice(&key[..n]);
    header.set_size(e.raw_len);
    header.set_mode(e.mode & 0o7777);
    header.set_mtime(secs.clamp(0, USTAR_MAX_TIME) as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.get_mut().write_all(header.as_bytes()).map_err(|err| output(&e.key, err))
}

/// Zeros to the end of the record's last 512-byte block.
fn pad<W: Write>(tar: &mut tar::Builder<W>, e: &Entry) -> Result<()> {
    let zeros = [0u8; BLOCK as usize];
    let n = ((BLOCK - e.raw_len % BLOCK) % BLOCK) as usize;
    tar.get_mut().write_all(&zeros[..n]).map_err(|err| output(&e.key, err))
}

/// A PAX time: seconds, then the fraction without trailing zeros (negative times count the
/// fraction away from zero, as POSIX says).
fn pax_time(t: Timestamp) -> String {
    let (secs, nanos) =
        if t.secs < 0 && t.nanos > 0 { (t.secs + 1, 1_000_000_000 - t.nanos) } else { (t.secs, t.nanos) };
    let sign = if t.secs < 0 && secs == 0 { "-" } else { "" };
    if nanos == 0 {
        return format!("{sign}{secs}");
    }
    let frac = format!("{nanos:09}");
    format!("{sign}{secs}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_read_back_as_written() {
        assert_eq!(pax_time(Timestamp { secs: 1_700_000_000, nanos: 500_000_000 }), "1700000000.5");
        assert_eq!(pax_time(Timestamp { secs: 5, nanos: 0 }), "5");
        // -1.25 s is secs -2 plus 0.75 s.
        assert_eq!(pax_time(Timestamp { secs: -2, nanos: 750_000_000 }), "-1.25");
        assert_eq!(pax_time(Timestamp { secs: -1, nanos: 500_000_000 }), "-0.5");
    }

    #[test]
    fn batches_hold_at_most_the_budget_and_a_large_record_alone() {
        let e = |n: u64| Entry { raw_len: n, ..Default::default() };
        let entries = [e(PAGE_BYTES / 2), e(PAGE_BYTES / 2), e(1), e(PAGE_BYTES * 2), e(1)];
        let sizes: Vec<usize> = batches(&entries).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 1, 1, 1]);
    }
}

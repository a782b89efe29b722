//! `verify`: read every byte of an archive and check every structure in it.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::Bytes;
use haypack_format::{Budget, Entry, FOOTER_TAIL, Footer, Meta, PackRef, decode_block};

use crate::chunked::Chunked;
use crate::{Archive, Result, decode_whole};

/// Bytes read at once: runs of small records, or a chunk of a larger one.
const CHUNK: u64 = Budget::CHUNK;

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Packs read.
    pub packs: u64,
    /// Records decoded and checked.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Everything wrong, naming the object and offset; empty when all is well.
    pub problems: Vec<Problem>,
}

/// One thing `verify` found wrong. Its text is one line naming the object (and the record and
/// offset where there is one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// An object the manifest names could not be read (gone, or the store refused).
    #[error("{object}: {detail}")]
    Unreadable {
        /// The pack or index object.
        object: String,
        /// What the store said.
        detail: String,
    },
    /// An object is not the size the manifest says.
    #[error("{object}: {what} is {found} bytes, the manifest says {expected}: truncated or replaced")]
    Size {
        /// The pack or index object.
        object: String,
        /// `pack` or `index object`.
        what: &'static str,
        /// Its size in the store.
        found: u64,
        /// Its size in the manifest.
        expected: u64,
    },
    /// An archive index block failed its checks.
    #[error("{0}")]
    Block(String),
    /// An archive index block's keys do not all follow the block before it.
    #[error("{object}: block {block} overlaps the keys of the block before it")]
    Overlap {
        /// The index object.
        object: String,
        /// The block's number in the archive index.
        block: usize,
    },
    /// An archive index entry names a pack the manifest does not list.
    #[error("index entry {key:?} names pack {pack}, which is not in the manifest")]
    UnknownPack {
        /// The entry's key.
        key: String,
        /// The pack id it names.
        pack: u32,
    },
    /// A pack's own structure is wrong: its footer, its own index, how its records tile it, or
    /// its checksum.
    #[error("{pack}: {detail}")]
    Pack {
        /// The pack.
        pack: String,
        /// What is wrong.
        detail: String,
    },
    /// A record failed its check.
    #[error("{pack}: record {key:?} at offset {offset}: {detail}")]
    Record {
        /// The pack.
        pack: String,
        /// The record's key.
        key: String,
        /// Where it starts in the pack.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The archive index names a record the pack's own index does not hold.
    #[error("{pack}: the archive index names a record its own index does not hold")]
    NotInPack {
        /// The pack.
        pack: String,
    },
    /// The pack's records no longer indexed are not the dead records the manifest counts.
    #[error(
        "{pack}: {dead_records} records ({dead_bytes} bytes) are no longer indexed, the manifest counts {counted_records} ({counted_bytes} bytes)"
    )]
    DeadCounts {
        /// The pack.
        pack: String,
        /// Records in the pack that the archive index does not name.
        dead_records: u64,
        /// Their bytes.
        dead_bytes: u64,
        /// Dead records the manifest counts.
        counted_records: u64,
        /// Their bytes, as the manifest counts them.
        counted_bytes: u64,
    },
}

/// A record as both indexes describe it, hashed: the archive index's live entries of a pack
/// must be among the pack's own, and the rest are the pack's dead records. The archive index
/// keeps mtimes to the second, the pack's own index to the nanosecond: seconds are compared.
fn fingerprint(e: &Entry) -> u64 {
    let mut h = DefaultHasher::new();
    (&e.key, e.offset, e.len, e.raw_len, e.mtime.secs, e.mode, &e.content_type).hash(&mut h);
    h.finish()
}

impl Archive {
    /// Reads the whole archive and checks everything: the index blocks against the root, every
    /// pack's size, checksum, footer and own index, every record's framing, header and content
    /// checksum, and that the archive index and the packs' indexes agree record for record.
    /// Problems are collected, not returned as errors; an `Err` means the store itself failed.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        // A dictionary that cannot be read is one problem; the records that need it, others.
        match self.dictionaries().await {
            Ok(_) => {}
            Err(crate::Error::Store(e)) => return Err(crate::Error::Store(e)),
            Err(e) => report.problems.push(Problem::Block(e.to_string())),
        }
        let mut live = self.verify_index(&mut report).await?;
        for pack in &self.manifest.packs {
            report.packs += 1;
            let mut live = live.remove(&pack.id).unwrap_or_default();
            match self.verify_pack(pack, &mut report).await {
                Ok(own) => check_liveness(pack, &mut live, &own, &mut report.problems),
                Err(problem) => report.problems.push(problem),
            }
        }
        Ok(report)
    }

    /// Checks every index object's size and every archive index block; returns the
    /// fingerprints of each pack's live records as the index sees them.
    async fn verify_index(&self, report: &mut VerifyReport) -> Result<HashMap<u32, Vec<u64>>> {
        for o in &self.manifest.index.objects {
            match self.store.head(&o.name).await {
                Ok(meta) if meta.size != o.size => report.problems.push(Problem::Size {
                    object: o.name.clone(),
                    what: "index object",
                    found: meta.size,
                    expected: o.size,
                }),
                Ok(_) => {}
                Err(e) => report.problems.push(Problem::Unreadable { object: o.name.clone(), detail: e.to_string() }),
            }
        }
        let mut live: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut last: Option<String> = None;
        let pages = match self.pages().await {
            Ok(p) => p,
            Err(crate::Error::Store(e)) => return Err(e.into()),
            Err(e) => {
                report.problems.push(Problem::Block(e.to_string()));
                return Ok(live);
            }
        };
        let branches = self.manifest.index.blocks.iter().filter(|r| r.is_branch());
        report.bytes = branches.fold(report.bytes, |n, r| n.saturating_add(r.len));
        for (i, r) in pages.iter().enumerate() {
            let block = match self.page_entries(i).await {
                Ok(b) => b,
                Err(crate::Error::Store(e)) => return Err(e.into()),
                Err(e) => {
                    report.problems.push(Problem::Block(e.to_string()));
                    continue;
                }
            };
            report.bytes = report.bytes.saturating_add(r.len);
            if let (Some(prev), Some(first)) = (&last, block.first())
                && *prev >= first.key
            {
                let object = self.manifest.index.objects[r.object as usize].name.clone();
                report.problems.push(Problem::Overlap { object, block: i });
            }
            last = block.last().map(|e| e.key.clone());
            for e in block.iter() {
                if !self.packs.contains_key(&e.pack) {
                    report.problems.push(Problem::UnknownPack { key: e.key.clone(), pack: e.pack });
                }
                live.entry(e.pack).or_default().push(fingerprint(e));
            }
        }
        Ok(live)
    }

    /// Reads one pack end to end. Returns its own index's records (fingerprint and length), or
    /// the first problem.
    async fn verify_pack(&self, pack: &PackRef, report: &mut VerifyReport) -> Result<HashMap<u64, u64>, Problem> {
        let store = &self.store;
        let bad = |detail: String| Problem::Pack { pack: pack.name.clone(), detail };
        let unreadable =
            |e: haypack_store::Error| Problem::Unreadable { object: pack.name.clone(), detail: e.to_string() };
        let meta = store.head(&pack.name).await.map_err(unreadable)?;
        if meta.size != pack.size {
            let (object, found, expected) = (pack.name.clone(), meta.size, pack.size);
            return Err(Problem::Size { object, what: "pack", found, expected });
        }
        let get =
            |range: std::ops::Range<u64>| async move { store.get_range(&pack.name, range).await.map_err(unreadable) };
        let tail_start = pack.size.saturating_sub(FOOTER_TAIL as u64);
        let tail = get(tail_start..pack.size).await?;
        let footer = Footer::decode(&tail, pack.size).map_err(|e| bad(format!("footer: {e}")))?;
        if footer.records != pack.records {
            return Err(bad(format!("footer counts {} records, the manifest {}", footer.records, pack.records)));
        }
        let framed = get(footer.index_offset..footer.index_offset + footer.index_len).await?;
        let at = |e: haypack_format::Error| bad(format!("pack index at offset {}: {e}", footer.index_offset));
        let payload = footer.container.unmeta(Meta::Index, &framed).map_err(at)?;
        let crc = crc32c::crc32c(&payload);
        if crc != footer.index_crc32c {
            return Err(bad(format!("pack index checksum {crc:#010x}, footer says {:#010x}", footer.index_crc32c)));
        }
        // A pack index holds at most a key and a few numbers per record: a claimed size beyond
        // that is corrupt, and must not be allocated.
        let mut entries = decode_block(&payload, footer.index_limit()).map_err(at)?;
        let own = entries.iter().map(|e| (fingerprint(e), e.len)).collect();
        if entries.len() as u64 != footer.records {
            return Err(bad(format!("pack index lists {} records, footer says {}", entries.len(), footer.records)));
        }

        // Records must tile the pack from 0 to its index. Read them in runs of up to CHUNK
        // bytes, hashing as we go, so the whole-pack checksum costs no second read.
        entries.sort_by_key(|e| e.offset);
        let mut crc = 0u32;
        let mut pos = 0u64;
        let mut i = 0;
        while i < entries.len() {
            let e = &entries[i];
            if e.offset != pos {
                return Err(bad(format!("record {:?} starts at {}, expected {pos}", e.key, e.offset)));
            }
            if e.len > footer.index_offset.saturating_sub(pos) {
                return Err(record(pack, e, "runs past the pack index".into()));
            }
            if e.len > CHUNK {
                crc = self.verify_large(pack, e, crc).await?;
                pos += e.len;
                i += 1;
                report.records += 1;
            } else {
                let mut j = i;
                let mut end = pos;
                while j < entries.len() && entries[j].offset == end && entries[j].len <= CHUNK - (end - pos) {
                    end += entries[j].len;
                    j += 1;
                }
                let run = get(pos..end).await?;
                crc = crc32c::crc32c_append(crc, &run);
                for e in &entries[i..j] {
                    let bytes = run.slice((e.offset - pos) as usize..(e.offset - pos + e.len) as usize);
                    let at = |p: String| record(pack, e, p);
                    if Budget::whole(e.len, e.raw_len) {
                        decode_whole(&bytes, e, self.loaded_dictionaries()).map_err(at)?;
                    } else {
                        // Stores little, decodes to much: checked a step at a time.
                        self.check_chunk(None, e, bytes).await.map_err(at)?.finish().map_err(|x| at(x.to_string()))?;
                    }
                }
                report.records += (j - i) as u64;
                pos = end;
                i = j;
            }
        }
        if pos != footer.index_offset {
            return Err(bad(format!("records end at {pos}, the pack index starts at {}", footer.index_offset)));
        }
        crc = crc32c::crc32c_append(crc, &framed);
        let footer_bytes = &tail[tail.len() - (pack.size - footer.index_offset - footer.index_len) as usize..];
        crc = crc32c::crc32c_append(crc, footer_bytes);
        if let Some(expected) = pack.crc32c
            && crc != expected
        {
            return Err(bad(format!("pack checksum {crc:#010x}, the manifest says {expected:#010x}")));
        }
        report.bytes += pack.size;
        Ok(own)
    }

    /// Streams one large record through its check; returns the running pack checksum.
    async fn verify_large(&self, pack: &PackRef, e: &Entry, mut crc: u32) -> Result<u32, Problem> {
        let at = |p: String| record(pack, e, p);
        let end = e.offset + e.len;
        let mut chunked = None;
        let mut pos = e.offset;
        while pos < end {
            let next = (pos + CHUNK).min(end);
            let chunk = self.store.get_range(&pack.name, pos..next).await.map_err(|x| at(x.to_string()))?;
            crc = crc32c::crc32c_append(crc, &chunk);
            chunked = Some(self.check_chunk(chunked, e, chunk).await.map_err(at)?);
            pos = next;
        }
        chunked.ok_or_else(|| at("the record is empty".into()))?.finish().map_err(|x| at(x.to_string()))?;
        Ok(crc)
    }

    /// Checks the next chunk of record `e`'s stored bytes (the first holds its header) on the
    /// blocking pool, and returns the decoder for the next one.
    async fn check_chunk(&self, chunked: Option<Chunked>, e: &Entry, chunk: Bytes) -> Result<Chunked, String> {
        let (chunked, rest) = match chunked {
            Some(c) => (c, chunk),
            None => {
                let (c, prefix) = Chunked::start(e, self.loaded_dictionaries(), &chunk)?;
                (c, chunk.slice(prefix..))
            }
        };
        let (chunked, checked) = chunked.check_off_worker(rest).await.map_err(|x| x.to_string())?;
        checked.map_err(|x| x.to_string())?;
        Ok(chunked)
    }
}

/// The archive index's records of a pack must all be in the pack's own index, and the others
/// must be exactly the dead records the manifest counts.
fn check_liveness(pack: &PackRef, live: &mut [u64], own: &HashMap<u64, u64>, problems: &mut Vec<Problem>) {
    live.sort_unstable();
    let mut live_bytes = 0;
    for (i, f) in live.iter().enumerate() {
        match own.get(f) {
            Some(len) if i == 0 || live[i - 1] != *f => live_bytes += len,
            _ => {
                problems.push(Problem::NotInPack { pack: pack.name.clone() });
                return;
            }
        }
    }
    let own_bytes: u64 = own.values().sum();
    let (dead_records, dead_bytes) = (own.len() as u64 - live.len() as u64, own_bytes - live_bytes);
    if (dead_records, dead_bytes) != (pack.dead_records, pack.dead_bytes) {
        problems.push(Problem::DeadCounts {
            pack: pack.name.clone(),
            dead_records,
            dead_bytes,
            counted_records: pack.dead_records,
            counted_bytes: pack.dead_bytes,
        });
    }
}

/// A problem with record `e` of `pack`.
fn record(pack: &PackRef, e: &Entry, detail: String) -> Problem {
    Problem::Record { pack: pack.name.clone(), key: e.key.clone(), offset: e.offset, detail }
}

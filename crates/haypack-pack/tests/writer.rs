//! The record writer and segments through the library: records in any order and of any size
//! read back byte for byte, duplicate keys are refused or the last kept, and many writers'
//! segments land in one commit, once, or not at all.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use haypack_format::Segment;
use haypack_pack::{Content, Duplicates, Error, PackOptions, Record, Writer, commit_segments};
use haypack_read::Archive;
use haypack_store::{LocalStore, Store};

fn record(key: &str, content: Content<'static>) -> Record<'static> {
    Record { key: key.into(), mtime: None, mode: Some(0o600), content_type: None, content }
}

fn bytes(key: &str, content: &str) -> Record<'static> {
    record(key, Content::Bytes(content.as_bytes().to_vec()))
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A reader of `len` bytes of a repeating pattern, whose length the writer is not told.
struct Pattern {
    left: u64,
    at: u8,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for b in &mut buf[..n] {
            *b = self.at;
            self.at = self.at.wrapping_mul(31).wrapping_add(7);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes the records `records` makes with a writer on a blocking thread (where they are
/// made: a reader need not be `Send`); returns the writer to end it.
async fn written(
    store: &Arc<dyn Store>,
    opts: PackOptions,
    records: impl FnOnce() -> Vec<Record<'static>> + Send + 'static,
) -> Writer {
    let mut w = Writer::open(store.clone(), opts, Arc::new(())).await.unwrap();
    tokio::task::spawn_blocking(move || {
        for r in records() {
            w.write(r).unwrap();
        }
        w
    })
    .await
    .unwrap()
}

/// Every record of the archive, read back, after a verify that finds nothing wrong.
async fn contents(store: Arc<dyn Store>) -> BTreeMap<String, Vec<u8>> {
    let archive = Archive::open(store).await.unwrap();
    let report = archive.verify().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let mut out = BTreeMap::new();
    for e in archive.list("").await.unwrap() {
        out.insert(e.key.clone(), archive.get(&e.key).await.unwrap());
    }
    out
}

fn local(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(LocalStore::new(dir.join("arch")))
}

#[tokio::test]
async fn records_in_any_order_and_of_any_size_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local(tmp.path());
    let big = 20 << 20; // past the 8 MiB a record may take in memory: streamed
    let mut expect_big = Vec::new();
    Pattern { left: big, at: 1 }.read_to_end(&mut expect_big).unwrap();
    let records = move || {
        vec![
            bytes("z/last", "zed"),
            record("m/big", Content::Reader { reader: Box::new(Pattern { left: big, at: 1 }), len: None }),
            bytes("a/first", "alpha"),
            record("m/known", Content::Reader { reader: Box::new(&b"known length"[..]), len: Some(12) }),
            bytes("empty", ""),
        ]
    };
    let opts = PackOptions { pack_size: 1 << 20, ..PackOptions::default() };
    let report = written(&store, opts, records).await.commit().await.unwrap();
    assert_eq!(report.added, 5);
    let got = contents(store.clone()).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["a/first", "empty", "m/big", "m/known", "z/last"]);
    assert_eq!(got["m/big"], expect_big);
    assert_eq!(got["m/known"], b"known length");
    let archive = Archive::open(store.clone()).await.unwrap();
    assert_eq!(archive.stat("a/first").await.unwrap().mode, 0o600);

    // A second writer adds to the archive; a key it already holds gets the new record.
    let report = written(&store, PackOptions::default(), || vec![bytes("a/first", "ALPHA"), bytes("b", "beta")])
        .await
        .commit()
        .await
        .unwrap();
    assert_eq!((report.added, report.removed), (1, 1));
    let got = contents(store).await;
    assert_eq!((got["a/first"].as_slice(), got.len()), (&b"ALPHA"[..], 6));
}

#[tokio::test]
async fn a_reader_shorter_than_its_stated_length_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local(tmp.path());
    let mut w = Writer::open(store.clone(), PackOptions::default(), Arc::new(())).await.unwrap();
    let err = tokio::task::spawn_blocking(move || {
        let short = Content::Reader { reader: Box::new(&b"abc"[..]), len: Some(10) };
        w.write(record("short", short)).unwrap_err()
    })
    .await
    .unwrap();
    assert!(matches!(&err, Error::Content { key, .. } if key == "short"), "{err}");
    assert!(err.to_string().contains("said 10 bytes and gave 3"), "{err}");
    assert!(matches!(Archive::open(store).await, Err(haypack_read::Error::NoArchive { .. })));
}

#[tokio::test]
async fn duplicate_keys_are_refused_or_the_last_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local(tmp.path());
    let dups = || vec![bytes("k", "one"), bytes("j", "jay"), bytes("k", "two")];
    let err = written(&store, PackOptions::default(), dups).await.commit().await.unwrap_err();
    assert!(matches!(&err, Error::DuplicateKey { key } if key == "k"), "{err}");
    assert!(matches!(Archive::open(store.clone()).await, Err(haypack_read::Error::NoArchive { .. })));
    // Nothing the failed writer wrote is left behind.
    assert!(store.list("packs/").await.unwrap().is_empty());

    let opts = PackOptions { duplicates: Duplicates::KeepLast, ..PackOptions::default() };
    let report = written(&store, opts, dups).await.commit().await.unwrap();
    let m = report.manifest.unwrap();
    assert_eq!(m.records, 2);
    // The first "k" is dead bytes in its own pack: a pack's index holds a key once.
    assert_eq!(m.packs.iter().map(|p| p.dead_records).sum::<u64>(), 1);
    let got = contents(store).await;
    assert_eq!(got["k"], b"two");
}

#[tokio::test]
async fn a_key_the_format_cannot_hold_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local(tmp.path());
    let mut w = Writer::open(store, PackOptions::default(), Arc::new(())).await.unwrap();
    let err = tokio::task::spawn_blocking(move || w.write(bytes("a\0b", "x")).unwrap_err()).await.unwrap();
    assert!(matches!(err, Error::BadKey { .. }), "{err}");
}

/// Writes a segment of the records `records` (key, content) into `store`.
async fn segment(store: &Arc<dyn Store>, records: Vec<(String, String)>) -> Segment {
    let make = move || records.iter().map(|(k, v)| bytes(k, v)).collect();
    let (s, _) = written(store, PackOptions::default(), make).await.segment().await.unwrap();
    // What goes to a file and back.
    Segment::parse(&s.unwrap().to_json()).unwrap()
}

#[tokio::test]
async fn segments_of_many_writers_land_in_one_commit_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local(tmp.path());
    // Four writers at once, each with its part of the keys, interleaved and out of order.
    let parts = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let records = (0..300).rev().map(|i| (format!("k{:04}", i * 4 + w), format!("v{w}-{i}"))).collect();
            segment(&store, records).await
        })
    });
    let mut segments = Vec::new();
    for p in parts {
        segments.push(p.await.unwrap());
    }
    // Not committed yet: no archive.
    assert!(matches!(Archive::open(store.clone()).await, Err(haypack_read::Error::NoArchive { .. })));

    let report = commit_segments(store.clone(), &segments, Duplicates::Refuse).await.unwrap();
    assert_eq!((report.change.added, report.already.len()), (1200, 0));
    let got = contents(store.clone()).await;
    assert_eq!(got.len(), 1200);
    assert_eq!(got["k0006"], b"v2-1");
    // The runs were merged into the archive's index: only the manifest's objects are left.
    let m = report.change.manifest.unwrap();
    let mut left: Vec<String> = store.list("").await.unwrap().into_iter().map(|o| o.name).collect();
    let mut named: Vec<String> = m.object_names().map(str::to_owned).chain(["manifest.json".to_owned()]).collect();
    left.sort();
    named.sort();
    assert_eq!(left, named);

    // Committing the same segments again adds nothing.
    let again = commit_segments(store.clone(), &segments, Duplicates::Refuse).await.unwrap();
    assert_eq!((again.already.len(), again.change.manifest.is_none()), (4, true));
    assert_eq!(Archive::open(store).await.unwrap().manifest().generation, m.generation);
}

#[tokio::test]
async fn a_segment_with_a_missing_truncated_or_foreign_object_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local(tmp.path());
    let good = segment(&store, kv(&[("a", "alpha")])).await;
    let broken = segment(&store, kv(&[("b", "beta")])).await;

    std::fs::remove_file(tmp.path().join("arch").join(&broken.packs[0].name)).unwrap();
    let err = commit_segments(store.clone(), &[good.clone(), broken], Duplicates::Refuse).await.unwrap_err();
    assert!(matches!(&err, Error::SegmentIncomplete { detail, .. } if detail.contains("is gone")), "{err}");

    let truncated = segment(&store, kv(&[("c", "gamma")])).await;
    let pack = tmp.path().join("arch").join(&truncated.packs[0].name);
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&pack).unwrap().set_len(len - 1).unwrap();
    let err = commit_segments(store.clone(), &[truncated], Duplicates::Refuse).await.unwrap_err();
    assert!(matches!(&err, Error::SegmentIncomplete { detail, .. } if detail.contains("truncated")), "{err}");

    let other = local(&tmp.path().join("elsewhere"));
    let err = commit_segments(other, std::slice::from_ref(&good), Duplicates::Refuse).await.unwrap_err();
    assert!(matches!(err, Error::ForeignSegment { .. }), "{err}");

    // None of that committed anything; the good segment still commits.
    assert!(matches!(Archive::open(store.clone()).await, Err(haypack_read::Error::NoArchive { .. })));
    let report = commit_segments(store.clone(), &[good], Duplicates::Refuse).await.unwrap();
    assert_eq!(report.change.added, 1);
    assert_eq!(contents(store).await.len(), 1);
}

#[tokio::test]
async fn a_key_in_two_segments_is_refused_or_the_later_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local(tmp.path());
    let first = segment(&store, kv(&[("same", "first"), ("x", "ex")])).await;
    let second = segment(&store, kv(&[("same", "second")])).await;
    let both = [first, second];
    let err = commit_segments(store.clone(), &both, Duplicates::Refuse).await.unwrap_err();
    assert!(matches!(&err, Error::DuplicateKey { key } if key == "same"), "{err}");
    assert_eq!(Archive::open(store.clone()).await.unwrap().manifest().records, 0);

    let report = commit_segments(store.clone(), &both, Duplicates::KeepLast).await.unwrap();
    assert_eq!(report.change.manifest.unwrap().records, 2);
    assert_eq!(contents(store).await["same"], b"second");
}

#[tokio::test]
async fn gc_collects_a_segment_never_committed_and_its_commit_is_then_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = local(tmp.path());
    let base = segment(&store, kv(&[("a", "alpha")])).await;
    commit_segments(store.clone(), &[base], Duplicates::Refuse).await.unwrap();
    let left = segment(&store, kv(&[("b", "beta")])).await;
    // Younger than the grace period: kept.
    haypack_pack::gc(store.clone(), std::time::Duration::from_secs(3600)).await.unwrap();
    for name in left.object_names() {
        assert!(tmp.path().join("arch").join(name).exists(), "{name}");
    }
    let report = haypack_pack::gc(store.clone(), std::time::Duration::ZERO).await.unwrap();
    assert_eq!(report.deleted.len(), 2, "{:?}", report.deleted);
    let err = commit_segments(store.clone(), &[left], Duplicates::Refuse).await.unwrap_err();
    assert!(matches!(err, Error::SegmentIncomplete { .. } | Error::Vanished { .. }), "{err}");
    assert_eq!(contents(store).await.len(), 1);
}

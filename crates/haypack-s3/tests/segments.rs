//! Segments on real S3 servers: writers' packs and index runs go straight into the bucket, one
//! commit lands them, and commits racing on a server that enforces conditional writes (moto)
//! all land, none lost.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;

use haypack_pack::{Content, Duplicates, PackOptions, Record, Writer, commit_segments};
use haypack_read::Archive;
use haypack_s3::MIN_PART_SIZE;
use haypack_s3::testing::TestServer;
use haypack_store::Store;

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

/// A segment of `n` records named `{prefix}{i}`, written in reverse key order.
async fn segment(store: &Arc<dyn Store>, prefix: &str, n: usize) -> haypack_format::Segment {
    let mut writer = Writer::open(store.clone(), PackOptions::default(), Arc::new(())).await.unwrap();
    let prefix = prefix.to_owned();
    let writer = tokio::task::spawn_blocking(move || {
        for i in (0..n).rev() {
            let content = Content::Bytes(format!("{prefix}{i} ").repeat(i % 40 + 1).into_bytes());
            let key = format!("{prefix}{i:05}");
            writer.write(Record { key, mtime: None, mode: None, content_type: None, content }).unwrap();
        }
        writer
    })
    .await
    .unwrap();
    writer.segment().await.unwrap().0.unwrap()
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn segments_written_into_a_bucket_commit_once() {
    for server in TestServer::all() {
        let store: Arc<dyn Store> = Arc::new(server.store("segments", MIN_PART_SIZE).await);
        let segs = vec![segment(&store, "a/", 300).await, segment(&store, "b/", 200).await];
        let report = commit_segments(store.clone(), &segs, Duplicates::Refuse).await.unwrap();
        assert_eq!(report.change.added, 500, "{}", server.name);
        let got = contents(store.clone()).await;
        assert_eq!(got.len(), 500);
        assert_eq!(got["b/00007"], "b/7 ".repeat(8).into_bytes());
        let again = commit_segments(store.clone(), &segs, Duplicates::Refuse).await.unwrap();
        assert_eq!(again.already.len(), 2, "{}", server.name);
    }
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn three_commits_racing_on_moto_all_land() {
    let server = TestServer::get("moto");
    let store: Arc<dyn Store> = Arc::new(server.store("segments-race", MIN_PART_SIZE).await);
    // An archive to commit onto, then three writers' segments committed at once.
    let first = segment(&store, "base/", 50).await;
    commit_segments(store.clone(), &[first], Duplicates::Refuse).await.unwrap();
    let mut segs = Vec::new();
    for p in ["x/", "y/", "z/"] {
        segs.push(segment(&store, p, 100).await);
    }
    let commits: Vec<_> = segs
        .into_iter()
        .map(|s| {
            let store = store.clone();
            tokio::spawn(async move { commit_segments(store, &[s], Duplicates::Refuse).await })
        })
        .collect();
    let mut retries = 0;
    for c in commits {
        retries += c.await.unwrap().unwrap().change.retries;
    }
    let got = contents(store.clone()).await;
    assert_eq!(got.len(), 350, "no commit lost");
    let generation = Archive::open(store).await.unwrap().manifest().generation;
    // Created empty (0), the base (1), three more: whoever lost a race merged on top.
    assert_eq!(generation, 4);
    eprintln!("three racing commits on moto: {retries} retries");
}

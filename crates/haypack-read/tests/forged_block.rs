//! An archive whose one index block is forged (front-coded keys that stand for 245 MB): every
//! reading path refuses it while holding no more than the block limit. Its own test binary, so the
//! counting allocator sees this test alone.

use std::alloc::System;
use std::sync::Arc;

use cap::Cap;
use haypack_format::MAX_BLOCK_DECODED;
use haypack_read::{Archive, Error, Want};

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

#[tokio::test(flavor = "current_thread")]
async fn a_forged_block_is_refused_by_every_reader_within_the_limit() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/archive");
    let input = std::fs::read(root.join("regression-v2-zstd-changed-front-coded-keys")).expect("the seed");
    let store = Arc::new(checks::MemStore::default());
    for (name, bytes) in checks::archive_objects(&input) {
        store.insert(&name, bytes);
    }
    let base = ALLOCATOR.allocated();
    let peak = || ALLOCATOR.max_allocated() - base;
    let archive = Arc::new(Archive::open(store).await.expect("the manifest is fine"));

    let refused = |r: Result<(), Error>, what: &str| match r {
        Err(Error::Corrupt { detail, .. }) => assert!(detail.contains("would take more than"), "{what}: {detail}"),
        other => panic!("{what}: expected a corrupt block, got {other:?}"),
    };
    refused(archive.list("").await.map(drop), "list");
    refused(archive.stat("a.b").await.map(drop), "stat");
    refused(archive.get("a.b").await.map(drop), "get");
    refused(archive.record("a.b", Want::Content).await.map(drop), "record");
    let report = archive.verify().await.expect("verify reports problems, it does not fail");
    assert!(!report.problems.is_empty());
    // Each of them decoded the block, up to the limit and no further (the old decoder built
    // every key: 245 MB).
    eprintln!("reading the forged archive peaked at {} bytes", peak());
    assert!(peak() <= MAX_BLOCK_DECODED + (1 << 20), "peaked at {} bytes", peak());
}

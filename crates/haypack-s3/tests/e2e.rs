//! Whole archives through real S3 servers (Garage and moto): packed straight to S3, pushed from
//! a local archive, read back with a counted number of requests, and failures made clear.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::path::Path;
use std::sync::Arc;

use haypack_pack::{PackOptions, PushOptions};
use haypack_read::Archive;
use haypack_s3::testing::TestServer;
use haypack_s3::{MIN_PART_SIZE, S3Options, S3Store};
use haypack_store::{Counting, LocalStore, PutMode, Store};

/// A tree of `n` small JSON-ish files plus, if `big`, one incompressible 12 MiB file (so a pack
/// needs several multipart parts).
fn tree(dir: &Path, n: usize, big: bool) {
    for i in 0..n {
        let path = dir.join(format!("shard-{:02}/record-{i:06}.json", i % 7));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"]}}\n")).unwrap();
    }
    if big {
        std::fs::write(dir.join("big.bin"), haypack_testkit::noise(12 << 20, 1)).unwrap();
    }
}

async fn pack_local(src: &Path, dest: &Path) {
    let store = Arc::new(LocalStore::new(dest));
    haypack_pack::pack(src, store, PackOptions::default(), Arc::new(())).await.expect("local pack");
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn packs_straight_to_s3_and_reads_back_byte_for_byte() {
    for server in TestServer::all() {
        let src = tempfile::tempdir().unwrap();
        tree(src.path(), 300, true);
        let store = Arc::new(server.store("pack-straight", MIN_PART_SIZE).await);
        let report = haypack_pack::pack(src.path(), store.clone(), PackOptions::default(), Arc::new(()))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", server.name));
        assert_eq!(report.manifest.records, 301);

        let archive = Archive::open(store.clone()).await.unwrap();
        for entry in archive.list("").await.unwrap() {
            let expected = std::fs::read(src.path().join(&entry.key)).unwrap();
            assert_eq!(archive.get(&entry.key).await.unwrap(), expected, "{} {}", server.name, entry.key);
        }
        let verified = archive.verify().await.unwrap();
        assert!(verified.problems.is_empty(), "{}: {:?}", server.name, verified.problems);
        let out = tempfile::tempdir().unwrap();
        archive.extract(out.path(), "shard-03/", |_| {}).await.unwrap();
        let restored = std::fs::read(out.path().join("shard-03/record-000003.json")).unwrap();
        assert_eq!(restored, std::fs::read(src.path().join("shard-03/record-000003.json")).unwrap());
        // Nothing left billing after a successful pack.
        assert!(store.pending_uploads().await.unwrap().is_empty(), "{}", server.name);
    }
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_costs_three_reads_cold_and_one_warm() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path(), 20_000, false);
    let local = tempfile::tempdir().unwrap();
    pack_local(src.path(), local.path()).await;
    let local_store: Arc<dyn Store> = Arc::new(LocalStore::new(local.path()));
    for server in TestServer::all() {
        let s3 = server.store("lookups", MIN_PART_SIZE).await;
        haypack_pack::push(local_store.clone(), Arc::new(s3.clone()), PushOptions::default(), Arc::new(()))
            .await
            .unwrap();
        let counted = Arc::new(Counting::new(s3));
        let archive = Archive::open(counted.clone()).await.unwrap();
        assert_eq!(counted.counts().reads(), 1, "opening reads the manifest only");

        // Cold: one index page (with its leaves), then the record; each key from a fresh reader.
        let keys = ["shard-00/record-000007.json", "shard-06/record-019998.json", "shard-04/record-010000.json"];
        for key in keys {
            counted.reset();
            let fresh = Archive::open(counted.clone()).await.unwrap();
            fresh.get(key).await.unwrap();
            assert_eq!(counted.counts().reads(), 3, "{}: cold lookup of {key}: manifest, page, record", server.name);
        }
        // Warm: the record alone.
        for key in keys {
            archive.get(key).await.unwrap();
            counted.reset();
            archive.get(key).await.unwrap();
            assert_eq!(counted.counts().reads(), 1, "{}: warm get of {key}", server.name);
        }
        // Once the page is cached, any key costs one read.
        let leaves = archive.index_parts(usize::MAX).await.unwrap().len();
        assert!(leaves >= 3, "the test needs several index leaves: {leaves}");
        for i in (0..20_000).step_by(997) {
            let key = format!("shard-{:02}/record-{i:06}.json", i % 7);
            counted.reset();
            assert!(!archive.get(&key).await.unwrap().is_empty());
            assert_eq!(counted.counts().reads(), 1, "{}: warm get of {key}", server.name);
        }

        // With a disk cache, a second process finds the page on disk: manifest and record only.
        let cache = tempfile::tempdir().unwrap();
        let first = Archive::open_with_cache(counted.clone(), Some(cache.path().to_owned())).await.unwrap();
        first.get(keys[0]).await.unwrap();
        counted.reset();
        let second = Archive::open_with_cache(counted.clone(), Some(cache.path().to_owned())).await.unwrap();
        second.get(keys[0]).await.unwrap();
        assert_eq!(counted.counts().reads(), 2, "{}: second process with a warm disk cache", server.name);

        // Extracting everything merges neighbouring records into ranges of up to 16 MiB: one
        // read per index block and per 16 MiB of packs, not one per file.
        counted.reset();
        let fresh = Archive::open(counted.clone()).await.unwrap();
        let out = tempfile::tempdir().unwrap();
        let report = fresh.extract(out.path(), "", |_| {}).await.unwrap();
        assert_eq!(report.files, 20_000);
        let m = fresh.manifest();
        let budget = 1 + m.index.blocks.len() as u64 + m.pack_bytes().div_ceil(16 << 20) + m.packs.len() as u64;
        assert!(counted.counts().reads() <= budget, "{}: {:?} > {budget}", server.name, counted.counts());
    }
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_push_resumes_without_resending() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path(), 200, true);
    let local = tempfile::tempdir().unwrap();
    let opts = PackOptions { pack_size: 6 << 20, ..PackOptions::default() };
    haypack_pack::pack(src.path(), Arc::new(LocalStore::new(local.path())), opts, Arc::new(())).await.unwrap();
    let local_store: Arc<dyn Store> = Arc::new(LocalStore::new(local.path()));
    for server in TestServer::all() {
        let s3 = Arc::new(server.store("resume", MIN_PART_SIZE).await);
        let first =
            haypack_pack::push(local_store.clone(), s3.clone(), PushOptions::default(), Arc::new(())).await.unwrap();
        let objects = first.sent.len();
        assert!(objects >= 3, "{}: {first:?}", server.name);

        // As if the first push died after its packs but before its manifest.
        s3.delete("manifest.json").await.unwrap();
        let again =
            haypack_pack::push(local_store.clone(), s3.clone(), PushOptions::default(), Arc::new(())).await.unwrap();
        assert_eq!(again.sent, ["manifest.json"], "{}", server.name);
        assert_eq!(again.present.len(), objects - 1, "{}", server.name);
        assert_eq!(again.bytes_sent, 0);

        let up_to_date =
            haypack_pack::push(local_store.clone(), s3.clone(), PushOptions::default(), Arc::new(())).await;
        assert!(up_to_date.unwrap().up_to_date);
        assert!(Archive::open(s3).await.unwrap().verify().await.unwrap().problems.is_empty());
    }
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_pack_to_s3_resumes_without_resending() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path(), 300, true);
    let opts = || PackOptions { pack_size: 6 << 20, ..PackOptions::default() };
    for server in TestServer::all() {
        let s3 = Arc::new(server.store("pack-resume", MIN_PART_SIZE).await);
        let first = haypack_pack::pack(src.path(), s3.clone(), opts(), Arc::new(())).await.unwrap();
        let objects = first.manifest.packs.len() + 1;
        assert!(objects >= 3, "{}: the test needs several packs", server.name);

        // As if the run had died after its packs, before its commit.
        s3.delete("manifest.json").await.unwrap();
        let again = haypack_pack::pack(src.path(), s3.clone(), opts(), Arc::new(())).await.unwrap();
        assert_eq!(again.kept.len(), objects, "{}: every pack and the index kept: {:?}", server.name, again.kept);
        assert_eq!(again.manifest, first.manifest);
        assert!(Archive::open(s3.clone()).await.unwrap().verify().await.unwrap().problems.is_empty());

        // Leftovers from another source are not mistaken for this run's: refused, then forced.
        s3.delete("manifest.json").await.unwrap();
        let other = tempfile::tempdir().unwrap();
        tree(other.path(), 310, true);
        let err = haypack_pack::pack(other.path(), s3.clone(), opts(), Arc::new(())).await.expect_err("other bytes");
        assert!(err.to_string().contains("a forced pack replaces it"), "{}: {err}", server.name);
        let forced = PackOptions { force: true, ..opts() };
        let report = haypack_pack::pack(other.path(), s3.clone(), forced, Arc::new(())).await.unwrap();
        assert!(report.kept.is_empty());
        let archive = Archive::open(s3).await.unwrap();
        assert_eq!(archive.manifest().records, 311);
        assert!(archive.verify().await.unwrap().problems.is_empty());
    }
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn a_pack_replaced_behind_a_reader_is_an_error_not_wrong_bytes() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path(), 50, false);
    for server in TestServer::all() {
        let s3 = Arc::new(server.store("replaced", MIN_PART_SIZE).await);
        haypack_pack::pack(src.path(), s3.clone(), PackOptions::default(), Arc::new(())).await.unwrap();
        let archive = Archive::open(s3.clone()).await.unwrap();
        let fresh = Archive::open(s3.clone()).await.unwrap();
        let pack = archive.manifest().packs[0].clone();
        // This reader has read the pack: it is pinned to that version of it.
        archive.get("shard-00/record-000000.json").await.unwrap();
        // Same name, same size, different bytes.
        let mut bytes = s3.get(&pack.name).await.unwrap().to_vec();
        let half = bytes.len() / 2;
        for b in &mut bytes[..half] {
            *b ^= 0x5a;
        }
        s3.put(&pack.name, bytes.into(), PutMode::Overwrite).await.unwrap();
        let err = archive.get("shard-01/record-000001.json").await.expect_err("must not return bytes");
        assert!(matches!(err, haypack_read::Error::Changed { .. }), "{}: {err}", server.name);
        let text = err.to_string();
        assert!(text.contains(&pack.name) && text.contains("shard-01/record-000001.json"), "{}: {text}", server.name);
        // A reader that had not read it yet gets the new bytes checked, and refused.
        let err = fresh.get("shard-01/record-000001.json").await.expect_err("must not return bytes");
        assert!(matches!(err, haypack_read::Error::Corrupt { .. }), "{}: {err}", server.name);
        // A deleted pack names itself too.
        s3.delete(&pack.name).await.unwrap();
        let err = archive.get("shard-02/record-000002.json").await.expect_err("pack is gone");
        assert!(err.to_string().contains(&pack.name), "{}: {err}", server.name);
    }
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn bad_locations_fail_clearly() {
    for server in TestServer::all() {
        // A bucket that does not exist.
        let url = format!("s3://no-such-bucket-{}/x", std::process::id());
        let store = S3Store::connect(&url, server.options(MIN_PART_SIZE)).await.unwrap();
        let err = Archive::open(Arc::new(store)).await.expect_err("no bucket");
        assert!(err.to_string().contains("does not exist"), "{}: {err}", server.name);

        // An empty prefix is not an archive.
        let store = server.store("empty", MIN_PART_SIZE).await;
        let err = Archive::open(Arc::new(store)).await.expect_err("no archive");
        assert!(matches!(err, haypack_read::Error::NoArchive { .. }), "{}: {err}", server.name);
    }
    // Wrong credentials: Garage checks signatures (moto accepts any).
    let server = TestServer::get("garage");
    {
        let opts =
            S3Options { credentials: Some((server.key_id.clone(), "wrong".into())), ..server.options(MIN_PART_SIZE) };
        let store = S3Store::connect(&server.fresh_url("creds"), opts).await.unwrap();
        let err = Archive::open(Arc::new(store)).await.expect_err("bad secret");
        assert!(err.to_string().contains("access denied"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_is_down_is_a_clear_error() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let opts = S3Options {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        credentials: Some(("id".into(), "secret".into())),
        ..S3Options::default()
    };
    let store = S3Store::connect("s3://haypack-test/down", opts).await.unwrap();
    let err = Archive::open(Arc::new(store)).await.expect_err("nothing listens");
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

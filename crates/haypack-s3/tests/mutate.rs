//! Changing archives on real S3 servers: compaction copies long runs of live records inside the
//! store (UploadPartCopy) and downloads only the short ones, and concurrent writers on a server
//! that enforces conditional writes (moto) never lose an update.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use haypack_format::Compression;
use haypack_pack::{CompactOptions, PackOptions};
use haypack_read::Archive;
use haypack_s3::testing::TestServer;
use haypack_s3::{MIN_PART_SIZE, S3Options, S3Store};
use haypack_store::Store;

use haypack_testkit::noise;

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

fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (k, v) in files {
        let path = dir.join(k);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, v).unwrap();
    }
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn compaction_copies_long_runs_inside_the_store() {
    // 60 records of 256 KiB in one pack. Dead: f25..=f44 and f50 (35%). Live runs: f00..=f24
    // (6.25 MiB: copied inside the store), f45..=f49 and f51..=f59 (short: downloaded).
    let files: BTreeMap<String, Vec<u8>> = (0..60).map(|i| (format!("f{i:02}"), noise(256 << 10, i))).collect();
    let src = tempfile::tempdir().unwrap();
    write_files(src.path(), &files);
    // One upload slot as well as several: the part being filled holds one, copies need them too.
    for (server, concurrency) in TestServer::all().into_iter().flat_map(|s| [(s.clone(), 4), (s, 1)]) {
        let options = S3Options { concurrency, ..server.options(MIN_PART_SIZE) };
        let store: Arc<dyn Store> =
            Arc::new(S3Store::connect(&server.fresh_url("compact"), options).await.expect("valid options"));
        let opts =
            PackOptions { compression: Compression { compress: false, ..Default::default() }, ..Default::default() };
        haypack_pack::pack(src.path(), store.clone(), opts, Arc::new(())).await.unwrap();
        let listed = Archive::open(store.clone()).await.unwrap().list("").await.unwrap();
        let lens: BTreeMap<String, u64> = listed.into_iter().map(|e| (e.key, e.len)).collect();
        let doomed: Vec<String> = (25..45).chain([50]).map(|i| format!("f{i:02}")).collect();
        let run = |from: usize, to: usize| -> u64 { (from..to).map(|i| lens[&format!("f{i:02}")]).sum() };
        let live_run = |from: usize, to: usize| -> u64 {
            (from..to).map(|i| format!("f{i:02}")).filter(|k| !doomed.contains(k)).map(|k| lens[&k]).sum()
        };
        haypack_pack::remove(store.clone(), &doomed, &[], false).await.unwrap();

        let compaction = haypack_pack::compact(store.clone(), CompactOptions::default(), Arc::new(()));
        let report =
            tokio::time::timeout(Duration::from_secs(120), compaction).await.expect("compaction hangs").unwrap();
        let name = format!("{} with {concurrency} slots", server.name);
        assert_eq!((report.compacted.len(), report.written.len()), (1, 1), "{name}");
        assert_eq!(report.copied_in_store, run(0, 25), "{name}: the long run is copied inside the store");
        // The short runs, and the 256 KiB dead record between them, read along in one request.
        assert_eq!(report.downloaded, run(45, 60), "{name}: only the short runs travel");
        assert_eq!(report.live_bytes - report.copied_in_store, live_run(45, 60), "{name}");
        let m = report.manifest.unwrap();
        assert_eq!(m.packs[0].crc32c, None, "{name}: no byte of the copied run passed through haypack");

        let mut want = files.clone();
        for k in &doomed {
            want.remove(k);
        }
        assert_eq!(contents(store.clone()).await, want, "{name}");
        let gone = haypack_pack::gc(store.clone(), Duration::ZERO).await.unwrap();
        assert!(gone.deleted.contains(&report.compacted[0]), "{name}: {:?}", gone.deleted);
        assert_eq!(gone.deleted.len(), 3, "{name}: the old pack and the two index objects it replaced");
        assert_eq!(contents(store.clone()).await, want, "{name}");
    }
}

/// On a store that enforces conditional writes, writers racing on one archive all land.
#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_on_moto_lose_nothing() {
    let server = TestServer::get("moto");
    let base: BTreeMap<String, Vec<u8>> = (0..40).map(|i| (format!("base/{i:03}"), noise(3000, i))).collect();
    let src = tempfile::tempdir().unwrap();
    write_files(src.path(), &base);
    let store: Arc<dyn Store> = Arc::new(server.store("race", MIN_PART_SIZE).await);
    haypack_pack::pack(src.path(), store.clone(), PackOptions::default(), Arc::new(())).await.unwrap();
    let doomed: Vec<String> = (0..20).map(|i| format!("base/{i:03}")).collect();
    haypack_pack::remove(store.clone(), &doomed, &[], false).await.unwrap();

    // Three adds and a compaction at once.
    let mut want: BTreeMap<String, Vec<u8>> = base.into_iter().skip(20).collect();
    let mut dirs = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..3u64 {
        let files: BTreeMap<String, Vec<u8>> =
            (0..30).map(|i| (format!("w{w}/{i:03}"), noise(2000, 100 * w + i))).collect();
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &files);
        want.extend(files);
        let (store, path) = (store.clone(), dir.path().to_owned());
        dirs.push(dir);
        tasks.spawn(async move {
            haypack_pack::add(&path, store, "", PackOptions::default(), Arc::new(())).await.map(|r| r.retries)
        });
    }
    let s = store.clone();
    tasks.spawn(
        async move { haypack_pack::compact(s, CompactOptions::default(), Arc::new(())).await.map(|r| r.retries) },
    );
    let mut retries = 0;
    while let Some(done) = tasks.join_next().await {
        retries += done.unwrap().unwrap();
    }
    assert!(retries > 0, "the writers raced: some commit had to merge on top of another");
    assert_eq!(contents(store.clone()).await, want);
    let m = Archive::open(store).await.unwrap().manifest().clone();
    assert_eq!(m.generation, 2 + 4, "one generation per writer");
}

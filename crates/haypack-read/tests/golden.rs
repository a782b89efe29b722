//! Archives written by every format version, kept in testdata/golden: every later haypack must
//! read them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use haypack_format::Timestamp;
use haypack_read::Archive;
use haypack_store::LocalStore;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/golden")
}

const KEYS: [&str; 7] = ["a-b", "a.b", "dir/café ☕.md", "dir/noise.bin", "dir/sub/lines.txt", "empty", "hello.txt"];

/// Checks a golden archive of `src` packed whole; it reads as a manifest of `version`.
async fn check(name: &str, version: u64) {
    let store = Arc::new(LocalStore::new(golden().join(name)));
    let archive = Archive::open(store).await.expect("golden archive opens");
    let m = archive.manifest();
    assert_eq!((m.version, m.generation, m.records, m.packs.len()), (version, 1, 7, 1), "{name}");

    let keys: Vec<String> = archive.list("").await.expect("list").into_iter().map(|e| e.key).collect();
    assert_eq!(keys, KEYS, "{name}");
    for key in KEYS {
        let expected = std::fs::read(golden().join("src").join(key)).expect("golden source file");
        assert_eq!(archive.get(key).await.expect(key), expected, "{name} {key}");
    }

    // 2024-02-29T12:34:56.789Z, as the files were stamped before packing: the index says it to
    // the second (version 1 and 2 blocks hold the nanoseconds too, and readers ignore them),
    // the record's header to the nanosecond.
    let mtime = Timestamp { secs: 1_709_210_096, nanos: 789_000_000 };
    let noise = archive.stat("dir/noise.bin").await.expect("stat");
    assert_eq!((noise.mode, noise.mtime, noise.raw_len), (0o600, Timestamp { nanos: 0, ..mtime }, 3000), "{name}");
    let read = archive.get_to("dir/noise.bin", &mut std::io::sink()).await.expect("get_to");
    assert_eq!(read.mtime, mtime, "{name}");
    assert_eq!(archive.stat("dir/sub/lines.txt").await.expect("stat").mode, 0o755, "{name}");
    assert_eq!(archive.stat("dir/café ☕.md").await.expect("stat").content_type.as_deref(), Some("text/markdown"));

    let report = archive.verify().await.expect("verify runs");
    assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
    assert_eq!(report.records, 7);
}

#[tokio::test]
async fn v1_zstd_archive_reads_forever() {
    check("v1-zstd", 2).await;
}

#[tokio::test]
async fn v1_gzip_archive_reads_forever() {
    check("v1-gzip", 2).await;
}

#[tokio::test]
async fn v1_stored_archive_reads_forever() {
    check("v1-stored", 2).await;
}

/// Version 3: the archive index keeps mtimes to the second.
#[tokio::test]
async fn v3_zstd_archive_reads_forever() {
    check("v3-zstd", 3).await;
    let index = std::fs::read(golden().join("v3-zstd/index/000001.hpi")).expect("index object");
    let entries = haypack_format::decode_block(&index, 1 << 20).expect("one block");
    assert_eq!(entries.len(), 7);
    assert!(entries.iter().all(|e| e.mtime == Timestamp { secs: 1_709_210_096, nanos: 0 }), "{entries:?}");
}

/// Version 4: the root names a page (leaves, then the node listing them).
#[tokio::test]
async fn v4_zstd_archive_reads_forever() {
    check("v4-zstd", 4).await;
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden().join("v4-zstd/manifest.json")).expect("manifest"))
            .expect("json");
    let page = &m["index"]["blocks"][0];
    let (len, head) = (page["len"].as_u64().expect("len"), page["head"].as_u64().expect("head"));
    assert!(0 < head && head < len, "{page}");
    let index = std::fs::read(golden().join("v4-zstd/index/000001.hpi")).expect("index object");
    let crc = page["crc32c"].as_u64().expect("crc") as u32;
    assert_eq!(haypack_format::decode_page(&index, head, crc, 1 << 20).expect("one page").len(), 7);
}

/// A writer on a version-3 archive commits version 4: the leaf its change touches becomes a page.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_to_a_version_3_archive_upgrades_what_it_touches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let arch = tmp.path().join("arch");
    for dir in ["", "index", "packs"] {
        std::fs::create_dir_all(arch.join(dir)).expect("mkdir");
    }
    for name in ["manifest.json", "index/000001.hpi", "packs/000001.hpk.zst"] {
        std::fs::copy(golden().join("v3-zstd").join(name), arch.join(name)).expect("copy");
    }
    let more = tmp.path().join("more");
    std::fs::create_dir_all(&more).expect("mkdir");
    std::fs::write(more.join("added.txt"), "added").expect("write");
    let store = Arc::new(LocalStore::new(&arch));
    let opts = haypack_pack::PackOptions::default();
    haypack_pack::add(&more, store.clone(), "", opts, Arc::new(())).await.expect("add");
    let archive = Archive::open(store).await.expect("open");
    let m = archive.manifest();
    assert_eq!((m.version, m.records), (4, 8));
    assert!(m.index.blocks.iter().all(|b| b.head > 0), "the touched leaf became a page");
    assert_eq!(archive.get("added.txt").await.expect("get"), b"added");
    assert_eq!(archive.get("hello.txt").await.expect("get"), std::fs::read(golden().join("src/hello.txt")).unwrap());
    assert!(archive.verify().await.expect("verify").problems.is_empty());
}

/// Version 2: `v1-zstd`'s tree packed, then `add` of `dir/added.txt` and a new `hello.txt`, then
/// `rm a-b`: two packs, dead records, a rewritten index and retired objects.
#[tokio::test]
async fn v2_archive_with_changes_reads_forever() {
    let store = Arc::new(LocalStore::new(golden().join("v2-zstd-changed")));
    let archive = Archive::open(store).await.expect("golden archive opens");
    let m = archive.manifest();
    assert_eq!((m.version, m.generation, m.records, m.packs.len(), m.retired.len()), (2, 3, 7, 2, 2));
    assert_eq!((m.packs[0].dead_records, m.packs[0].dead_bytes), (2, 112));
    let keys: Vec<String> = archive.list("").await.expect("list").into_iter().map(|e| e.key).collect();
    let want = ["a.b", "dir/added.txt", "dir/café ☕.md", "dir/noise.bin", "dir/sub/lines.txt", "empty", "hello.txt"];
    assert_eq!(keys, want);
    assert_eq!(archive.get("hello.txt").await.expect("get"), b"hello, again!\n");
    assert_eq!(archive.get("dir/added.txt").await.expect("get"), b"added in generation 2\n");
    let lines = std::fs::read(golden().join("src/dir/sub/lines.txt")).expect("golden source file");
    assert_eq!(archive.get("dir/sub/lines.txt").await.expect("get"), lines);
    assert!(matches!(archive.get("a-b").await, Err(haypack_read::Error::NotFound { .. })));
    let report = archive.verify().await.expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Version 2 with a trained dictionary: `src-dict` packed with `--dict`.
/// Checks a golden archive of `src-dict` packed with a trained dictionary.
async fn check_dict(name: &str, version: u64) -> haypack_format::Manifest {
    let store = Arc::new(LocalStore::new(golden().join(name)));
    let archive = Archive::open(store).await.expect("golden archive opens");
    let m = archive.manifest();
    assert_eq!((m.version, m.records, m.dictionaries.len()), (version, 40, 1));
    let pack = std::fs::read(golden().join(name).join(&m.packs[0].name)).expect("pack");
    let mut with_dict = 0;
    for e in archive.list("").await.expect("list") {
        let expected = std::fs::read(golden().join("src-dict").join(&e.key)).expect("golden source file");
        assert_eq!(archive.get(&e.key).await.expect("get"), expected, "{}", e.key);
        let frame = haypack_format::RecordFrame::parse(&pack[e.offset as usize..]).expect("record");
        with_dict += usize::from(frame.header.dict_id == 1);
    }
    assert!(with_dict > 30, "most records were compressed against the dictionary: {with_dict}");
    let report = archive.verify().await.expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    m.clone()
}

#[tokio::test]
async fn v2_archive_with_a_dictionary_reads_forever() {
    let m = check_dict("v2-zstd-dict", 2).await;
    assert!(m.dictionaries[0].object().is_none(), "version 2 keeps it in the manifest");
}

/// Version 4: the dictionary is an object of its own.
#[tokio::test]
async fn v4_archive_with_a_dictionary_reads_forever() {
    let m = check_dict("v4-zstd-dict", 4).await;
    assert_eq!(m.dictionaries[0].object(), Some("index/dict-000001.zdict"));
}

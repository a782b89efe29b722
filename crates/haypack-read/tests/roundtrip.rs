//! Any tree packed with `haypack_pack::pack` reads back byte for byte, and damaged or foreign
//! archives fail with the error variant that says what is wrong.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use haypack_format::{Compression, Container, RecordFrame};
use haypack_pack::{DictChoice, PackOptions, pack};
use haypack_read::{Archive, Error, Problem};
use haypack_store::LocalStore;
use proptest::prelude::*;

/// Deterministic bytes: incompressible noise, or text that compresses well.
fn content(len: usize, seed: u64, compressible: bool) -> Vec<u8> {
    if compressible {
        let mut out = Vec::with_capacity(len + 32);
        let mut i = seed;
        while out.len() < len {
            out.extend_from_slice(format!("{i} haypack round trip ").as_bytes());
            i = i.wrapping_add(1);
        }
        out.truncate(len);
        return out;
    }
    haypack_testkit::noise(len, seed)
}

/// One path component: odd but valid names (spaces, unicode, leading dots, `a.b`, `a-b`).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_]{1,10}",
        "[a-z]{1,4}\\.[a-z]{1,3}",
        "[a-z]{1,4}-[a-z0-9]{1,4}",
        "\\.[a-z]{1,6}",
        "[a-z]{1,4} [a-z ]{0,4}[a-z]",
        "[äöüßéñ☕日本語😀]{1,4}",
        "[a-z]{0,2}[ .\\-+=,;'&()\\[\\]{}~#%@!]{1,3}[a-z]{1,2}",
    ]
    .prop_filter("not . or ..", |n| n != "." && n != "..")
}

/// A file size from 0 B to 2 MiB, mostly small.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=256,
        3 => 257usize..=16 << 10,
        1 => (16usize << 10)..=(2 << 20),
    ]
}

/// A file: its path (1–4 components, so directories up to depth 3), size, seed and kind.
fn file() -> impl Strategy<Value = (Vec<String>, usize, u64, bool)> {
    (prop::collection::vec(name(), 1..=4), size(), any::<u64>(), any::<bool>())
}

/// The tree as key → content, dropping files that would clash with earlier ones (the same key,
/// or a file where another needs a directory).
fn tree_of(files: Vec<(Vec<String>, usize, u64, bool)>) -> BTreeMap<String, Vec<u8>> {
    let mut tree = BTreeMap::new();
    for (parts, len, seed, compressible) in files {
        let key = parts.join("/");
        let clash = tree
            .keys()
            .any(|k: &String| *k == key || key.starts_with(&format!("{k}/")) || k.starts_with(&format!("{key}/")));
        if !clash {
            tree.insert(key, content(len, seed, compressible));
        }
    }
    tree
}

fn write_tree(root: &Path, tree: &BTreeMap<String, Vec<u8>>) {
    for (key, bytes) in tree {
        let path = root.join(key);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write");
    }
}

/// Every file under `dir`, as `/`-joined keys.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn visit(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).expect("read dir") {
            let path = e.expect("entry").path();
            if path.is_dir() {
                visit(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).expect("under base").to_str().expect("UTF-8").to_owned();
                out.insert(rel, fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(dir, dir, &mut out);
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

async fn pack_tree(tree: &BTreeMap<String, Vec<u8>>, opts: PackOptions) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    write_tree(&src, tree);
    let arch = tmp.path().join("arch");
    pack(&src, Arc::new(LocalStore::new(&arch)), opts, Arc::new(())).await.expect("pack");
    (tmp, arch)
}

async fn open(arch: &Path) -> haypack_read::Result<Archive> {
    Archive::open(Arc::new(LocalStore::new(arch))).await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_tree_reads_back_byte_for_byte(
        files in prop::collection::vec(file(), 1..=40),
        codec in 0..3u8,
        small_packs in any::<bool>(),
        dict in any::<bool>(),
    ) {
        let tree = tree_of(files);
        let compression = match codec {
            0 => Compression::default(),
            1 => Compression { container: Container::Gzip, level: 6, compress: true },
            _ => Compression { container: Container::Zstd, level: 0, compress: false },
        };
        let opts = PackOptions {
            compression,
            pack_size: if small_packs { 64 << 10 } else { PackOptions::default().pack_size },
            dictionary: if dict { DictChoice::Auto } else { DictChoice::Off },
            ..PackOptions::default()
        };
        runtime().block_on(async {
            let (tmp, arch) = pack_tree(&tree, opts).await;
            let archive = open(&arch).await.expect("open");
            prop_assert_eq!(archive.manifest().records, tree.len() as u64);

            for (key, bytes) in &tree {
                let got = archive.get(key).await.expect("get");
                prop_assert!(got == *bytes, "get {:?}: {} bytes, expected {}", key, got.len(), bytes.len());
                prop_assert_eq!(archive.stat(key).await.expect("stat").raw_len, bytes.len() as u64);
            }

            let keys: Vec<String> = archive.list("").await.expect("list").into_iter().map(|e| e.key).collect();
            prop_assert_eq!(&keys, &tree.keys().cloned().collect::<Vec<_>>());
            // Every key's first component, and each key itself, works as a prefix.
            for key in tree.keys() {
                for prefix in [key.split('/').next().expect("a component"), key.as_str()] {
                    let listed: Vec<String> =
                        archive.list(prefix).await.expect("list").into_iter().map(|e| e.key).collect();
                    let expected: Vec<String> = tree.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
                    prop_assert_eq!(listed, expected, "prefix {:?}", prefix);
                }
            }

            let report = archive.verify().await.expect("verify");
            prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
            prop_assert_eq!(report.records, tree.len() as u64);
            prop_assert_eq!(report.packs, archive.manifest().packs.len() as u64);

            let out = tmp.path().join("out");
            let extracted = archive.extract(&out, "", |_| {}).await.expect("extract");
            prop_assert_eq!(extracted.files, tree.len() as u64);
            let on_disk = files_under(&out);
            prop_assert!(on_disk == tree, "extracted files differ: {:?}", on_disk.keys().collect::<Vec<_>>());
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_trained_dictionary_shrinks_small_records_and_every_reader_uses_it() {
    // 300 small JSON records that share their shape, as a dictionary expects.
    let tree: BTreeMap<String, Vec<u8>> = (0..300)
        .map(|i| {
            let json = format!(
                r#"{{"id": {i}, "kind": "order", "customer": {{"name": "customer {}", "tier": "{}"}}, "items": [{{"sku": "sku-{}", "qty": {}}}], "status": "shipped"}}"#,
                i % 37,
                ["gold", "silver", "bronze"][i % 3],
                i * 7 % 101,
                i % 5 + 1
            );
            (format!("orders/{i:04}.json"), json.into_bytes())
        })
        .collect();
    let (_plain_tmp, plain) = pack_tree(&tree, PackOptions::default()).await;
    let opts = PackOptions { dictionary: DictChoice::On, ..PackOptions::default() };
    let (tmp, arch) = pack_tree(&tree, opts).await;
    let (plain, archive) = (open(&plain).await.expect("open"), open(&arch).await.expect("open"));
    let m = archive.manifest();
    assert_eq!(m.dictionaries.len(), 1);
    assert!(
        m.pack_bytes() * 10 < plain.manifest().pack_bytes() * 6,
        "{} bytes with the dictionary, {} without",
        m.pack_bytes(),
        plain.manifest().pack_bytes()
    );
    for (key, bytes) in &tree {
        assert_eq!(&archive.get(key).await.expect("get"), bytes, "{key}");
    }
    let report = archive.verify().await.expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let out = tmp.path().join("out");
    archive.extract(&out, "", |_| {}).await.expect("extract");
    assert!(files_under(&out) == tree, "extract reads through the dictionary too");

    // The dictionary is an object of its own, read once, by the first record that needs it.
    let name = m.dictionaries[0].object().expect("in an object").to_owned();
    assert!(
        name.starts_with("index/dict-") && !fs::read_to_string(arch.join("manifest.json")).unwrap().contains("zstd")
    );
    let counted = Arc::new(haypack_store::Counting::new(LocalStore::new(&arch)));
    let fresh = Archive::open(counted.clone()).await.expect("open");
    fresh.stat("orders/0001.json").await.expect("stat");
    assert_eq!(counted.counts().reads(), 2, "manifest and page: no dictionary to look a key up");
    assert_eq!(&fresh.get("orders/0001.json").await.expect("get"), &tree["orders/0001.json"]);
    assert_eq!(counted.counts().reads(), 4, "then the dictionary and the record");
    fresh.get("orders/0002.json").await.expect("get");
    assert_eq!(counted.counts().reads(), 5, "the dictionary is kept");
    // A damaged dictionary is named as such.
    let mut bytes = fs::read(arch.join(&name)).expect("dictionary");
    bytes[100] ^= 1;
    fs::write(arch.join(&name), bytes).expect("write");
    match open(&arch).await.expect("open").get("orders/0001.json").await {
        Err(Error::Corrupt { object, detail, .. }) => {
            assert!(object == name && detail.contains("checksum"), "{detail}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // A manifest that lost its dictionary: the records say which one they need.
    let path = arch.join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
    json.as_object_mut().expect("object").remove("dictionaries");
    fs::write(&path, serde_json::to_vec(&json).expect("json")).expect("write");
    match open(&arch).await.expect("open").get("orders/0001.json").await {
        Err(Error::Corrupt { detail, .. }) => {
            assert!(detail.contains("dictionary 1 is not in this archive"), "{detail}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Damage and foreign input: each with its exact error variant.

fn sample() -> BTreeMap<String, Vec<u8>> {
    let mut t = BTreeMap::new();
    t.insert("a.txt".to_owned(), content(3000, 1, true));
    t.insert("b/noise.bin".to_owned(), content(5000, 2, false));
    t.insert("c/d/e.txt".to_owned(), content(20_000, 3, true));
    t.insert("z-last".to_owned(), content(700, 4, false));
    t
}

/// Flips a byte in the middle of `key`'s encoded content; returns the pack's name and the
/// record's offset.
async fn flip_content_byte(arch: &Path, key: &str) -> (String, u64) {
    let archive = open(arch).await.expect("open");
    let entry = archive.stat(key).await.expect("stat");
    let pack = archive.manifest().pack(entry.pack).expect("pack").name.clone();
    let path = arch.join(&pack);
    let mut bytes = fs::read(&path).expect("read pack");
    let record = &bytes[entry.offset as usize..(entry.offset + entry.len) as usize];
    let frame = RecordFrame::parse(record).expect("frame");
    let at = entry.offset + frame.prefix_len + frame.header.stored_len / 2;
    bytes[at as usize] ^= 0x40;
    fs::write(&path, bytes).expect("write pack");
    (pack, entry.offset)
}

#[tokio::test]
async fn a_flipped_content_byte_is_corrupt_naming_the_key_pack_and_offset() {
    let tree = sample();
    for compression in [
        Compression::default(),
        Compression { container: Container::Gzip, level: 6, compress: true },
        Compression { container: Container::Zstd, level: 0, compress: false },
    ] {
        for victim in ["a.txt", "b/noise.bin"] {
            let (_tmp, arch) = pack_tree(&tree, PackOptions { compression, ..PackOptions::default() }).await;
            let (pack, offset) = flip_content_byte(&arch, victim).await;
            let archive = open(&arch).await.expect("open");
            match archive.get(victim).await {
                Err(Error::Corrupt { object, offset: at, key: Some(key), .. }) => {
                    assert_eq!((object, at, key.as_str()), (pack.clone(), offset, victim), "{compression:?}");
                }
                other => panic!("{compression:?} {victim}: expected Corrupt with its key, got {other:?}"),
            }
            let mut sink = Vec::new();
            assert!(matches!(archive.get_to(victim, &mut sink).await, Err(Error::Corrupt { key: Some(_), .. })));
            for (key, bytes) in tree.iter().filter(|(k, _)| *k != victim) {
                assert_eq!(archive.get(key).await.expect("the others read"), *bytes);
            }
            let report = archive.verify().await.expect("verify runs");
            assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
            // Typed: the pack, the key and the offset, as the flip left them.
            match &report.problems[0] {
                Problem::Record { pack: p, key, offset: at, .. } => {
                    assert_eq!((p, key.as_str(), *at), (&pack, victim, offset), "{compression:?}")
                }
                other => panic!("{compression:?} {victim}: expected a record problem, got {other:?}"),
            }

            let out = arch.with_file_name("out");
            let err = archive.extract(&out, "", |_| {}).await.expect_err("extract fails");
            assert!(matches!(err, Error::Corrupt { key: Some(ref k), .. } if k == victim), "{err}");
            assert!(!out.join(victim).exists());
        }
    }
}

#[tokio::test]
async fn a_truncated_pack_is_corrupt() {
    let tree = sample();
    let (_tmp, arch) = pack_tree(&tree, PackOptions::default()).await;
    let archive = open(&arch).await.expect("open");
    let last = archive.stat("z-last").await.expect("stat");
    let pack = arch.join(&archive.manifest().pack(last.pack).expect("pack").name);
    fs::File::options().write(true).open(&pack).expect("open").set_len(last.offset + 5).expect("truncate");

    let archive = open(&arch).await.expect("open");
    match archive.get("z-last").await {
        Err(Error::Corrupt { key: Some(key), detail, .. }) => {
            assert_eq!(key, "z-last");
            assert!(detail.contains("truncated"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(archive.get("a.txt").await.expect("before the cut"), tree["a.txt"]);
    let report = archive.verify().await.expect("verify runs");
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Size { what: "pack", found, expected, .. } if found < expected)),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn a_corrupt_index_block_is_corrupt_without_a_key() {
    let tree = sample();
    let (_tmp, arch) = pack_tree(&tree, PackOptions::default()).await;
    let archive = open(&arch).await.expect("open");
    let index = archive.manifest().index.objects[0].name.clone();
    let path = arch.join(&index);
    let mut bytes = fs::read(&path).expect("read index");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&path, bytes).expect("write index");

    let archive = open(&arch).await.expect("open");
    match archive.get("a.txt").await {
        Err(Error::Corrupt { object, key: None, detail, .. }) => {
            assert_eq!(object, index);
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(archive.list("").await, Err(Error::Corrupt { .. })));
    assert!(!archive.verify().await.expect("verify runs").problems.is_empty());
}

#[tokio::test]
async fn a_missing_manifest_is_no_archive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for dir in [tmp.path().to_owned(), tmp.path().join("does-not-exist")] {
        assert!(matches!(open(&dir).await, Err(Error::NoArchive { .. })), "{}", dir.display());
    }
    let (_tmp, arch) = pack_tree(&sample(), PackOptions::default()).await;
    fs::remove_file(arch.join("manifest.json")).expect("rm");
    match open(&arch).await {
        Err(Error::NoArchive { archive }) => assert_eq!(archive, arch.display().to_string()),
        other => panic!("expected NoArchive, got {other:?}"),
    }
}

#[tokio::test]
async fn a_foreign_manifest_is_not_haypack() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for foreign in [&b"<html></html>"[..], br#"{"format": "other", "version": 1}"#, b"[]", b""] {
        fs::write(tmp.path().join("manifest.json"), foreign).expect("write");
        match open(tmp.path()).await {
            Err(Error::Manifest { source: haypack_format::Error::NotHaypack { .. }, .. }) => {}
            other => panic!("{:?}: expected Manifest(NotHaypack), got {other:?}", String::from_utf8_lossy(foreign)),
        }
    }
}

#[tokio::test]
async fn a_manifest_from_a_newer_version_says_so() {
    let (_tmp, arch) = pack_tree(&sample(), PackOptions::default()).await;
    let path = arch.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
    let current = haypack_format::MANIFEST_VERSION;
    m["version"] = (current + 1).into();
    m["a_field_from_the_future"] = true.into();
    fs::write(&path, serde_json::to_vec(&m).expect("json")).expect("write");
    match open(&arch).await {
        Err(Error::Manifest { source: haypack_format::Error::NewerVersion { found, supported, .. }, .. })
            if (found, supported) == (current + 1, current) => {}
        other => panic!("expected Manifest(NewerVersion), got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_key_is_not_found() {
    let (_tmp, arch) = pack_tree(&sample(), PackOptions::default()).await;
    let archive = open(&arch).await.expect("open");
    // Before the first key, between keys, a directory, a prefix of a key, after the last key.
    for key in ["0", "a.txt.bak", "b", "b/", "c/d/e", "zz"] {
        match archive.get(key).await {
            Err(Error::NotFound { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: expected NotFound, got {other:?}"),
        }
        assert!(matches!(archive.stat(key).await, Err(Error::NotFound { .. })), "{key}");
    }
    assert!(archive.list("nothing-here/").await.expect("list").is_empty());
}

#[tokio::test]
async fn a_failing_sink_is_an_output_error_not_corruption() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (_tmp, arch) = pack_tree(&sample(), PackOptions::default()).await;
    let archive = open(&arch).await.expect("open");
    match archive.get_to("c/d/e.txt", &mut Full).await {
        Err(Error::Output(e)) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull),
        other => panic!("expected Output, got {other:?}"),
    }
}

/// A record that stores little and decodes to much (40 MiB of text in a few KiB) reads back by
/// every path, which stream it rather than hold it whole.
#[tokio::test]
async fn a_record_that_expands_a_thousandfold_reads_back_by_every_path() {
    let mut tree = sample();
    tree.insert("big/repetitive.txt".to_owned(), b"haypack ".repeat(5 << 20));
    let (tmp, arch) = pack_tree(&tree, PackOptions::default()).await;
    let archive = open(&arch).await.expect("open");
    let e = archive.stat("big/repetitive.txt").await.expect("stat");
    assert!(e.len < 1 << 20 && e.raw_len == 40 << 20, "{e:?}");
    assert_eq!(archive.get("big/repetitive.txt").await.expect("get"), tree["big/repetitive.txt"]);
    let out = tmp.path().join("out");
    archive.extract(&out, "", |_| {}).await.expect("extract");
    assert_eq!(files_under(&out), tree);
    let report = archive.verify().await.expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, tree.len() as u64);
}

/// More index leaves than the reader keeps decoded (long keys make small leaves): lookups in the
/// leaves beyond its cache search the compressed leaves, and find exactly what a full decode does.
#[tokio::test]
async fn lookups_beyond_the_decoded_leaf_cache_find_every_key() {
    let long = "d".repeat(240);
    let dirs: Vec<String> = (0..8).map(|i| format!("{i}{long}")).collect();
    let mut tree = BTreeMap::new();
    for i in 0..5000 {
        tree.insert(format!("{}/{i:05}", dirs.join("/")), format!("record {i}\n").into_bytes());
    }
    let (_tmp, arch) = pack_tree(&tree, PackOptions::default()).await;
    let archive = open(&arch).await.expect("open");
    // 256 KiB of decoded leaves: ~100 of these entries, a few leaves.
    archive.set_index_memory(1 << 20);
    let leaves = archive.index_parts(usize::MAX).await.expect("leaves").len();
    assert!(leaves > 100, "{leaves} leaves: more than the decoded cache holds");
    // Touch every leaf once, in reverse, so that the last ones are searched compressed.
    let mut keys: Vec<&String> = tree.keys().collect();
    keys.reverse();
    for key in keys {
        assert_eq!(archive.get(key).await.expect("get"), tree[key], "{key}");
    }
    let listed = archive.list("").await.expect("list");
    for e in listed.iter().step_by(97) {
        assert_eq!(&archive.stat(&e.key).await.expect("stat"), e);
    }
    let missing = format!("{}/99999", dirs.join("/"));
    assert!(matches!(archive.stat(&missing).await, Err(Error::NotFound { .. })));
}

/// A disk cache whose files were damaged is read past: the reader checks each cached range
/// against the checksum its reference gives and reads the store instead.
#[tokio::test]
async fn a_damaged_disk_cache_is_read_past() {
    let mut tree = BTreeMap::new();
    for i in 0..2000 {
        tree.insert(format!("d/{i:05}"), format!("record {i}\n").into_bytes());
    }
    let (_tmp, arch) = pack_tree(&tree, PackOptions::default()).await;
    let cache = tempfile::tempdir().expect("tempdir");
    let store = || Arc::new(LocalStore::new(&arch));
    let first = Archive::open_with_cache(store(), Some(cache.path().to_owned())).await.expect("open");
    assert_eq!(first.get("d/00007").await.expect("get"), tree["d/00007"]);
    let files: Vec<_> = std::fs::read_dir(cache.path()).expect("cache").map(|f| f.expect("entry").path()).collect();
    assert!(!files.is_empty(), "the page went to the disk cache");
    for f in &files {
        let mut bytes = std::fs::read(f).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(f, bytes).expect("write");
    }
    let second = Archive::open_with_cache(store(), Some(cache.path().to_owned())).await.expect("open");
    for key in ["d/00007", "d/01999"] {
        assert_eq!(second.get(key).await.expect("get"), tree[key], "{key}");
    }
}

//! The `haypack` binary end to end: every command on real trees in temporary directories, the
//! packs as standard zstd/gzip files, and every bad input with its message and no partial
//! output left behind.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use assert_cmd::Command;
use haypack_format::{
    BlockRef, Compression, Container, Entry, Footer, IndexObject, IndexRef, Manifest, Meta, PackRef, RecordFrame,
    RecordMeta, Timestamp, encode_block, encode_record,
};
use predicates::prelude::*;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

fn haypack() -> Command {
    let mut cmd = Command::cargo_bin("haypack").expect("the haypack binary is built");
    cmd.env_remove("HAYPACK_LOG");
    cmd
}

use haypack_testkit::noise;

/// Compressible text of about `n` bytes.
fn text(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 64);
    let mut i = seed;
    while out.len() < n {
        out.extend_from_slice(format!("line {i}: the quick brown fox jumps over the lazy dog\n").as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// One file of a test tree.
#[derive(Debug, Clone)]
struct Spec {
    content: Vec<u8>,
    mode: u32,
    mtime: SystemTime,
}

type Tree = BTreeMap<String, Spec>;

fn spec(content: Vec<u8>, mode: u32, secs: u64, nanos: u32) -> Spec {
    Spec { content, mode, mtime: UNIX_EPOCH + Duration::new(secs, nanos) }
}

/// A small tree with nested directories, odd names, an empty file and varied modes and times.
fn sample_tree() -> Tree {
    let mut t = Tree::new();
    t.insert("README.md".into(), spec(text(3000, 1), 0o644, 1_600_000_000, 123_456_789));
    t.insert("a-b".into(), spec(b"dash".to_vec(), 0o640, 1_600_000_001, 0));
    t.insert("a.b".into(), spec(b"dot".to_vec(), 0o600, 1_600_000_002, 5));
    t.insert("a.txt".into(), spec(text(200, 2), 0o644, 1_500_000_000, 999_999_999));
    t.insert("a/b/c/deep.txt".into(), spec(text(5000, 3), 0o644, 1_700_000_000, 1));
    t.insert("a/b/noise.bin".into(), spec(noise(40_000, 4), 0o644, 1_700_000_001, 500));
    t.insert("dir with space/ünïcødé ☕.json".into(), spec(br#"{"k": "v"}"#.to_vec(), 0o644, 1_650_000_000, 42));
    t.insert(".hidden".into(), spec(b"hidden".to_vec(), 0o644, 1_600_000_003, 0));
    t.insert("empty".into(), spec(Vec::new(), 0o644, 1_600_000_004, 0));
    t.insert("run.sh".into(), spec(b"#!/bin/sh\necho hi\n".to_vec(), 0o755, 1_600_000_005, 0));
    t
}

fn write_tree(root: &Path, tree: &Tree) {
    for (key, s) in tree {
        let path = root.join(key);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(&path, &s.content).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(s.mode)).expect("chmod");
        fs::File::options().write(true).open(&path).expect("open").set_modified(s.mtime).expect("set mtime");
    }
}

/// A temporary directory holding `src` (the tree) and room for archives beside it.
fn setup(tree: &Tree) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir src");
    write_tree(&src, tree);
    (tmp, src)
}

fn pack_ok(src: &Path, dest: &Path, args: &[&str]) {
    haypack().arg("pack").args(args).arg(src).arg(dest).assert().success();
}

/// Every file under `dir` (recursively), relative to it, sorted; empty if `dir` does not exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn visit(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.expect("dir entry");
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                visit(base, &e.path(), out);
            } else {
                out.push(e.path().strip_prefix(base).expect("under base").to_owned());
            }
        }
    }
    let mut out = Vec::new();
    visit(dir, dir, &mut out);
    out.sort();
    out
}

/// A failed pack must leave no object behind: no manifest, no pack, no index, no temporary.
fn assert_no_archive_files(dest: &Path) {
    let left = files_under(dest);
    assert!(left.is_empty(), "a failed pack left files in {}: {left:?}", dest.display());
}

fn stdout_of(cmd: &mut Command) -> Vec<u8> {
    cmd.assert().success().get_output().stdout.clone()
}

fn stdout_lines(cmd: &mut Command) -> Vec<String> {
    String::from_utf8(stdout_of(cmd)).expect("UTF-8 output").lines().map(str::to_owned).collect()
}

fn ls_json(archive: &Path) -> Vec<serde_json::Value> {
    stdout_lines(haypack().arg("ls").arg("--json").arg(archive))
        .iter()
        .map(|l| serde_json::from_str(l).expect("ls --json prints JSON lines"))
        .collect()
}

fn info_json(archive: &Path) -> serde_json::Value {
    serde_json::from_slice(&stdout_of(haypack().args(["info", "--json"]).arg(archive))).expect("info --json is JSON")
}

fn manifest_json(archive: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(archive.join("manifest.json")).expect("manifest")).expect("manifest JSON")
}

/// The pack files of an archive, in name (= id = key) order.
fn pack_files(archive: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<PathBuf> =
        fs::read_dir(archive.join("packs")).expect("packs dir").map(|e| e.expect("entry").path()).collect();
    packs.sort();
    packs
}

fn have(tool: &str) -> bool {
    std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Runs the binary with its stdout a pipe whose reading end is already closed, as when
/// `haypack ... | head` has stopped reading.
fn run_with_closed_stdout<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_haypack"))
        .args(args)
        .env_remove("HAYPACK_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn haypack");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for haypack")
}

/// Flips one byte in the middle of `key`'s encoded content, inside its pack; returns the
/// pack's name (as the manifest spells it) and the record's offset.
fn corrupt_content(archive: &Path, key: &str) -> (String, u64) {
    let entry = ls_json(archive).into_iter().find(|e| e["key"] == key).expect("key listed");
    let (pack_id, offset, len) =
        (entry["pack"].as_u64().expect("pack"), entry["offset"].as_u64().expect("offset"), entry["stored"].as_u64());
    let len = len.expect("stored");
    let manifest = manifest_json(archive);
    let pack_name = manifest["packs"]
        .as_array()
        .expect("packs")
        .iter()
        .find(|p| p["id"].as_u64() == Some(pack_id))
        .expect("pack in manifest")["name"]
        .as_str()
        .expect("name")
        .to_owned();
    let path = archive.join(&pack_name);
    let mut bytes = fs::read(&path).expect("read pack");
    let record = &bytes[offset as usize..(offset + len) as usize];
    let frame = RecordFrame::parse(record).expect("a record starts at the listed offset");
    assert!(frame.header.stored_len > 0, "{key} has content to corrupt");
    let at = offset + frame.prefix_len + frame.header.stored_len / 2;
    bytes[at as usize] ^= 0x55;
    fs::write(&path, bytes).expect("write pack");
    (pack_name, offset)
}

// ---------------------------------------------------------------------------------------------
// The happy path

#[test]
fn get_returns_every_key_byte_for_byte() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    haypack()
        .arg("pack")
        .arg(&src)
        .arg(&arch)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("packed {} files", tree.len())));
    for (key, s) in &tree {
        let out = stdout_of(haypack().arg("get").arg(&arch).arg(key));
        assert_eq!(out, s.content, "get {key} to stdout");

        let file = tmp.path().join("out.bin");
        haypack().arg("get").arg(&arch).arg(key).arg("-o").arg(&file).assert().success().stdout("");
        assert_eq!(fs::read(&file).expect("-o file"), s.content, "get {key} -o");
        fs::remove_file(&file).expect("rm");
    }
    // `-o` into the current directory (a bare file name) works too.
    haypack().current_dir(tmp.path()).arg("get").arg(&arch).arg("a.txt").args(["-o", "bare.txt"]).assert().success();
    assert_eq!(fs::read(tmp.path().join("bare.txt")).expect("bare"), tree["a.txt"].content);
}

#[test]
fn get_into_a_pipe_or_a_device_writes_through_it_and_leaves_it_one() {
    use std::os::unix::fs::FileTypeExt;
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);

    // A pipe: the record arrives through it, and it is still a pipe (not a file renamed over it).
    let fifo = tmp.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).expect("read the pipe"))
    };
    haypack().arg("get").arg(&arch).arg("a.txt").arg("-o").arg(&fifo).assert().success();
    // Checked first: had it been replaced, the reader would wait on the lost pipe for ever.
    assert!(fs::symlink_metadata(&fifo).expect("fifo").file_type().is_fifo());
    assert_eq!(reader.join().expect("reader"), tree["a.txt"].content);

    // `-o /dev/null` (run as root, a rename would have replaced the device with a file).
    haypack().arg("get").arg(&arch).arg("a.txt").args(["-o", "/dev/null"]).assert().success();
    assert!(fs::metadata("/dev/null").expect("/dev/null").file_type().is_char_device());
}

#[test]
fn ls_lists_sorted_keys_plain_long_json_and_by_prefix() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    let keys: Vec<String> = tree.keys().cloned().collect();

    assert_eq!(stdout_lines(haypack().arg("ls").arg(&arch)), keys);

    let long = stdout_lines(haypack().args(["ls", "--long"]).arg(&arch));
    assert_eq!(long.len(), tree.len());
    for (line, (key, s)) in long.iter().zip(&tree) {
        assert!(line.ends_with(&format!(" {key}")), "{line:?} ends with its key");
        let mut words = line.split_whitespace();
        let mode = u32::from_str_radix(words.next().expect("mode"), 8).expect("octal mode");
        assert_eq!(mode, s.mode, "{line:?}");
        assert_eq!(words.next().expect("size"), s.content.len().to_string(), "{line:?}");
    }

    let json = ls_json(&arch);
    assert_eq!(json.len(), tree.len());
    for (e, (key, s)) in json.iter().zip(&tree) {
        assert_eq!(e["key"], key.as_str());
        assert_eq!(e["size"].as_u64(), Some(s.content.len() as u64), "{key}");
        assert_eq!(e["mode"], format!("{:o}", s.mode).as_str(), "{key}");
        let since = s.mtime.duration_since(UNIX_EPOCH).expect("after the epoch");
        assert_eq!(e["mtime"].as_u64(), Some(since.as_secs()), "{key}");
        assert_eq!(e["pack"].as_u64(), Some(1), "{key}");
    }
    assert_eq!(json.iter().find(|e| e["key"] == "README.md").expect("README")["content_type"], "text/markdown");

    let under_a: Vec<String> = keys.iter().filter(|k| k.starts_with("a/")).cloned().collect();
    assert_eq!(under_a, ["a/b/c/deep.txt", "a/b/noise.bin"]);
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&arch).arg("a/")), under_a);
    let under_a_any: Vec<String> = keys.iter().filter(|k| k.starts_with('a')).cloned().collect();
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&arch).arg("a")), under_a_any);
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&arch).arg("dir with space/")), ["dir with space/ünïcødé ☕.json"]);
    assert!(stdout_lines(haypack().arg("ls").arg(&arch).arg("zzz")).is_empty());
}

#[test]
fn extract_restores_content_mode_and_mtime() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    let out = tmp.path().join("out/nested");
    haypack()
        .arg("extract")
        .arg(&arch)
        .arg(&out)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("extracted {} files", tree.len())));
    let mut expected: Vec<PathBuf> = tree.keys().map(PathBuf::from).collect();
    expected.sort();
    assert_eq!(files_under(&out), expected, "exactly the archive's files, no temporaries");
    for (key, s) in &tree {
        let path = out.join(key);
        let meta = fs::metadata(&path).expect("extracted");
        assert_eq!(fs::read(&path).expect("read"), s.content, "{key}");
        assert_eq!(meta.permissions().mode() & 0o7777, s.mode, "{key}");
        assert_eq!(meta.modified().expect("mtime"), s.mtime, "{key}");
    }

    // With a prefix, only the keys under it.
    let part = tmp.path().join("part");
    haypack().arg("-q").arg("extract").arg(&arch).arg(&part).arg("a/b/").assert().success();
    assert_eq!(files_under(&part), [PathBuf::from("a/b/c/deep.txt"), PathBuf::from("a/b/noise.bin")]);
}

#[test]
fn verify_and_info_report_a_good_archive() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    let raw: u64 = tree.values().map(|s| s.content.len() as u64).sum();

    haypack()
        .arg("verify")
        .arg(&arch)
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains(format!("verified {} records in 1 packs", tree.len())))
        .stderr(predicate::str::contains("all good"));

    let info = String::from_utf8(stdout_of(haypack().arg("info").arg(&arch))).expect("UTF-8");
    assert!(info.contains("generation 1"), "{info}");
    assert!(info.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["records", &tree.len().to_string()]));
    assert!(info.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["packs", "1"]), "{info}");
    assert!(info.contains(&format!("raw bytes    {raw} ")), "{info}");
    assert!(info.contains("packs/000001.hpk.zst"), "{info}");

    let j = info_json(&arch);
    let stored: u64 = pack_files(&arch).iter().map(|p| fs::metadata(p).expect("pack").len()).sum();
    assert_eq!(j["records"].as_u64(), Some(tree.len() as u64));
    assert_eq!(j["packs"].as_u64(), Some(1));
    assert_eq!(j["generation"].as_u64(), Some(1));
    assert_eq!(j["raw_bytes"].as_u64(), Some(raw));
    assert_eq!(j["stored_bytes"].as_u64(), Some(stored));
    let ratio = j["ratio"].as_f64().expect("ratio");
    assert!((ratio - raw as f64 / stored as f64).abs() < 1e-9, "ratio {ratio}");
    assert!(info.contains(&format!("{ratio:.2}x")), "plain info shows the same ratio: {info}");
}

// ---------------------------------------------------------------------------------------------
// Codecs and standard files

#[test]
fn every_codec_round_trips_and_packs_are_standard_files() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let concatenated: Vec<u8> = tree.values().flat_map(|s| s.content.clone()).collect();
    let text_bytes: u64 = tree.iter().filter(|(k, _)| !k.ends_with(".bin")).map(|(_, s)| s.content.len() as u64).sum();
    for (codec, ext, tool) in [("zstd", "zst", "zstd"), ("gzip", "gz", "gzip"), ("stored", "zst", "zstd")] {
        for pack_size in ["256M", "2K"] {
            let arch = tmp.path().join(format!("arch-{codec}-{pack_size}"));
            pack_ok(&src, &arch, &["-q", "--codec", codec, "--pack-size", pack_size]);
            let packs = pack_files(&arch);
            assert!(!packs.is_empty());
            for p in &packs {
                let name = p.file_name().and_then(|n| n.to_str()).expect("name");
                assert!(name.ends_with(&format!(".hpk.{ext}")), "{codec}: {name}");
            }
            if pack_size == "2K" {
                assert!(packs.len() > 2, "{codec}: a 2K pack size cuts several packs, got {}", packs.len());
            } else {
                assert_eq!(packs.len(), 1, "{codec}");
            }
            for (key, s) in &tree {
                assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg(key)), s.content, "{codec} {key}");
            }
            haypack().arg("-q").arg("verify").arg(&arch).assert().success();

            // Compression happened where it pays, and only then.
            let stored: u64 = packs.iter().map(|p| fs::metadata(p).expect("pack").len()).sum();
            if codec == "stored" {
                assert!(stored > concatenated.len() as u64, "{codec}: stored packs are larger than the content");
            } else if pack_size == "256M" {
                assert!(stored < concatenated.len() as u64 - text_bytes / 2, "{codec}: {stored} bytes");
            }

            if !have(tool) {
                eprintln!("note: no `{tool}` binary; not checking that packs are standard {tool} files");
                continue;
            }
            let mut decoded = Vec::new();
            for p in &packs {
                let out = std::process::Command::new(tool).arg("-dc").arg(p).output().expect("run decompressor");
                assert!(out.status.success(), "{tool} -dc {}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
                decoded.extend(out.stdout);
            }
            assert!(decoded == concatenated, "{tool} -dc of the {codec} packs prints the files in key order");
        }
    }
}

#[test]
fn packing_is_deterministic() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    for codec in ["zstd", "gzip"] {
        let one = tmp.path().join(format!("one-{codec}"));
        let two = tmp.path().join(format!("two-{codec}"));
        pack_ok(&src, &one, &["-q", "--codec", codec, "--pack-size", "8K"]);
        pack_ok(&src, &two, &["-q", "--codec", codec, "--pack-size", "8K"]);
        let files = files_under(&one);
        assert_eq!(files, files_under(&two));
        assert!(files.iter().filter(|f| f.starts_with("packs")).count() > 1, "{files:?}");
        for f in &files {
            assert!(
                fs::read(one.join(f)).expect("one") == fs::read(two.join(f)).expect("two"),
                "{codec}: {f:?} differs"
            );
        }
    }
}

#[test]
fn small_pack_size_cuts_several_packs_and_a_large_file_gets_its_own() {
    let mut tree = Tree::new();
    for i in 0..12 {
        tree.insert(format!("f{i:02}"), spec(noise(3000, i), 0o644, 1_600_000_000, 0));
    }
    // Larger than the pack size, but small enough for the in-memory path; it comes when the
    // current pack (f00, f01) still has room, so only the rule keeps it apart.
    tree.insert("f01-big".into(), spec(noise(100_000, 99), 0o644, 1_600_000_000, 0));
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q", "--pack-size", "8K"]);

    let entries = ls_json(&arch);
    let pack_of = |key: &str| entries.iter().find(|e| e["key"] == key).expect("listed")["pack"].as_u64();
    let big = pack_of("f01-big");
    let sharing: Vec<&str> =
        entries.iter().filter(|e| e["pack"].as_u64() == big).map(|e| e["key"].as_str().expect("key")).collect();
    assert_eq!(sharing, ["f01-big"], "a file larger than the pack size gets a pack of its own");

    let info = info_json(&arch);
    let packs = info["packs"].as_u64().expect("packs");
    assert!(packs >= 5, "12 × 3000 B at 8K a pack plus the big one: {packs} packs");
    assert_eq!(pack_files(&arch).len() as u64, packs);
    // Packs are cut at the first record that reaches the target size, never much beyond.
    for p in pack_files(&arch) {
        let size = fs::metadata(&p).expect("pack").len();
        assert!(!(8192 + 3200..=100_000).contains(&size), "{}: {size} bytes", p.display());
    }
    for (key, s) in &tree {
        assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg(key)), s.content, "{key}");
    }
    haypack().arg("-q").arg("verify").arg(&arch).assert().success();
}

#[test]
fn files_over_8_mib_stream_and_round_trip() {
    // One compressible (zstd compresses it as it streams) and one not (gzip stores it).
    let big_text = text(9 << 20, 7);
    let big_noise = noise((8 << 20) + 12_345, 8);
    for (codec, big) in [("zstd", big_text), ("gzip", big_noise)] {
        let mut tree = Tree::new();
        tree.insert("a-small".into(), spec(b"before".to_vec(), 0o644, 1_600_000_000, 0));
        tree.insert("big.dat".into(), spec(big, 0o600, 1_600_000_001, 77));
        tree.insert("z-small".into(), spec(b"after".to_vec(), 0o644, 1_600_000_002, 0));
        let (tmp, src) = setup(&tree);
        let arch = tmp.path().join("arch");
        pack_ok(&src, &arch, &["-q", "--codec", codec, "--pack-size", "4M"]);

        // The big file is alone in its pack, between the small files' packs.
        let entries = ls_json(&arch);
        let packs: Vec<u64> = entries.iter().map(|e| e["pack"].as_u64().expect("pack")).collect();
        assert_eq!(packs, [1, 2, 3], "{codec}");
        assert_eq!(info_json(&arch)["packs"].as_u64(), Some(3));

        let out = tmp.path().join("big.out");
        haypack().arg("get").arg(&arch).arg("big.dat").arg("-o").arg(&out).assert().success();
        assert!(fs::read(&out).expect("-o") == tree["big.dat"].content, "{codec}: get -o");
        let streamed = stdout_of(haypack().arg("get").arg(&arch).arg("big.dat"));
        assert!(streamed == tree["big.dat"].content, "{codec}: get to stdout");

        let dir = tmp.path().join("x");
        haypack().arg("-q").arg("extract").arg(&arch).arg(&dir).assert().success();
        for (key, s) in &tree {
            assert!(fs::read(dir.join(key)).expect("extracted") == s.content, "{codec}: extract {key}");
            assert_eq!(fs::metadata(dir.join(key)).expect("meta").modified().expect("mtime"), s.mtime);
        }
        haypack().arg("-q").arg("verify").arg(&arch).assert().success();
        if codec == "zstd" {
            let stored = fs::metadata(&pack_files(&arch)[1]).expect("pack").len();
            assert!(stored < (1 << 20), "the big text compressed as it streamed: {stored} bytes");
        }
    }
}

#[test]
fn empty_files_round_trip() {
    let mut tree = Tree::new();
    tree.insert("empty-1".into(), spec(Vec::new(), 0o644, 1_600_000_000, 0));
    tree.insert("sub/empty-2".into(), spec(Vec::new(), 0o600, 1_600_000_001, 0));
    let (tmp, src) = setup(&tree);
    for codec in ["zstd", "gzip", "stored"] {
        let arch = tmp.path().join(format!("arch-{codec}"));
        pack_ok(&src, &arch, &["-q", "--codec", codec]);
        assert_eq!(stdout_lines(haypack().arg("ls").arg(&arch)), ["empty-1", "sub/empty-2"]);
        for key in tree.keys() {
            haypack().arg("get").arg(&arch).arg(key).assert().success().stdout("");
        }
        let out = tmp.path().join(format!("out-{codec}"));
        haypack().arg("-q").arg("get").arg(&arch).arg("sub/empty-2").arg("-o").arg(&out).assert().success();
        assert_eq!(fs::read(&out).expect("-o file exists, empty"), b"");
        let dir = tmp.path().join(format!("x-{codec}"));
        haypack().arg("-q").arg("extract").arg(&arch).arg(&dir).assert().success();
        assert_eq!(fs::read(dir.join("sub/empty-2")).expect("extracted"), b"");
        assert_eq!(fs::metadata(dir.join("sub/empty-2")).expect("meta").permissions().mode() & 0o777, 0o600);
        haypack().arg("-q").arg("verify").arg(&arch).assert().success();
    }
}

#[test]
fn a_single_file_source_packs_under_its_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("only.txt");
    fs::write(&file, "just me").expect("write");
    let arch = tmp.path().join("arch");
    pack_ok(&file, &arch, &["-q"]);
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&arch)), ["only.txt"]);
    assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg("only.txt")), b"just me");
}

// ---------------------------------------------------------------------------------------------
// Closed pipes

fn many_files_archive() -> (TempDir, PathBuf, Vec<String>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let mut keys = Vec::new();
    for d in 0..25 {
        let dir = src.join(format!("directory-number-{d:03}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            let name = format!("file-with-a-fairly-long-name-{f:05}.txt");
            fs::write(dir.join(&name), format!("{d} {f}")).expect("write");
            keys.push(format!("directory-number-{d:03}/{name}"));
        }
    }
    keys.sort();
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    (tmp, arch, keys)
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let (_tmp, arch, keys) = many_files_archive();
    let a = arch.as_os_str();
    let cases: Vec<Vec<&OsStr>> = vec![
        vec!["ls".as_ref(), a],
        vec!["ls".as_ref(), "--long".as_ref(), a],
        vec!["ls".as_ref(), "--json".as_ref(), a],
        vec!["info".as_ref(), a],
        vec!["info".as_ref(), "--json".as_ref(), a],
        vec!["get".as_ref(), a, keys[7].as_ref()],
    ];
    for args in cases {
        let out = run_with_closed_stdout(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}, stderr {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?} printed to stderr: {stderr}");
    }
}

#[test]
fn ls_into_head_exits_zero_without_a_message() {
    let (_tmp, arch, keys) = many_files_archive();
    // Output well beyond a pipe buffer, so haypack is still writing when `head` has gone.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"{ "$0" ls "$1"; echo "haypack exit status $?" >&2; } | head -1"#)
        .arg(env!("CARGO_BIN_EXE_haypack"))
        .arg(&arch)
        .output()
        .expect("run sh");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", keys[0]));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "haypack exit status 0\n");
}

#[test]
fn verify_keeps_its_verdict_when_stdout_closes() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    corrupt_content(&arch, "README.md");
    let out = run_with_closed_stdout([OsStr::new("verify"), arch.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a corrupt archive fails verify even unheard: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("1 problem(s)"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Bad sources

#[test]
fn a_missing_source_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("arch");
    haypack()
        .arg("pack")
        .arg(tmp.path().join("no-such-dir"))
        .arg(&dest)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("cannot read the source"))
        .stderr(predicate::str::contains("no-such-dir"))
        .stderr(predicate::str::contains("No such file or directory"));
    assert!(!dest.exists());
}

#[test]
fn an_unreadable_file_fails_the_pack_unless_skipped() {
    // A symbolic link to nothing, followed: unreadable even for root.
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("a.txt"), "a").expect("write");
    fs::write(src.join("c.txt"), "c").expect("write");
    std::os::unix::fs::symlink(tmp.path().join("vanished"), src.join("b-dangling")).expect("symlink");
    let dest = tmp.path().join("arch");
    haypack()
        .args(["pack", "--follow-symlinks"])
        .arg(&src)
        .arg(&dest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("cannot read {}", src.join("b-dangling").display())))
        .stderr(predicate::str::contains("--skip-unreadable"));
    assert_no_archive_files(&dest);

    haypack()
        .args(["pack", "--follow-symlinks", "--skip-unreadable"])
        .arg(&src)
        .arg(&dest)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("skipped {}: cannot read", src.join("b-dangling").display())));
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&dest)), ["a.txt", "c.txt"]);
}

#[test]
fn a_file_without_read_permission_fails_the_pack_unless_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("locked-dir")).expect("mkdir");
    fs::write(src.join("a.txt"), "a").expect("write");
    fs::write(src.join("locked-dir/inside"), "x").expect("write");
    let locked = src.join("b-locked.txt");
    fs::write(&locked, "secret").expect("write");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
    if fs::read(&locked).is_ok() {
        // Root reads regardless of mode; the dangling-link test covers unreadable input there.
        eprintln!("note: running as root, mode 000 does not stop reads; skipping this test");
        return;
    }
    let dest = tmp.path().join("arch");
    haypack()
        .arg("pack")
        .arg(&src)
        .arg(&dest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("cannot read {}", locked.display())))
        .stderr(predicate::str::contains("Permission denied"));
    assert_no_archive_files(&dest);

    fs::set_permissions(src.join("locked-dir"), fs::Permissions::from_mode(0o000)).expect("chmod dir");
    haypack()
        .args(["pack", "--skip-unreadable"])
        .arg(&src)
        .arg(&dest)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("skipped {}", locked.display())))
        .stderr(predicate::str::contains(src.join("locked-dir").display().to_string()));
    fs::set_permissions(src.join("locked-dir"), fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&dest)), ["a.txt"]);
}

#[test]
fn symlinks_are_skipped_and_reported_unless_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("real")).expect("mkdir");
    fs::write(src.join("real/target.txt"), "target").expect("write");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("o.txt"), "outside").expect("write");
    std::os::unix::fs::symlink("real/target.txt", src.join("link.txt")).expect("symlink");
    std::os::unix::fs::symlink(&outside, src.join("linkdir")).expect("symlink");

    let plain = tmp.path().join("plain");
    haypack()
        .arg("pack")
        .arg(&src)
        .arg(&plain)
        .assert()
        .success()
        .stderr(predicate::str::contains("skipped 2 entries: symbolic link, not followed (see --follow-symlinks)"))
        .stderr(predicate::str::contains(src.join("link.txt").display().to_string()))
        .stderr(predicate::str::contains(src.join("linkdir").display().to_string()));
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&plain)), ["real/target.txt"]);

    let followed = tmp.path().join("followed");
    haypack()
        .args(["pack", "--follow-symlinks"])
        .arg(&src)
        .arg(&followed)
        .assert()
        .success()
        .stderr(predicate::str::contains("skipped").not());
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&followed)), ["link.txt", "linkdir/o.txt", "real/target.txt"]);
    assert_eq!(stdout_of(haypack().arg("get").arg(&followed).arg("link.txt")), b"target");
    assert_eq!(stdout_of(haypack().arg("get").arg(&followed).arg("linkdir/o.txt")), b"outside");
}

#[test]
fn a_non_utf8_name_is_an_error_naming_it_or_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    fs::write(src.join("ok.txt"), "ok").expect("write");
    let bad = src.join("sub").join(OsStr::from_bytes(b"caf\xe9.txt"));
    fs::write(&bad, "latin-1 name").expect("write");
    let dest = tmp.path().join("arch");
    haypack()
        .arg("pack")
        .arg(&src)
        .arg(&dest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(bad.display().to_string()))
        .stderr(predicate::str::contains("is not UTF-8"))
        .stderr(predicate::str::contains("--skip-unreadable"));
    assert_no_archive_files(&dest);

    haypack()
        .args(["pack", "--skip-unreadable"])
        .arg(&src)
        .arg(&dest)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("skipped {}", bad.display())));
    assert_eq!(stdout_lines(haypack().arg("ls").arg(&dest)), ["ok.txt"]);
}

#[test]
fn an_empty_source_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("only/dirs")).expect("mkdir");
    let dest = tmp.path().join("arch");
    haypack()
        .arg("pack")
        .arg(&src)
        .arg(&dest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("{} holds no files to pack", src.display())));
    assert_no_archive_files(&dest);

    // Only things that are skipped: still nothing to pack, and the count says why.
    std::os::unix::fs::symlink("/", src.join("root-link")).expect("symlink");
    haypack()
        .arg("pack")
        .arg(&src)
        .arg(&dest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("holds no files to pack (1 skipped)"));
    assert_no_archive_files(&dest);
}

// ---------------------------------------------------------------------------------------------
// Bad destinations

#[test]
fn an_existing_archive_is_replaced_only_with_force() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    let before: Vec<(PathBuf, Vec<u8>)> =
        files_under(&arch).into_iter().map(|f| (f.clone(), fs::read(arch.join(&f)).expect("read"))).collect();

    haypack()
        .arg("pack")
        .arg(&src)
        .arg(&arch)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already holds a haypack archive (generation 1)"))
        .stderr(predicate::str::contains("--force"));
    let after: Vec<(PathBuf, Vec<u8>)> =
        files_under(&arch).into_iter().map(|f| (f.clone(), fs::read(arch.join(&f)).expect("read"))).collect();
    assert!(before == after, "a refused pack changes nothing");

    // A forced pack that fails leaves the old generation as it was.
    std::os::unix::fs::symlink(tmp.path().join("vanished"), src.join("zz-dangling")).expect("symlink");
    haypack().args(["pack", "--force", "--follow-symlinks"]).arg(&src).arg(&arch).assert().code(1);
    let failed: Vec<PathBuf> = files_under(&arch).into_iter().filter(|f| f != Path::new(".lock")).collect();
    assert_eq!(failed, before.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>());
    let manifest = &before.iter().find(|(f, _)| f == Path::new("manifest.json")).expect("manifest").1;
    assert_eq!(&fs::read(arch.join("manifest.json")).expect("manifest"), manifest, "manifest untouched");
    fs::remove_file(src.join("zz-dangling")).expect("rm");

    // With --force: a new generation with the new tree.
    fs::remove_file(src.join("a.txt")).expect("rm");
    fs::write(src.join("new.txt"), "new file").expect("write");
    haypack().args(["pack", "--force"]).arg(&src).arg(&arch).assert().success();
    assert_eq!(info_json(&arch)["generation"].as_u64(), Some(2));
    let keys = stdout_lines(haypack().arg("ls").arg(&arch));
    assert!(keys.contains(&"new.txt".to_owned()) && !keys.contains(&"a.txt".to_owned()), "{keys:?}");
    assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg("new.txt")), b"new file");
    haypack().arg("get").arg(&arch).arg("a.txt").assert().code(1);
    haypack().arg("-q").arg("verify").arg(&arch).assert().success();
}

#[test]
fn leftovers_of_an_unfinished_run_are_resumed_or_forced_over() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q", "--pack-size", "4K"]);
    // As if the run had died before its commit: packs and index, no manifest.
    fs::remove_file(arch.join("manifest.json")).expect("rm");
    let leftovers = files_under(&arch);
    assert!(leftovers.len() >= 3, "{leftovers:?}");
    haypack().args(["pack", "-q"]).arg(&src).arg(&arch).assert().success();
    haypack().args(["-q", "verify"]).arg(&arch).assert().success();

    // Leftovers the new generation does not name are removed at its commit.
    fs::remove_file(arch.join("manifest.json")).expect("rm");
    fs::write(arch.join("packs/999999.hpk.zst"), b"left by some older run").expect("write");
    haypack().args(["pack", "-q", "--force"]).arg(&src).arg(&arch).assert().success();
    assert!(!arch.join("packs/999999.hpk.zst").exists());
    haypack().args(["-q", "verify"]).arg(&arch).assert().success();
}

#[test]
fn a_non_empty_directory_that_is_no_archive_is_refused() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let dest = tmp.path().join("photos");
    fs::create_dir(&dest).expect("mkdir");
    fs::write(dest.join("holiday.jpg"), "jpeg").expect("write");
    haypack()
        .arg("pack")
        .arg(&src)
        .arg(&dest)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not empty"))
        .stderr(predicate::str::contains("holiday.jpg"))
        .stderr(predicate::str::contains("holds no haypack archive"));
    assert_eq!(files_under(&dest), [PathBuf::from("holiday.jpg")]);
    // --force does not make it an archive either.
    haypack().args(["pack", "--force"]).arg(&src).arg(&dest).assert().code(1);
    assert_eq!(files_under(&dest), [PathBuf::from("holiday.jpg")]);

    // An empty directory is a fine destination.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    pack_ok(&src, &empty, &["-q"]);
}

#[test]
fn a_destination_inside_the_source_is_refused() {
    let tree = sample_tree();
    let (_tmp, src) = setup(&tree);
    for dest in [src.join("arch"), src.join("a/b/new/arch"), src.join("a/../arch")] {
        haypack()
            .arg("pack")
            .arg(&src)
            .arg(&dest)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("is inside the source"))
            .stderr(predicate::str::contains(src.canonicalize().expect("canonical").display().to_string()));
        assert!(!dest.exists(), "{}", dest.display());
    }
    // Relative paths resolve the same way.
    haypack().current_dir(&src).args(["pack", ".", "out"]).assert().code(1).stderr(predicate::str::contains("inside"));
    assert!(!src.join("out").exists());
    let mut files: Vec<PathBuf> = tree.keys().map(PathBuf::from).collect();
    files.sort();
    assert_eq!(files_under(&src), files, "the source is untouched");
}

// ---------------------------------------------------------------------------------------------
// Bad archives and keys

#[test]
fn a_missing_key_is_named_and_no_output_file_is_made() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    let outdir = tmp.path().join("outdir");
    fs::create_dir(&outdir).expect("mkdir");
    for key in ["nope.txt", "a", "a/b", "zzz", "README.MD"] {
        haypack()
            .arg("get")
            .arg(&arch)
            .arg(key)
            .arg("-o")
            .arg(outdir.join("out"))
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::contains(format!("no record {key:?} in {}", arch.display())));
        assert!(files_under(&outdir).is_empty(), "no -o file nor temporary for {key}");
        haypack().arg("get").arg(&arch).arg(key).assert().code(1).stdout("");
    }
}

#[test]
fn a_flipped_content_byte_is_caught_by_get_extract_and_verify() {
    let mut tree = sample_tree();
    tree.insert("victim.txt".into(), spec(text(4000, 11), 0o644, 1_600_000_000, 0));
    tree.insert("victim.bin".into(), spec(noise(4000, 12), 0o644, 1_600_000_000, 0));
    let (tmp, src) = setup(&tree);
    for codec in ["zstd", "gzip", "stored"] {
        for victim in ["victim.txt", "victim.bin"] {
            let arch = tmp.path().join(format!("arch-{codec}-{victim}"));
            pack_ok(&src, &arch, &["-q", "--codec", codec]);
            let (pack, offset) = corrupt_content(&arch, victim);
            let what = format!("{codec}/{victim}");

            let expected = format!("{pack} at offset {offset} (record {victim:?})");
            haypack()
                .arg("get")
                .arg(&arch)
                .arg(victim)
                .assert()
                .code(1)
                .stdout("")
                .stderr(predicate::str::contains(&expected))
                .stderr(predicate::str::contains("haypack verify"));
            let out = tmp.path().join("out.bin");
            haypack().arg("get").arg(&arch).arg(victim).arg("-o").arg(&out).assert().code(1);
            assert!(!out.exists(), "{what}: no -o file for a corrupt record");
            let beside: Vec<PathBuf> =
                fs::read_dir(tmp.path()).expect("ls").map(|e| e.expect("entry").path()).collect();
            assert!(
                beside.iter().all(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".tmp"))),
                "{what}: no temporary left beside the -o file: {beside:?}"
            );

            // Every other record still reads.
            for (key, s) in tree.iter().filter(|(k, _)| *k != victim) {
                assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg(key)), s.content, "{what}: {key}");
            }

            haypack()
                .arg("verify")
                .arg(&arch)
                .assert()
                .code(1)
                .stdout(predicate::str::contains(format!("BAD {pack}: record {victim:?} at offset {offset}")))
                .stderr(predicate::str::contains("1 problem(s)"));

            let dir = tmp.path().join(format!("x-{codec}-{victim}"));
            haypack()
                .arg("-q")
                .arg("extract")
                .arg(&arch)
                .arg(&dir)
                .assert()
                .code(1)
                .stderr(predicate::str::contains(&expected));
            let left = files_under(&dir);
            assert!(!left.contains(&PathBuf::from(victim)), "{what}: no file for the corrupt record");
            assert!(
                left.iter().all(|f| !f.to_string_lossy().contains(".haypack-")),
                "{what}: no temporary left: {left:?}"
            );
        }
    }
}

#[test]
fn a_truncated_pack_is_reported() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    let pack = pack_files(&arch).remove(0);
    let size = fs::metadata(&pack).expect("pack").len();
    let entries = ls_json(&arch);
    // Cut inside the last record: the records before it still read, it does not.
    let last = entries.last().expect("entries");
    let cut = last["offset"].as_u64().expect("offset") + 10;
    fs::File::options().write(true).open(&pack).expect("open").set_len(cut).expect("truncate");
    let key = last["key"].as_str().expect("key");
    haypack()
        .arg("get")
        .arg(&arch)
        .arg(key)
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(format!("record {key:?}")))
        .stderr(predicate::str::contains(format!("pack is truncated at {cut} of {size} bytes")));
    let first = entries[0]["key"].as_str().expect("key");
    assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg(first)), tree[first].content);
    haypack().arg("verify").arg(&arch).assert().code(1).stdout(predicate::str::contains(format!(
        "BAD packs/000001.hpk.zst: pack is {cut} bytes, the manifest says {size}: truncated"
    )));
    let dir = tmp.path().join("x");
    haypack().arg("extract").arg(&arch).arg(&dir).assert().code(1).stderr(predicate::str::contains("truncated"));
    assert!(!dir.join(key).exists());
}

#[test]
fn a_directory_that_is_no_archive_is_named_as_such() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let missing = tmp.path().join("missing");
    let foreign = tmp.path().join("foreign");
    fs::create_dir(&foreign).expect("mkdir");
    fs::write(foreign.join("manifest.json"), r#"{"name": "some other tool", "version": 1}"#).expect("write");
    let html = tmp.path().join("html");
    fs::create_dir(&html).expect("mkdir");
    fs::write(html.join("manifest.json"), "<html>not json</html>").expect("write");

    for dir in [&empty, &missing] {
        let msg = format!("no haypack archive at {}: it has no manifest.json", dir.display());
        haypack().arg("get").arg(dir).arg("k").assert().code(1).stderr(predicate::str::contains(&msg));
        haypack().arg("ls").arg(dir).assert().code(1).stdout("").stderr(predicate::str::contains(&msg));
        haypack().arg("info").arg(dir).assert().code(1).stdout("").stderr(predicate::str::contains(&msg));
        haypack().arg("verify").arg(dir).assert().code(1).stdout("").stderr(predicate::str::contains(&msg));
    }
    assert!(!missing.exists(), "reading does not create the archive directory");
    for (dir, detail) in [(&foreign, "no \"format\": \"haypack\" field"), (&html, "not JSON")] {
        let msg = format!("{}/manifest.json: not a haypack manifest", dir.display());
        for cmd in [&["get", "k"][..], &["ls"], &["info"], &["verify"]] {
            haypack()
                .arg(cmd[0])
                .arg(dir)
                .args(&cmd[1..])
                .assert()
                .code(1)
                .stdout("")
                .stderr(predicate::str::contains(&msg))
                .stderr(predicate::str::contains(detail));
        }
        let x = tmp.path().join("x");
        haypack().arg("extract").arg(dir).arg(&x).assert().code(1).stderr(predicate::str::contains(&msg));
        assert!(!x.exists(), "nothing extracted");
    }
}

#[test]
fn an_archive_from_a_newer_version_says_so() {
    let tree = sample_tree();
    let (tmp, src) = setup(&tree);
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    let mut m = manifest_json(&arch);
    let newer = haypack_format::MANIFEST_VERSION + 1;
    m["version"] = newer.into();
    m["some_new_field"] = "from the future".into();
    fs::write(arch.join("manifest.json"), serde_json::to_vec_pretty(&m).expect("json")).expect("write");
    let msg = format!(
        "archive has format version {newer}, but this haypack reads versions up to {}; upgrade haypack",
        haypack_format::MANIFEST_VERSION
    );
    for cmd in [&["get", "a.txt"][..], &["ls"], &["info"], &["verify"]] {
        haypack()
            .arg(cmd[0])
            .arg(&arch)
            .args(&cmd[1..])
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::contains(msg.as_str()));
    }
    // Nor may an older haypack replace it, even when forced.
    haypack().args(["pack", "--force"]).arg(&src).arg(&arch).assert().code(1).stderr(predicate::str::contains(msg));
    assert_eq!(manifest_json(&arch), m);
}

/// Keys and contents of a crafted archive.
type Records<'a> = &'a [(&'a str, &'a [u8])];

/// Writes a one-pack archive by hand, whatever its keys (which `pack` could never produce).
fn craft_archive(dir: &Path, records: Records<'_>) {
    let container = Container::Zstd;
    let mtime = Timestamp { secs: 1_600_000_000, nanos: 0 };
    let mut pack = Vec::new();
    let mut entries = Vec::new();
    for (key, content) in records {
        let meta = RecordMeta { key: (*key).to_owned(), mtime, mode: 0o644, content_type: None };
        let (header, bytes) = encode_record(Compression::default(), meta, content).expect("encode record");
        entries.push(Entry {
            key: header.key,
            pack: 0,
            offset: pack.len() as u64,
            len: bytes.len() as u64,
            raw_len: header.raw_len,
            mtime,
            mode: 0o644,
            content_type: None,
        });
        pack.extend(bytes);
    }
    let payload = encode_block(&entries).expect("pack index");
    let framed = container.meta(Meta::Index, &payload);
    let footer = Footer {
        container,
        records: entries.len() as u64,
        index_offset: pack.len() as u64,
        index_len: framed.len() as u64,
        index_crc32c: crc32c::crc32c(&payload),
    };
    pack.extend(framed);
    pack.extend(footer.encode());

    let raw_bytes = entries.iter().map(|e| e.raw_len).sum();
    for e in &mut entries {
        e.pack = 1;
    }
    let block = encode_block(&entries).expect("index block");
    let manifest = Manifest {
        generation: 1,
        records: entries.len() as u64,
        raw_bytes,
        packs: vec![PackRef {
            id: 1,
            name: "packs/000001.hpk.zst".into(),
            size: pack.len() as u64,
            records: entries.len() as u64,
            raw_bytes,
            crc32c: Some(crc32c::crc32c(&pack)),
            dead_records: 0,
            dead_bytes: 0,
        }],
        index: IndexRef {
            objects: vec![IndexObject { name: "index/000001.hpi".into(), size: block.len() as u64 }],
            blocks: vec![BlockRef {
                object: 0,
                first_key: entries[0].key.clone(),
                offset: 0,
                len: block.len() as u64,
                head: 0,
                records: entries.len() as u64,
                crc32c: crc32c::crc32c(&block),
            }],
        },
        ..Manifest::empty("crafted by the haypack CLI tests")
    };
    fs::create_dir_all(dir.join("packs")).expect("mkdir");
    fs::create_dir_all(dir.join("index")).expect("mkdir");
    fs::write(dir.join("packs/000001.hpk.zst"), pack).expect("write pack");
    fs::write(dir.join("index/000001.hpi"), block).expect("write index");
    fs::write(dir.join("manifest.json"), manifest.to_json()).expect("write manifest");
}

#[test]
fn keys_that_would_escape_the_directory_are_not_extracted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The crafting itself is sound: a safe archive extracts.
    let safe = tmp.path().join("safe");
    craft_archive(&safe, &[("a.txt", b"fine"), ("b/c.txt", b"also fine")]);
    haypack().arg("-q").arg("verify").arg(&safe).assert().success();
    let x = tmp.path().join("x-safe");
    haypack().arg("-q").arg("extract").arg(&safe).arg(&x).assert().success();
    assert_eq!(fs::read(x.join("b/c.txt")).expect("extracted"), b"also fine");

    let cases: [(&str, Records<'_>); 5] = [
        ("dotdot", &[("../evil", b"escaped"), ("a.txt", b"innocent")]),
        ("late", &[("a.txt", b"innocent"), ("b/../../evil", b"escaped")]),
        ("absolute", &[("/tmp-evil", b"escaped"), ("a.txt", b"innocent")]),
        ("empty-part", &[("a.txt", b"innocent"), ("b//c", b"odd")]),
        ("dot", &[("a.txt", b"innocent"), ("b/./c", b"odd")]),
    ];
    for (name, records) in cases {
        let arch = tmp.path().join(name);
        craft_archive(&arch, records);
        // The archive is intact; only its keys are hostile.
        haypack().arg("-q").arg("verify").arg(&arch).assert().success();
        let bad = records.iter().map(|(k, _)| *k).find(|k| *k != "a.txt").expect("a bad key");

        let box_dir = tmp.path().join(format!("box-{name}"));
        let target = box_dir.join("target");
        haypack()
            .arg("extract")
            .arg(&arch)
            .arg(&target)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!("refusing to extract {bad:?}")))
            .stderr(predicate::str::contains("nothing was extracted"));
        assert!(!target.exists(), "{name}: the target is not even created");
        assert!(files_under(&box_dir).is_empty(), "{name}: nothing written beside the target");

        // Into an existing directory: it stays empty.
        fs::create_dir_all(&target).expect("mkdir");
        haypack().arg("extract").arg(&arch).arg(&target).assert().code(1);
        assert!(files_under(&box_dir).is_empty(), "{name}: {:?}", files_under(&box_dir));
    }
    assert!(!tmp.path().join("evil").exists() && !Path::new("/tmp-evil").exists());
}

// ---------------------------------------------------------------------------------------------
// Changing an archive

#[test]
fn add_rm_compact_and_gc_from_the_command_line() {
    let (tmp, src) = setup(&sample_tree());
    let arch = tmp.path().join("arch");
    pack_ok(&src, &arch, &["-q"]);
    let more = tmp.path().join("more");
    let mut extra = Tree::new();
    extra.insert("a.txt".into(), spec(b"replaced".to_vec(), 0o644, 1_700_000_000, 0));
    extra.insert("new/one.txt".into(), spec(b"one".to_vec(), 0o644, 1_700_000_000, 0));
    write_tree(&more, &extra);

    haypack()
        .arg("add")
        .arg(&arch)
        .arg(&more)
        .assert()
        .success()
        .stderr(predicate::str::contains("added 1 new and 1 replaced record(s)"))
        .stderr(predicate::str::contains("is now generation 2 (11 records)"));
    haypack().args(["add", "--prefix", "sub"]).arg(&arch).arg(&more).assert().success();
    assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg("a.txt")), b"replaced");
    assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg("sub/new/one.txt")), b"one");

    haypack()
        .arg("rm")
        .arg(&arch)
        .args(["README.md", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("holds no record \"nope\"; nothing was deleted"));
    haypack()
        .arg("rm")
        .arg(&arch)
        .args(["README.md", "--prefix", "sub/"])
        .assert()
        .success()
        .stderr(predicate::str::contains("deleted 3 record(s)"))
        .stderr(predicate::str::contains("run `haypack compact` to reclaim space"));
    haypack()
        .arg("get")
        .arg(&arch)
        .arg("README.md")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no record \"README.md\""));
    let keys: Vec<String> = ls_json(&arch).iter().map(|e| e["key"].as_str().expect("key").to_owned()).collect();
    assert!(!keys.iter().any(|k| k == "README.md" || k.starts_with("sub/")), "{keys:?}");
    assert_eq!(keys.len(), 10);

    let info = info_json(&arch);
    assert_eq!(info["generation"].as_u64(), Some(4));
    // README.md, the replaced a.txt (compressed) and the two records under sub/.
    assert!(info["dead_bytes"].as_u64().expect("dead") > 300, "{info}");
    let text = String::from_utf8(stdout_of(haypack().arg("info").arg(&arch))).expect("UTF-8");
    assert!(text.contains("packs/000001.hpk.zst") && text.contains("8 of 10 records live"), "{text}");

    haypack()
        .args(["compact", "--min-garbage", "0.005"])
        .arg(&arch)
        .assert()
        .success()
        // The first pack and the one whose records were all deleted; the other has no garbage.
        .stderr(predicate::str::contains("compacted 2 pack(s) into 1"))
        .stderr(predicate::str::contains("reclaimable by `haypack gc`"));
    haypack().arg("verify").arg(&arch).assert().success();
    assert_eq!(info_json(&arch)["dead_bytes"].as_u64(), Some(0));
    assert!(fs::metadata(arch.join("packs/000001.hpk.zst")).is_ok(), "retired, not yet deleted");
    haypack()
        .args(["gc", "--grace", "0s"])
        .arg(&arch)
        .assert()
        .success()
        // Two packs and the four index objects generations 1 to 4 used.
        .stderr(predicate::str::contains("deleted 6 object(s)"));
    assert!(fs::metadata(arch.join("packs/000001.hpk.zst")).is_err());
    assert_eq!(pack_files(&arch).len(), 2);
    haypack().arg("verify").arg(&arch).assert().success();
    assert_eq!(stdout_of(haypack().arg("get").arg(&arch).arg("a/b/noise.bin")), noise(40_000, 4));
    haypack()
        .args(["gc", "--grace", "soon"])
        .arg(&arch)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a duration"));
}

#[test]
fn a_dictionary_archive_reads_back_and_stock_zstd_reads_it_with_the_exported_dictionary() {
    let mut tree = Tree::new();
    for i in 0..120 {
        let json = format!(r#"{{"id": {i}, "user": "user-{}", "tags": ["a", "b"], "ok": true}}"#, i % 17);
        tree.insert(format!("rows/{i:04}.json"), spec(json.into_bytes(), 0o644, 1_600_000_000 + i, 0));
    }
    let (tmp, src) = setup(&tree);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    pack_ok(&src, &one, &["-q", "--dict"]);
    pack_ok(&src, &two, &["-q", "--dict=on"]);
    assert!(files_under(&one) == files_under(&two));
    for f in files_under(&one) {
        assert!(fs::read(one.join(&f)).expect("one") == fs::read(two.join(&f)).expect("two"), "{f:?} differs");
    }
    let info = String::from_utf8(stdout_of(haypack().arg("info").arg(&one))).expect("UTF-8");
    assert!(info.contains("dictionary   1 ("), "{info}");
    assert_eq!(stdout_of(haypack().arg("get").arg(&one).arg("rows/0042.json")), tree["rows/0042.json"].content);

    let dict = tmp.path().join("archive.zdict");
    haypack().args(["dict", "export"]).arg(&one).arg("-o").arg(&dict).assert().success();
    let concatenated: Vec<u8> = tree.values().flat_map(|s| s.content.clone()).collect();
    if have("zstd") {
        let pack = &pack_files(&one)[0];
        let out = std::process::Command::new("zstd").arg("-D").arg(&dict).arg("-dc").arg(pack).output().expect("zstd");
        assert!(out.status.success(), "zstd -D: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == concatenated, "zstd -D DICT -dc prints the files in key order");
        let plain = std::process::Command::new("zstd").arg("-dc").arg(pack).output().expect("zstd");
        assert!(!plain.status.success(), "without the dictionary stock zstd cannot decode the records");
    }

    // New records added later share the archive's dictionary.
    let more = tmp.path().join("more");
    let mut extra = Tree::new();
    extra.insert("rows/9999.json".into(), spec(br#"{"id": 9999, "user": "user-3", "ok": true}"#.to_vec(), 0o644, 0, 0));
    write_tree(&more, &extra);
    haypack().arg("-q").arg("add").arg(&one).arg(&more).assert().success();
    assert_eq!(stdout_of(haypack().arg("get").arg(&one).arg("rows/9999.json")), extra["rows/9999.json"].content);
    haypack().arg("-q").arg("verify").arg(&one).assert().success();

    // Too few files to learn from; and an archive without a dictionary has none to export.
    let (tmp2, few) = setup(&sample_tree());
    haypack()
        .args(["pack", "--dict"])
        .arg(&few)
        .arg(tmp2.path().join("a"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot train a dictionary"))
        .stderr(predicate::str::contains("at least 16 are needed"));
    pack_ok(&few, &tmp2.path().join("b"), &["-q", "--dict=auto"]);
    haypack()
        .args(["dict", "export"])
        .arg(tmp2.path().join("b"))
        .arg("-o")
        .arg(tmp2.path().join("d"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has no dictionary"));
}

//! `haypack export`: the tar stream it writes, read by GNU tar, restores exactly what `haypack
//! extract` does — contents, modes and mtimes to the nanosecond — for long keys and for records
//! large enough to stream too.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use assert_cmd::Command;

fn haypack() -> Command {
    let mut cmd = Command::cargo_bin("haypack").expect("the haypack binary is built");
    cmd.env_remove("HAYPACK_LOG");
    cmd
}

/// Fails the test unless GNU tar runs (the test is `#[ignore]`d in a bare `cargo test`).
fn need_tar() {
    let ok = std::process::Command::new("tar").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "GNU tar is needed: scripts/test.sh installs it");
}

/// Every file under `dir`: content, mode, mtime (seconds, nanoseconds).
fn files(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32, i64, i64)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let meta = e.metadata().unwrap();
            let key = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let content = std::fs::read(e.path()).unwrap();
            (key, (content, meta.permissions().mode() & 0o7777, meta.mtime(), meta.mtime_nsec()))
        })
        .collect()
}

fn untar(tar: &[u8], dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut child =
        std::process::Command::new("tar").arg("-x").arg("-C").arg(dir).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), tar).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

#[ignore = "needs tar: run with --include-ignored under scripts/test.sh"]
#[test]
fn export_piped_to_tar_restores_what_extract_does() {
    need_tar();
    let tmp = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sample");
    let archive = tmp.path().join("a.haypack");
    haypack().arg("pack").arg(&sample).arg(&archive).arg("-q").assert().success();
    let tar = haypack().arg("export").arg(&archive).arg("-q").assert().success().get_output().stdout.clone();
    untar(&tar, &tmp.path().join("from-tar"));
    haypack().arg("extract").arg(&archive).arg(tmp.path().join("extracted")).arg("-q").assert().success();
    let from_tar = files(&tmp.path().join("from-tar"));
    assert!(from_tar.len() > 100, "{} files", from_tar.len());
    assert_eq!(from_tar, files(&tmp.path().join("extracted")));

    // A prefix, to a file.
    let out = tmp.path().join("notes.tar");
    haypack().arg("export").arg(&archive).arg("notes/").arg("-o").arg(&out).arg("-q").assert().success();
    untar(&std::fs::read(&out).unwrap(), &tmp.path().join("notes"));
    let notes = files(&tmp.path().join("notes"));
    assert!(!notes.is_empty() && notes.keys().all(|k| k.starts_with("notes/")), "{:?}", notes.keys());
}

#[ignore = "needs tar: run with --include-ignored under scripts/test.sh"]
#[test]
fn long_keys_sub_second_mtimes_and_streamed_records_survive_the_trip() {
    need_tar();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let long = format!("{}/{}.txt", "deep".repeat(30), "name".repeat(40));
    let files_in: [(&str, Vec<u8>); 3] =
        [(&long, b"long".to_vec()), ("big.bin", haypack_testkit::noise(17 << 20, 3)), ("small.txt", b"small".to_vec())];
    for (i, (key, content)) in files_in.iter().enumerate() {
        let path = src.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000 + i as u64, 123_456_700 + i as u32);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(mtime).unwrap();
    }
    let archive = tmp.path().join("a.haypack");
    haypack().arg("pack").arg(&src).arg(&archive).arg("-q").assert().success();
    let tar = haypack().arg("export").arg(&archive).arg("-q").assert().success().get_output().stdout.clone();
    untar(&tar, &tmp.path().join("out"));
    assert_eq!(files(&tmp.path().join("out")), files(&src));
}

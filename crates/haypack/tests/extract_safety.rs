//! `extract` and `get -o` write only what they should, where they should: no setuid bit unless
//! asked, never through a link planted in the target, conflicts found before anything is
//! written, a full disk reported as a full disk; and `ls` prints keys as they are to a pipe.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn haypack() -> Command {
    let mut cmd = Command::cargo_bin("haypack").unwrap();
    cmd.env_remove("HAYPACK_LOG").env_remove("HAYPACK_FAULT_AFTER");
    cmd
}

fn write(dir: &Path, files: &[(&str, &[u8])]) {
    for (key, content) in files {
        let path = dir.join(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

/// Packs `files` into `tmp/arch`.
fn archive(tmp: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let (src, arch) = (tmp.join("src"), tmp.join("arch"));
    write(&src, files);
    haypack().args(["-q", "pack", "--codec", "stored"]).arg(&src).arg(&arch).assert().success();
    arch
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn special_bits_are_restored_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src, &[("setuid", b"#!/bin/sh\n"), ("setgid", b"x"), ("sticky", b"y"), ("plain", b"z")]);
    for (name, mode) in [("setuid", 0o4755), ("setgid", 0o2750), ("sticky", 0o1644), ("plain", 0o640)] {
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    let arch = tmp.path().join("arch");
    haypack().args(["-q", "pack"]).arg(&src).arg(&arch).assert().success();
    let mode = |dir: &Path, name: &str| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o7777;

    let out = tmp.path().join("out");
    haypack().args(["-q", "extract"]).arg(&arch).arg(&out).assert().success();
    let got: Vec<u32> = ["setuid", "setgid", "sticky", "plain"].iter().map(|n| mode(&out, n)).collect();
    assert_eq!(got, [0o755, 0o750, 0o644, 0o640]);

    let kept = tmp.path().join("kept");
    haypack().args(["-q", "extract", "--keep-special-bits"]).arg(&arch).arg(&kept).assert().success();
    let got: Vec<u32> = ["setuid", "setgid", "sticky", "plain"].iter().map(|n| mode(&kept, n)).collect();
    assert_eq!(got, [0o4755, 0o2750, 0o1644, 0o640]);
}

#[test]
fn a_link_planted_in_the_target_is_replaced_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = archive(tmp.path(), &[("a.txt", b"from the archive"), ("b.txt", b"bee")]);
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"precious").unwrap();

    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), out.join("a.txt")).unwrap();
    haypack().args(["-q", "extract"]).arg(&arch).arg(&out).assert().success();
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"precious");
    assert!(fs::symlink_metadata(out.join("a.txt")).unwrap().is_file());
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"from the archive");
    assert_eq!(files_under(&out), ["a.txt", "b.txt"], "no temporary file left");

    // `get -o` onto a link: the same.
    let target = tmp.path().join("got");
    std::os::unix::fs::symlink(outside.join("victim"), &target).unwrap();
    haypack().args(["-q", "get", "-o"]).arg(&target).arg(&arch).arg("b.txt").assert().success();
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"precious");
    assert_eq!(fs::read(&target).unwrap(), b"bee");
    assert_eq!(files_under(&outside), ["victim"]);
}

#[test]
fn a_linked_parent_in_the_target_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = archive(tmp.path(), &[("a.txt", b"first in key order"), ("sub/x", b"would escape")]);
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("sub")).unwrap();
    haypack().arg("extract").arg(&arch).arg(&out).assert().code(1).stderr(predicate::str::contains(format!(
        "refusing to write {}: a file or symbolic link stands where a directory is needed; nothing was extracted",
        out.join("sub").display()
    )));
    assert!(files_under(&outside).is_empty());
    assert_eq!(files_under(&out), ["sub"], "a.txt, first in key order, was not written either");
}

#[test]
fn a_key_that_is_another_keys_directory_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = archive(tmp.path(), &[("0-first", b"0"), ("a", b"a file")]);
    // `add` can put `a/b` beside the file `a`: an archive may hold both.
    let more = tmp.path().join("more");
    write(&more, &[("a/b", b"below a")]);
    haypack().args(["-q", "add"]).arg(&arch).arg(&more).assert().success();
    let out = tmp.path().join("out");
    haypack().arg("extract").arg(&arch).arg(&out).assert().code(1).stderr(predicate::str::contains(
        r#"refusing to extract "a/b": "a" is a record too, so it cannot also be a directory; nothing was extracted"#,
    ));
    assert!(!out.exists(), "not even the target directory was made");
    // Each extracts on its own.
    haypack().args(["-q", "extract"]).arg(&arch).arg(&out).arg("a/").assert().success();
    assert_eq!(files_under(&out), ["a/b"]);
}

#[test]
fn a_directory_where_a_file_goes_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = archive(tmp.path(), &[("a.txt", b"a"), ("z", b"z")]);
    let out = tmp.path().join("out");
    fs::create_dir_all(out.join("z")).unwrap();
    haypack()
        .arg("extract")
        .arg(&arch)
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("a directory stands where the file goes; nothing was extracted"));
    assert!(files_under(&out).is_empty());
}

/// A tmpfs of `kib` KiB mounted on a new directory, unmounted on drop; `None` where this
/// process may not mount (not root): the test then says so and checks nothing.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(kib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("note: cannot mount a tmpfs here (not root?); skipping the full-disk check");
            return None;
        }
        Some(Tmpfs(dir.path().to_owned(), dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_reported_as_a_failed_write_not_a_bad_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let small = haypack_testkit::noise(300 << 10, 1);
    // Above the 16 MiB a record is read whole: this one streams into its file.
    let large = haypack_testkit::noise(17 << 20, 2);
    let arch = archive(tmp.path(), &[("large.bin", &large), ("small.bin", &small)]);
    let Some(disk) = Tmpfs::mount(128) else { return };
    for prefix in ["large", "small"] {
        let out = disk.0.join(prefix);
        haypack()
            .arg("extract")
            .arg(&arch)
            .arg(&out)
            .arg(prefix)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!("writing {}/.{prefix}.bin.", out.display())))
            .stderr(predicate::str::contains("No space left on device"))
            .stderr(predicate::str::contains("cannot read").not())
            .stderr(predicate::str::contains("corrupt").not());
        assert!(files_under(&out).is_empty(), "{prefix}: the temporary file is gone");
    }
    let target = disk.0.join("got.bin");
    haypack()
        .args(["get", "-o"])
        .arg(&target)
        .arg(&arch)
        .arg("small.bin")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("writing the temporary file {}/.got.bin.", disk.0.display())))
        .stderr(predicate::str::contains("No space left on device"));
    assert!(files_under(&disk.0).iter().all(|f| !f.contains("got.bin")));
    haypack().args(["-q", "verify"]).arg(&arch).assert().success();
}

#[test]
fn ls_writes_keys_as_they_are_to_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let key = "red\u{1b}[31m\rnot red";
    let arch = archive(tmp.path(), &[(key, b"x")]);
    let out = haypack().arg("ls").arg(&arch).output().unwrap();
    assert_eq!(out.stdout, format!("{key}\n").into_bytes(), "a pipe gets the key's bytes");
    let out = haypack().args(["ls", "--json"]).arg(&arch).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains(r#""key":"red\u001b[31m\rnot red""#));
}

#[test]
fn a_full_temporary_directory_while_packing_is_not_an_unreadable_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // Above the 8 MiB a file is read whole: this one streams through a temporary file.
    write(&src, &[("big.bin", &haypack_testkit::noise(9 << 20, 3)), ("small.txt", b"small")]);
    let Some(disk) = Tmpfs::mount(1024) else { return };
    // Not skipped as unreadable: the run stops, and says why.
    haypack()
        .args(["pack", "--skip-unreadable"])
        .arg(&src)
        .arg(tmp.path().join("arch"))
        .env("TMPDIR", &disk.0)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "temporary file for {}: No space left on device",
            src.join("big.bin").display()
        )))
        .stderr(predicate::str::contains("cannot read").not());
    assert!(!tmp.path().join("arch/manifest.json").exists());
}

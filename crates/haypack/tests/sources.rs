//! `pack` and `add` from sources other than a directory, through the binary: a tar stream on
//! standard input gives the keys packing the directory gives, compressed tars and zip files pack
//! as they are, and a truncated stream commits nothing.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::path::Path;
use std::process::{Command as Std, Stdio};

use assert_cmd::Command;
use predicates::prelude::*;

fn haypack() -> Command {
    let mut cmd = Command::cargo_bin("haypack").unwrap();
    cmd.env_remove("HAYPACK_LOG").arg("-q");
    cmd
}

/// A small tree: nested directories, an empty file, a long name, an executable.
fn tree(dir: &Path) {
    let long = format!("deep/{}/file.txt", "n".repeat(120));
    for (key, content) in [("a.txt", "alpha\n"), ("b/c.json", "{\"c\": 1}\n"), ("b/empty", ""), (long.as_str(), "long")]
    {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content.repeat(50)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("a.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn keys(arch: &Path) -> String {
    String::from_utf8(haypack().arg("ls").arg(arch).output().unwrap().stdout).unwrap()
}

/// The archive extracted, compared with `src` file by file (`diff -r`).
fn assert_holds(arch: &Path, src: &Path) {
    haypack().arg("verify").arg(arch).assert().success();
    let out = tempfile::tempdir().unwrap();
    haypack().arg("extract").arg(arch).arg(out.path()).assert().success();
    let diff = Std::new("diff").arg("-r").arg(src).arg(out.path()).output().unwrap();
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));
}

#[test]
fn a_tar_on_standard_input_packs_as_its_directory_does() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    let from_dir = tmp.path().join("from-dir");
    haypack().arg("pack").arg(&src).arg(&from_dir).assert().success();

    let tar = Std::new("tar").arg("-cf").arg("-").arg("-C").arg(&src).arg(".").output().unwrap();
    assert!(tar.status.success());
    let from_tar = tmp.path().join("from-tar");
    haypack().arg("pack").arg("-").arg(&from_tar).write_stdin(tar.stdout).assert().success();
    assert_eq!(keys(&from_tar), keys(&from_dir));
    assert_holds(&from_tar, &src);
    let mode = |arch: &Path| {
        let out = haypack().args(["ls", "--json"]).arg(arch).arg("a.txt").output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["mode"].clone()
    };
    assert_eq!(mode(&from_tar), mode(&from_dir));
}

#[test]
fn compressed_tars_and_zip_files_pack_without_extracting() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    for (flag, name) in [("--zstd", "t.tar.zst"), ("-z", "t.tar.gz")] {
        let file = tmp.path().join(name);
        let ok = Std::new("tar").arg(flag).arg("-cf").arg(&file).arg("-C").arg(&src).arg(".").status().unwrap();
        assert!(ok.success());
        let arch = tmp.path().join(format!("arch-{name}"));
        haypack().arg("pack").arg(&file).arg(&arch).assert().success();
        assert_holds(&arch, &src);
    }

    // A zip made by Python's zipfile, added under a prefix to an archive.
    let zip = tmp.path().join("z.zip");
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    z.writestr('x/y.txt', 'why' * 100)\n";
    assert!(Std::new("python3").arg("-c").arg(script).arg(&zip).status().unwrap().success());
    let arch = tmp.path().join("arch-t.tar.zst");
    haypack().arg("add").arg(&arch).arg(&zip).args(["--prefix", "zipped"]).assert().success();
    haypack().arg("get").arg(&arch).arg("zipped/x/y.txt").assert().success().stdout("why".repeat(100));
}

#[test]
fn a_truncated_stream_commits_nothing_and_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src);
    // Incompressible content, so that cutting the gzip stream cuts a member's content.
    std::fs::write(src.join("noise.bin"), haypack_testkit::noise(256 << 10, 7)).unwrap();
    let gz = Std::new("tar").arg("-czf").arg("-").arg("-C").arg(&src).arg(".").stdout(Stdio::piped()).output().unwrap();
    let cut = &gz.stdout[..gz.stdout.len() * 2 / 3];
    let arch = tmp.path().join("arch");
    haypack()
        .arg("pack")
        .arg("-")
        .arg(&arch)
        .write_stdin(cut.to_vec())
        .assert()
        .failure()
        .stderr(predicate::str::contains("truncated").or(predicate::str::contains("unexpected end")));
    assert!(!arch.join("manifest.json").exists());
    let left = std::fs::read_dir(arch.join("packs")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a failed pack leaves nothing behind");
}

#[test]
fn a_stream_learns_its_dictionary_from_its_first_records_and_loses_none() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // Small JSON records, then one too large to sample (it ends the sample and waits in a
    // temporary file), then more small ones.
    for (dir, range) in [("first", 0..300), ("then", 300..400)] {
        std::fs::create_dir_all(src.join(dir)).unwrap();
        for i in range {
            let body = format!(
                "{{\"id\": {i}, \"name\": \"product {i}\", \"price\": {}.{:02}, \"tags\": [\"t{}\", \"t{}\"], \"stock\": {}}}\n",
                i * 7 % 500,
                i % 100,
                i % 13,
                i % 29,
                i * 31 % 1000
            );
            std::fs::write(src.join(format!("{dir}/{i:05}.json")), body.repeat(4)).unwrap();
        }
    }
    std::fs::write(src.join("big.bin"), haypack_testkit::noise(12 << 20, 5)).unwrap();
    let tar =
        Std::new("tar").arg("-cf").arg("-").arg("-C").arg(&src).args(["first", "big.bin", "then"]).output().unwrap();
    assert!(tar.status.success());

    let info = |arch: &Path| -> serde_json::Value {
        serde_json::from_slice(&haypack().args(["info", "--json"]).arg(arch).output().unwrap().stdout).unwrap()
    };
    let (with, without) = (tmp.path().join("with"), tmp.path().join("without"));
    haypack().args(["pack", "--dict=on", "-"]).arg(&with).write_stdin(tar.stdout.clone()).assert().success();
    haypack().args(["pack", "-"]).arg(&without).write_stdin(tar.stdout).assert().success();
    assert_holds(&with, &src);
    let (with, without) = (info(&with), info(&without));
    assert!(with["dictionary_bytes"].as_u64().unwrap() > 0, "{with}");
    assert_eq!(with["records"], 401);
    // The dictionary pays: the small records store smaller than without it.
    let small = |i: &serde_json::Value| i["stored_bytes"].as_u64().unwrap() - (12 << 20);
    assert!(small(&with) < small(&without), "{} against {}", small(&with), small(&without));
}

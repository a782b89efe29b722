//! Many writers, one commit, through the binary: processes packing parts of a tree at once
//! with `pack --segment-out`, then `haypack commit`; bad segment files; and a commit stopped
//! after each of its durable steps.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn haypack() -> Command {
    let mut cmd = Command::cargo_bin("haypack").unwrap();
    cmd.env_remove("HAYPACK_LOG").env_remove("HAYPACK_FAULT_AFTER").arg("-q");
    cmd
}

/// Writes `n` files under `dir/part`, each named and filled after its number.
fn part(dir: &Path, part: usize, n: usize) {
    for i in 0..n {
        let path = dir.join(format!("part{part}/{:03}/{i:04}.txt", i % 7));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("part {part}, file {i}\n").repeat(i % 50 + 1)).unwrap();
    }
}

/// Every record of the archive, after a verify that passes: extracted and compared to `src`.
fn assert_holds(arch: &Path, src: &Path) {
    haypack().arg("verify").arg(arch).assert().success();
    let out = tempfile::tempdir().unwrap();
    haypack().arg("extract").arg(arch).arg(out.path()).assert().success();
    let diff = std::process::Command::new("diff").arg("-r").arg(src).arg(out.path()).output().unwrap();
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));
}

/// `haypack pack SRC ARCH --segment-out SEG`, started.
fn pack_segment(src: &Path, arch: &Path, seg: &Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("haypack"))
        .args(["-q", "pack", "--pack-size", "16K"])
        .arg(src)
        .arg(arch)
        .arg("--segment-out")
        .arg(seg)
        .spawn()
        .unwrap()
}

#[test]
fn four_processes_pack_segments_at_once_and_one_commit_lands_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (all, arch) = (tmp.path().join("all"), tmp.path().join("arch"));
    // Each process packs one part (its keys start with `partN/`); `all` holds them together.
    for p in 0..4 {
        part(&all, p, 150);
        part(&tmp.path().join(format!("only{p}")), p, 150);
    }
    let segs: Vec<_> = (0..4).map(|p| tmp.path().join(format!("seg{p}.json"))).collect();
    let children: Vec<_> =
        (0..4).map(|p| pack_segment(&tmp.path().join(format!("only{p}")), &arch, &segs[p])).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // Nothing is committed before `commit`.
    haypack().arg("info").arg(&arch).assert().failure();
    haypack().arg("commit").arg(&arch).args(&segs).assert().success();
    assert_holds(&arch, &all);
    // Committing them again adds nothing.
    let before = std::fs::read(arch.join("manifest.json")).unwrap();
    haypack().arg("commit").arg(&arch).args(&segs).assert().success();
    assert_eq!(std::fs::read(arch.join("manifest.json")).unwrap(), before);
}

#[test]
fn pack_refuses_to_write_over_segments_not_yet_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let (arch, seg, other) = (tmp.path().join("arch"), tmp.path().join("seg.json"), tmp.path().join("other"));
    part(tmp.path(), 0, 40);
    part(&other, 1, 40);
    assert!(pack_segment(&tmp.path().join("part0"), &arch, &seg).wait().unwrap().success());
    let objects = |dir: &Path| {
        walkdir::WalkDir::new(dir).into_iter().filter(|e| e.as_ref().unwrap().file_type().is_file()).count()
    };
    let before = objects(&arch);

    // Another writer's segment is not the leftovers of an interrupted pack: refused, kept.
    haypack()
        .arg("pack")
        .arg(&other)
        .arg(&arch)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("objects of segments not yet committed"))
        .stderr(predicate::str::contains("hint: commit them with `haypack commit"));
    assert_eq!(objects(&arch), before, "the segment's objects are untouched");
    haypack().arg("commit").arg(&arch).arg(&seg).assert().success();
    assert_holds(&arch, &tmp.path().join("part0"));
}

#[test]
fn one_key_in_two_segments_is_refused_unless_the_last_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = tmp.path().join("arch");
    let segs: Vec<_> = (0..2).map(|p| tmp.path().join(format!("seg{p}.json"))).collect();
    for (p, seg) in segs.iter().enumerate() {
        let dir = tmp.path().join(format!("src{p}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("same.txt"), format!("from {p}")).unwrap();
        assert!(pack_segment(&dir, &arch, seg).wait().unwrap().success());
    }
    haypack()
        .arg("commit")
        .arg(&arch)
        .args(&segs)
        .assert()
        .failure()
        .stderr(predicates::str::contains("\"same.txt\" was written twice"));
    haypack().arg("commit").args(["--duplicates", "keep-last"]).arg(&arch).args(&segs).assert().success();
    haypack().arg("get").arg(&arch).arg("same.txt").assert().success().stdout("from 1");
}

#[test]
fn bad_segment_files_are_refused_with_their_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, arch, other) = (tmp.path().join("src"), tmp.path().join("arch"), tmp.path().join("other"));
    part(&src, 0, 10);
    let seg = tmp.path().join("seg.json");
    haypack().arg("pack").arg(&src).arg(&arch).arg("--segment-out").arg(&seg).assert().success();

    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"format\": \"haypack-segment\", \"version\": 1}").unwrap();
    haypack()
        .arg("commit")
        .arg(&arch)
        .arg(&bad)
        .assert()
        .failure()
        .stderr(predicates::str::contains("reading the segment").and(predicates::str::contains("bad.json")));
    std::fs::write(&bad, "not json").unwrap();
    haypack().arg("commit").arg(&arch).arg(&bad).assert().failure().stderr(predicates::str::contains("not JSON"));

    haypack()
        .arg("commit")
        .arg(&other)
        .arg(&seg)
        .assert()
        .failure()
        .stderr(predicates::str::contains("was written for").and(predicates::str::contains("nothing was committed")));
    assert!(!other.join("manifest.json").exists());
    haypack().arg("commit").arg(&arch).arg(&seg).assert().success();
    assert_holds(&arch, &src);
}

#[test]
fn a_commit_stopped_after_any_step_leaves_the_old_generation_or_the_new() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, more) = (tmp.path().join("src"), tmp.path().join("more"));
    part(&src, 0, 40);
    part(&more, 1, 40);
    for step in 1.. {
        let arch = tmp.path().join(format!("arch{step}"));
        haypack().arg("pack").arg(&src).arg(&arch).assert().success();
        let seg = tmp.path().join(format!("seg{step}.json"));
        haypack()
            .args(["pack", "--pack-size", "8K"])
            .arg(&more)
            .arg(&arch)
            .arg("--segment-out")
            .arg(&seg)
            .assert()
            .success();
        let run =
            haypack().arg("commit").arg(&arch).arg(&seg).env("HAYPACK_FAULT_AFTER", step.to_string()).output().unwrap();
        let info = |arch: &Path| -> u64 {
            let out = haypack().arg("info").arg("--json").arg(arch).output().unwrap();
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["records"].as_u64().unwrap()
        };
        haypack().arg("verify").arg(&arch).assert().success();
        if run.status.success() {
            assert_eq!(info(&arch), 80);
            assert!(step > 1, "the commit has durable steps");
            return;
        }
        assert_eq!(run.status.code(), None, "step {step}: aborted, not failed: {run:?}");
        match info(&arch) {
            40 => {
                // The old generation: the same segment commits on a second try.
                haypack().arg("commit").arg(&arch).arg(&seg).assert().success();
                assert_eq!(info(&arch), 80);
            }
            n => assert_eq!(n, 80, "step {step}"),
        }
    }
}

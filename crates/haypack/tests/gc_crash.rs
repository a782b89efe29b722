//! A `gc` that retires leftovers and deletes them, stopped after each of its durable steps (the
//! hidden `HAYPACK_FAULT_AFTER=N` switch aborts the process there): the archive always verifies
//! and holds every record, and gc run again finishes the job.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::path::Path;

use assert_cmd::Command;

fn haypack() -> Command {
    let mut cmd = Command::cargo_bin("haypack").unwrap();
    cmd.env_remove("HAYPACK_LOG").env_remove("HAYPACK_FAULT_AFTER").arg("-q");
    cmd
}

/// Every key and its content, after checking that the archive verifies.
fn records(arch: &Path) -> Vec<(String, Vec<u8>)> {
    haypack().arg("verify").arg(arch).assert().success();
    let keys = haypack().arg("ls").arg(arch).output().unwrap().stdout;
    (String::from_utf8(keys).unwrap().lines())
        .map(|k| (k.to_owned(), haypack().arg("get").arg(arch).arg(k).output().unwrap().stdout))
        .collect()
}

fn objects(arch: &Path) -> Vec<String> {
    let mut out: Vec<String> = ["packs", "index"]
        .iter()
        .flat_map(|d| std::fs::read_dir(arch.join(d)).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    out.sort();
    out
}

#[test]
fn gc_of_leftovers_survives_a_crash_at_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i:02}")), format!("record {i}\n").repeat(30)).unwrap();
    }
    let base = tmp.path().join("base");
    haypack().args(["pack", "--pack-size", "4K"]).arg(&src).arg(&base).assert().success();
    let before = (records(&base), objects(&base));
    let junk = ["packs/000077-left.hpk.zst", "packs/000078-left.hpk.zst", "index/000009-left.hpi"];
    for name in junk {
        std::fs::write(base.join(name), b"left by a writer that never committed").unwrap();
    }
    let mut crashed = 0;
    for step in 1.. {
        let arch = tmp.path().join(format!("arch-{step}"));
        std::fs::create_dir_all(arch.join("packs")).unwrap();
        std::fs::create_dir_all(arch.join("index")).unwrap();
        for name in std::iter::once("manifest.json".to_owned()).chain(
            objects(&base).iter().map(|n| format!("{}/{n}", if n.ends_with(".hpi") { "index" } else { "packs" })),
        ) {
            std::fs::copy(base.join(&name), arch.join(&name)).unwrap();
        }
        let mut run = haypack();
        let run = run.args(["gc", "--grace", "0s"]).arg(&arch).env("HAYPACK_FAULT_AFTER", step.to_string()).output();
        let run = run.unwrap();
        assert_eq!(records(&arch), before.0, "stopped after step {step}: every record reads");
        if run.status.success() {
            assert_eq!(objects(&arch), before.1, "a complete run leaves only what the archive names");
            break;
        }
        assert_eq!(run.status.code(), None, "step {step}: aborted, not failed: {run:?}");
        crashed += 1;
        haypack().args(["gc", "--grace", "0s"]).arg(&arch).assert().success();
        assert_eq!((records(&arch), objects(&arch)), before.clone(), "gc run again after step {step}");
    }
    assert!(crashed >= 5, "the retirement, three deletes and the commit: {crashed} steps");
}

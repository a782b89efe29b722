//! Crash safety of every command that changes an archive: `add`, `rm`, `compact` and `gc` are
//! stopped after each of their durable steps in turn (the hidden `HAYPACK_FAULT_AFTER=N` switch
//! aborts the process there) and killed with SIGKILL at moments in between. Each time the
//! archive must open at exactly the old or the new generation, verify, hold exactly the old or the
//! new records, and the command run again must complete.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::Command;

type Records = BTreeMap<String, Vec<u8>>;
/// Records as key and CRC: what is compared, so that a failure prints something readable.
type Digest = BTreeMap<String, u32>;

fn digest(records: &Records) -> Digest {
    records.iter().map(|(k, v)| (k.clone(), crc32c::crc32c(v))).collect()
}

fn haypack() -> Command {
    let mut cmd = Command::cargo_bin("haypack").unwrap();
    cmd.env_remove("HAYPACK_LOG").env_remove("HAYPACK_FAULT_AFTER").arg("-q");
    cmd
}

fn write_records(dir: &Path, records: &Records) {
    for (k, v) in records {
        let path = dir.join(k);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, v).unwrap();
    }
}

/// `n` records of a few KB, distinct enough not to compress to nothing.
fn records(prefix: &str, n: usize, seed: usize) -> Records {
    (0..n)
        .map(|i| (format!("{prefix}{i:04}"), format!("{} {i} {seed}\n", "x".repeat(i % 97)).repeat(40).into_bytes()))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The archive's generation and records, after checking that it verifies.
fn state(arch: &Path) -> (u64, Digest) {
    haypack().arg("verify").arg(arch).assert().success();
    let info: serde_json::Value =
        serde_json::from_slice(&haypack().arg("info").arg("--json").arg(arch).output().unwrap().stdout).unwrap();
    let out = tempfile::tempdir().unwrap();
    haypack().arg("extract").arg(arch).arg(out.path()).assert().success();
    let mut records = Digest::new();
    for entry in walkdir::WalkDir::new(out.path()) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let key = entry.path().strip_prefix(out.path()).unwrap().to_str().unwrap().to_owned();
            records.insert(key, crc32c::crc32c(&std::fs::read(entry.path()).unwrap()));
        }
    }
    (info["generation"].as_u64().unwrap(), records)
}

/// Runs `args` (a command changing the archive, which `{}` in `args` names) on copies of `base`,
/// stopped after step 1, 2, ... until a run completes; checks each survivor as the file says.
fn crash_at_every_step(base: &Path, args: &[&str], new: &Records) -> usize {
    let (old_gen, old) = state(base);
    let new = &digest(new);
    for step in 1.. {
        let tmp = tempfile::tempdir().unwrap();
        let arch = tmp.path().join("arch");
        copy_dir(base, &arch);
        let with_arch = |args: &[&str]| -> Vec<String> {
            args.iter().map(|a| if *a == "{}" { arch.display().to_string() } else { (*a).to_owned() }).collect()
        };
        let run = haypack().args(with_arch(args)).env("HAYPACK_FAULT_AFTER", step.to_string()).output().unwrap();
        if run.status.success() {
            assert_eq!(state(&arch), (old_gen + 1, new.clone()), "{args:?} ran to the end");
            return step - 1;
        }
        assert_eq!(run.status.code(), None, "{args:?} step {step}: aborted, not failed: {run:?}");
        let (generation, records) = state(&arch);
        if generation == old_gen {
            assert_eq!(&records, &old, "{args:?} stopped after step {step}: the old generation, whole");
            haypack().args(with_arch(args)).assert().success();
            assert_eq!(state(&arch), (old_gen + 1, new.clone()), "{args:?} rerun after step {step}");
        } else {
            assert_eq!((generation, &records), (old_gen + 1, new), "{args:?} stopped after step {step}");
        }
    }
    unreachable!()
}

/// An archive of 3 packs and the records in it.
fn base(tmp: &Path) -> (PathBuf, Records) {
    let src = tmp.join("src");
    let recs = records("r", 60, 0);
    write_records(&src, &recs);
    let arch = tmp.join("base");
    haypack().args(["pack", "--codec", "stored", "--pack-size", "64K"]).arg(&src).arg(&arch).assert().success();
    (arch, recs)
}

#[test]
fn add_survives_a_crash_at_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (arch, mut recs) = base(tmp.path());
    // New keys and replaced ones, enough for several new packs.
    let more = records("r", 90, 1).into_iter().skip(30).collect::<Records>();
    let more_dir = tmp.path().join("more");
    write_records(&more_dir, &more);
    recs.extend(more);
    let more_arg = more_dir.display().to_string();
    let steps = crash_at_every_step(&arch, &["add", "--codec", "stored", "--pack-size", "64K", "{}", &more_arg], &recs);
    assert!(steps >= 4, "several packs, the index and the commit: {steps} steps");
}

#[test]
fn rm_and_compact_and_gc_survive_a_crash_at_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (arch, mut recs) = base(tmp.path());
    let doomed: Vec<String> = (0..60).step_by(3).map(|i| format!("r{i:04}")).collect();
    for k in &doomed {
        recs.remove(k);
    }
    let mut rm: Vec<&str> = vec!["rm", "{}"];
    rm.extend(doomed.iter().map(String::as_str));
    crash_at_every_step(&arch, &rm, &recs);

    // Compact the archive the rm left, then gc what compaction retired.
    haypack().args(rm.iter().map(|a| if *a == "{}" { arch.to_str().unwrap() } else { a })).assert().success();
    let compact = ["compact", "--min-garbage", "0.1", "--pack-size", "64K", "{}"];
    let steps = crash_at_every_step(&arch, &compact, &recs);
    assert!(steps >= 3, "new packs, the index and the commit: {steps} steps");
    haypack().args(&compact[..5]).arg(&arch).assert().success();
    let steps = crash_at_every_step(&arch, &["gc", "--grace", "0s", "{}"], &recs);
    assert!(steps >= 4, "old packs and index objects deleted, then the commit: {steps} steps");
}

#[test]
fn add_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let (arch, mut recs) = base(tmp.path());
    let more = records("big/", 3000, 2);
    let more_dir = tmp.path().join("more");
    write_records(&more_dir, &more);
    recs.extend(more);
    let (old_gen, old) = state(&arch);
    let recs = digest(&recs);
    // Killed once the run has started its 1st, 10th and 50th new pack (of about 100): the
    // archive is polled, not the clock, so the kill lands mid-run on any machine.
    let packs = |arch: &Path| std::fs::read_dir(arch.join("packs")).map_or(0, |d| d.count());
    let before = packs(&arch);
    for started in [1, 10, 50] {
        let copy = tempfile::tempdir().unwrap();
        let target = copy.path().join("arch");
        copy_dir(&arch, &target);
        let bin = assert_cmd::cargo::cargo_bin("haypack");
        let mut child = std::process::Command::new(bin)
            .args(["-q", "add", "--codec", "stored", "--pack-size", "64K"])
            .arg(&target)
            .arg(&more_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while packs(&target) < before + started {
            assert!(child.try_wait().unwrap().is_none(), "the add ended before its pack {started}");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let (generation, records) = state(&target);
        if generation == old_gen {
            assert_eq!(records, old, "killed at pack {started}: the old generation, whole");
            haypack().arg("add").arg(&target).arg(&more_dir).assert().success();
        }
        assert_eq!(state(&target), (old_gen + 1, recs.clone()), "killed at pack {started}, then rerun");
        haypack().args(["gc", "--grace", "0s"]).arg(&target).assert().success();
        assert_eq!(state(&target).1, recs, "gc after a kill removes only leftovers");
    }
}

/// A `pack --dict` that wrote everything but its manifest: the next run takes up its objects,
/// the dictionary among them, rather than refusing a directory of someone else's.
#[test]
fn a_pack_with_a_dictionary_resumes_over_what_it_left() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_records(&src, &records("r", 300, 0));
    let arch = tmp.path().join("arch");
    let pack = || haypack().args(["pack", "--dict=on"]).arg(&src).arg(&arch).assert().success();
    pack();
    assert!(arch.join("index/dict-000001.zdict").is_file(), "the dictionary is an object of its own");
    std::fs::remove_file(arch.join("manifest.json")).unwrap();
    pack();
    haypack().arg("verify").arg(&arch).assert().success();
}

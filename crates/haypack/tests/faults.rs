//! A server that dies in the middle of an upload: the push fails clearly, and once the server is
//! back, running it again completes with identical data and nothing left billing. Runs against a
//! Garage of its own, since it kills it.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::path::Path;
use std::process::{Child, Stdio};

use assert_cmd::Command;
use common::{GarageNode, start_servers, wait_until};
use predicates::prelude::*;

/// A private Garage: its settings, and the running server.
struct Garage {
    env: Vec<(String, String)>,
    node: GarageNode,
}

impl Garage {
    /// A Garage of the test's own.
    fn start(dir: &Path) -> Self {
        let vars = start_servers("garage", dir);
        let get = |k: &str| vars[k].clone();
        Garage {
            env: vec![
                ("AWS_ENDPOINT_URL".into(), get("HAYPACK_TEST_GARAGE_ENDPOINT")),
                ("AWS_ACCESS_KEY_ID".into(), get("HAYPACK_TEST_GARAGE_KEY_ID")),
                ("AWS_SECRET_ACCESS_KEY".into(), get("HAYPACK_TEST_GARAGE_SECRET")),
                ("AWS_REGION".into(), get("HAYPACK_TEST_GARAGE_REGION")),
                ("XDG_CACHE_HOME".into(), dir.join("cache").display().to_string()),
            ],
            node: GarageNode::new(
                get("HAYPACK_TEST_GARAGE_ENDPOINT"),
                get("HAYPACK_TEST_GARAGE_CONFIG"),
                get("HAYPACK_TEST_GARAGE_PID").parse().unwrap(),
            ),
        }
    }

    fn options(&self) -> haypack_s3::S3Options {
        let var = |k: &str| self.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
        haypack_s3::S3Options {
            endpoint_url: Some(self.node.endpoint.clone()),
            region: Some(var("AWS_REGION")),
            credentials: Some((var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))),
            ..haypack_s3::S3Options::default()
        }
    }

    /// Waits until the first pack of the archive at `url` is complete on the server, while
    /// `child` (writing it) still runs.
    fn wait_for_first_pack(&self, url: &str, child: &mut Child) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = runtime.block_on(haypack_s3::S3Store::connect(url, self.options())).unwrap();
        wait_until("the first pack", || {
            assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
            !runtime.block_on(haypack_store::Store::list(&store, "packs/")).unwrap().is_empty()
        });
    }

    fn haypack(&self) -> Command {
        let mut cmd = Command::cargo_bin("haypack").unwrap();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v))).arg("--quiet");
        cmd
    }
}

use haypack_testkit::noise;

#[ignore = "needs Garage: run with --include-ignored under scripts/test.sh"]
#[test]
fn a_push_interrupted_by_a_dead_server_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut garage = Garage::start(dir.path());

    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..4u64 {
        std::fs::write(src.join(format!("blob-{i}.bin")), noise(48 << 20, i + 1)).unwrap();
    }
    std::fs::write(src.join("small.txt"), "a small file\n").unwrap();
    let local = dir.path().join("local");
    garage.haypack().args(["pack", "--pack-size", "50M"]).arg(&src).arg(&local).assert().success();

    let url = "s3://haypack-test/interrupted";
    let mut push = std::process::Command::new(assert_cmd::cargo::cargo_bin("haypack"));
    push.envs(garage.env.iter().map(|(k, v)| (k, v)))
        .args(["--quiet", "--s3-part-size", "5M", "--s3-concurrency", "1", "push", "--jobs", "1"])
        .arg(&local)
        .arg(url)
        .stderr(Stdio::piped());
    let mut child = push.spawn().unwrap();
    // Kill the server once the first pack is complete on it, with the others still to go.
    garage.wait_for_first_pack(url, &mut child);
    garage.node.kill();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the push should have failed when the server died");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pushing") && stderr.contains(url), "unclear error: {stderr}");

    garage.node.restart();
    garage.haypack().args(["uploads", url]).assert().success(); // lists what was left, if anything
    garage.haypack().arg("push").arg(&local).arg(url).assert().success();
    garage.haypack().args(["verify", url]).assert().success();
    let expected = std::fs::read(src.join("blob-2.bin")).unwrap();
    garage.haypack().args(["get", url, "blob-2.bin"]).assert().success().stdout(predicate::eq(expected));
    // The interrupted upload was aborted by the successful run: nothing left billing.
    garage.haypack().args(["uploads", url]).assert().success().stdout("");
}

#[ignore = "needs Garage: run with --include-ignored under scripts/test.sh"]
#[test]
fn a_pack_to_s3_killed_mid_run_resumes_without_resending() {
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::start(dir.path());
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..4u64 {
        std::fs::write(src.join(format!("blob-{i}.bin")), noise(24 << 20, i + 7)).unwrap();
    }
    std::fs::write(src.join("small.txt"), "a small file\n").unwrap();

    let url = "s3://haypack-test/killed";
    let mut pack = std::process::Command::new(assert_cmd::cargo::cargo_bin("haypack"));
    pack.envs(garage.env.iter().map(|(k, v)| (k, v)))
        .args(["--quiet", "--s3-part-size", "5M", "--s3-concurrency", "1", "pack", "--pack-size", "20M"])
        .arg(&src)
        .arg(url);
    let mut child = pack.spawn().unwrap();
    // Kill it (SIGKILL: no cleanup at all) once its first pack is complete on the server.
    garage.wait_for_first_pack(url, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();

    // Run again: the packs already there are kept, not sent again; the archive is whole.
    let mut rerun = Command::cargo_bin("haypack").unwrap();
    rerun
        .envs(garage.env.iter().map(|(k, v)| (k, v)))
        .args(["--no-cache", "--s3-part-size", "5M", "pack", "--pack-size", "20M"])
        .arg(&src)
        .arg(url)
        .assert()
        .success()
        .stderr(predicate::str::contains("resumed an interrupted run"));
    garage.haypack().args(["verify", url]).assert().success();
    let expected = std::fs::read(src.join("blob-3.bin")).unwrap();
    garage.haypack().args(["get", url, "blob-3.bin"]).assert().success().stdout(predicate::eq(expected));
    garage.haypack().args(["uploads", url]).assert().success().stdout("");
}

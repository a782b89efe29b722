//! The CLI against real S3 servers (Garage and moto): every verb works on an `s3://` archive as
//! on a local one.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use assert_cmd::Command;
use haypack_s3::testing::TestServer;
use predicates::prelude::*;

fn sample() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sample")
}

fn haypack(server: &TestServer) -> Command {
    let mut cmd = Command::cargo_bin("haypack").unwrap();
    let cache = std::env::temp_dir().join(format!("haypack-cli-cache-{}", std::process::id()));
    cmd.envs(server.env()).env_remove("AWS_PROFILE").env("XDG_CACHE_HOME", cache).arg("--quiet");
    cmd
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[test]
fn every_verb_works_on_an_s3_archive() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for server in TestServer::all() {
        let url = server.fresh_url("cli");
        haypack(&server).args(["pack"]).arg(sample()).arg(&url).assert().success();
        haypack(&server)
            .args(["ls", &url, "products/00/"])
            .assert()
            .success()
            .stdout(predicate::str::starts_with("products/00/00000.json\nproducts/00/00001.json\n"));
        let expected = std::fs::read(sample().join("products/01/00050.json")).unwrap();
        haypack(&server).args(["get", &url, "products/01/00050.json"]).assert().success().stdout(expected);
        haypack(&server).args(["verify", &url]).assert().success();
        haypack(&server)
            .args(["info", "--json", &url])
            .assert()
            .success()
            .stdout(predicate::str::contains("\"records\": 183"));
        let out = tempfile::tempdir().unwrap();
        haypack(&server).args(["extract", &url]).arg(out.path()).arg("notes/").assert().success();
        assert_eq!(
            std::fs::read(out.path().join("notes/note 05.txt")).unwrap(),
            std::fs::read(sample().join("notes/note 05.txt")).unwrap()
        );
        haypack(&server)
            .args(["get", &url, "no/such/key"])
            .assert()
            .failure()
            .stderr(predicate::str::contains("no record"));
        haypack(&server)
            .args(["pack"])
            .arg(sample())
            .arg(&url)
            .assert()
            .failure()
            .stderr(predicate::str::contains("--force"));

        // A local archive pushed up reads the same; a second push sends nothing.
        let local = tempfile::tempdir().unwrap();
        let local_archive = local.path().join("a");
        haypack(&server).arg("pack").arg(sample()).arg(&local_archive).assert().success();
        let pushed = server.fresh_url("cli-push");
        haypack(&server).arg("push").arg(&local_archive).arg(&pushed).assert().success();
        Command::cargo_bin("haypack")
            .unwrap()
            .envs(server.env())
            .arg("--no-cache")
            .arg("push")
            .arg(&local_archive)
            .arg(&pushed)
            .assert()
            .success()
            .stderr(predicate::str::contains("nothing to send"));
        haypack(&server).args(["verify", &pushed]).assert().success();
        haypack(&server).args(["uploads", &pushed]).assert().success().stdout("");

        // Nothing is left billing.
        let store = runtime.block_on(haypack_s3::S3Store::connect(&url, server.options(8 << 20))).unwrap();
        assert!(runtime.block_on(store.pending_uploads()).unwrap().is_empty());
    }
}

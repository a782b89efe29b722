//! The CLI on a three-node Garage cluster (replication factor 3, each node its own ports and
//! directories, started by `scripts/s3-servers.sh cluster`), one node of which goes away and
//! comes back.
//!
//! Garage replicates every object to all three nodes and answers a read or a write once two of
//! them have (its default "consistent" mode: quorums of 2 of 3). So with one node down, reads
//! keep working through either other node, and so does packing: a pack run while a node is down
//! succeeds and commits a whole archive, which the node that was away serves once it is back.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

struct Node {
    endpoint: String,
    config: String,
    pid: u32,
    server: Option<Child>,
}

struct Cluster {
    nodes: Vec<Node>,
    key_id: String,
    secret: String,
    cache: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let have = StdCommand::new("garage").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(have, "garage is not installed: scripts/test.sh installs it");
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("env");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-servers.sh");
        let status = StdCommand::new(script).arg("cluster").arg(dir.path().join("cluster")).arg(&env).status().unwrap();
        assert!(status.success(), "starting the Garage cluster failed");
        let vars: BTreeMap<String, String> = std::fs::read_to_string(&env)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let list =
            |k: &str| vars[&format!("HAYPACK_TEST_CLUSTER_{k}")].split(',').map(str::to_owned).collect::<Vec<_>>();
        let (endpoints, configs, pids) = (list("ENDPOINTS"), list("CONFIGS"), list("PIDS"));
        let nodes = (0..3)
            .map(|i| Node {
                endpoint: endpoints[i].clone(),
                config: configs[i].clone(),
                pid: pids[i].parse().unwrap(),
                server: None,
            })
            .collect();
        Cluster {
            nodes,
            key_id: vars["HAYPACK_TEST_CLUSTER_KEY_ID"].clone(),
            secret: vars["HAYPACK_TEST_CLUSTER_SECRET"].clone(),
            cache: tempfile::tempdir().unwrap(),
            _dir: dir,
        }
    }

    /// `haypack` talking to node `i`.
    fn haypack(&self, i: usize) -> Command {
        let mut cmd = Command::cargo_bin("haypack").unwrap();
        cmd.env("AWS_ENDPOINT_URL", &self.nodes[i].endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_REGION", "garage")
            .env_remove("AWS_PROFILE")
            .env_remove("HAYPACK_LOG")
            .env("XDG_CACHE_HOME", self.cache.path())
            .args(["--quiet", "--s3-part-size", "5M"]);
        cmd
    }

    /// Stops node `i` at once (SIGKILL: no goodbye to the others).
    fn stop(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        match node.server.take() {
            Some(mut child) => {
                child.kill().unwrap();
                child.wait().unwrap();
            }
            None => {
                StdCommand::new("kill").args(["-9", &node.pid.to_string()]).status().unwrap();
            }
        }
    }

    /// Starts node `i` again on its directories and ports, and waits until it answers.
    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let child = StdCommand::new("garage")
            .args(["-c", &node.config, "server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        node.pid = child.id();
        node.server = Some(child);
        // A guard against a node that never comes back, not a time budget.
        let started = Instant::now();
        let addr = node.endpoint.trim_start_matches("http://").to_owned();
        while std::net::TcpStream::connect(&addr).is_err() || healthy(&node.config) < 3 {
            assert!(started.elapsed() < Duration::from_secs(120), "node {i} did not rejoin the cluster");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// How many nodes the node of `config` sees as healthy (`garage status`'s first table).
fn healthy(config: &str) -> usize {
    let Ok(out) = StdCommand::new("garage").args(["-c", config, "status"]).output() else { return 0 };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(table) = text.split("==== HEALTHY NODES ====").nth(1) else { return 0 };
    let table = table.split("====").next().unwrap_or_default();
    table.lines().filter(|l| l.len() > 16 && l.as_bytes()[..16].iter().all(u8::is_ascii_hexdigit)).count()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

/// The test sample and a file large enough to go up in several parts.
fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sample");
    for entry in walkdir::WalkDir::new(&sample) {
        let entry = entry.unwrap();
        let target = src.join(entry.path().strip_prefix(&sample).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    std::fs::write(src.join("big.bin"), haypack_testkit::noise(12 << 20, 9)).unwrap();
    src
}

/// Extracted through node `i` and compared with `src`, after a verify through it.
fn assert_holds(cluster: &Cluster, i: usize, url: &str, src: &Path) {
    cluster.haypack(i).args(["verify", url]).assert().success();
    let out = tempfile::tempdir().unwrap();
    cluster.haypack(i).args(["extract", url]).arg(out.path()).assert().success();
    let diff = StdCommand::new("diff").arg("-r").arg(src).arg(out.path()).output().unwrap();
    assert!(diff.status.success(), "node {i}, {url}: {}", String::from_utf8_lossy(&diff.stdout));
}

#[ignore = "needs Garage: run with --include-ignored under scripts/test.sh"]
#[test]
fn a_three_node_cluster_reads_and_packs_with_a_node_down_and_the_node_catches_up() {
    let mut cluster = Cluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let before = "s3://haypack-test/before";
    cluster.haypack(0).arg("pack").arg(&src).arg(before).assert().success();

    cluster.stop(2);
    // Reads keep working through both nodes left, cold (no cache) and whole.
    for i in [0, 1] {
        let expected = std::fs::read(src.join("big.bin")).unwrap();
        cluster
            .haypack(i)
            .args(["--no-cache", "get", before, "big.bin"])
            .assert()
            .success()
            .stdout(predicate::eq(expected));
        assert_holds(&cluster, i, before, &src);
    }
    // Packing works too: two of three nodes are a write quorum.
    let during = "s3://haypack-test/during";
    cluster.haypack(1).arg("pack").arg(&src).arg(during).assert().success();
    assert_holds(&cluster, 0, during, &src);

    // The node that was away serves both archives whole, the one written without it included.
    cluster.restart(2);
    assert_holds(&cluster, 2, before, &src);
    assert_holds(&cluster, 2, during, &src);
}

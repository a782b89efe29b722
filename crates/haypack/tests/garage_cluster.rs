//! The CLI on a three-node Garage cluster (replication factor 3, each node its own ports and
//! directories, started by `scripts/s3-servers.sh cluster`), one node of which goes away and
//! comes back.
//!
//! Garage replicates every object to all three nodes and answers a read or a write once two of
//! them have (its default "consistent" mode: quorums of 2 of 3). So with one node down, reads
//! keep working through either other node, and so does packing: a pack run while a node is down
//! succeeds and commits a whole archive, which the node that was away serves once it is back.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::path::Path;
use std::process::Command as StdCommand;

use assert_cmd::Command;
use common::{GarageNode, sample_with_big, start_servers, wait_until};
use predicates::prelude::*;

struct Cluster {
    nodes: Vec<GarageNode>,
    key_id: String,
    secret: String,
    cache: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let vars = start_servers("cluster", dir.path());
        let list =
            |k: &str| vars[&format!("HAYPACK_TEST_CLUSTER_{k}")].split(',').map(str::to_owned).collect::<Vec<_>>();
        let (endpoints, configs, pids) = (list("ENDPOINTS"), list("CONFIGS"), list("PIDS"));
        let nodes = (0..3).map(|i| GarageNode::new(endpoints[i].clone(), configs[i].clone(), pids[i].parse().unwrap()));
        Cluster {
            nodes: nodes.collect(),
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

    /// Starts node `i` again, and waits until it has found the other two (until then it
    /// answers 503: no quorum).
    fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        let config = self.nodes[i].config.clone();
        wait_until("the node to rejoin the cluster", || healthy(&config) == 3);
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
    let src = sample_with_big(tmp.path(), 12 << 20);
    let before = "s3://haypack-test/before";
    cluster.haypack(0).arg("pack").arg(&src).arg(before).assert().success();

    cluster.nodes[2].kill();
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

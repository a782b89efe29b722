//! What the CLI's tests share: Garage servers of a test's own, which it may stop and start
//! again, and a source tree to pack.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses its part; helpers fail loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts `scripts/s3-servers.sh MODE DIR ENV` (`garage` or `cluster`) in `dir` and returns the
/// variables it wrote. Fails the test if Garage is not installed (such tests are `#[ignore]`d in
/// a bare `cargo test`: scripts/test.sh installs it).
pub fn start_servers(mode: &str, dir: &Path) -> BTreeMap<String, String> {
    let have = Command::new("garage").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(have, "garage is not installed: scripts/test.sh installs it");
    let env = dir.join("env");
    let status =
        Command::new(repo().join("scripts/s3-servers.sh")).arg(mode).arg(dir.join(mode)).arg(&env).status().unwrap();
    assert!(status.success(), "starting {mode} failed");
    std::fs::read_to_string(&env)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// One Garage server process: stopped at once with SIGKILL, started again on its own
/// directories and ports. Stopped when dropped.
pub struct GarageNode {
    pub endpoint: String,
    pub config: String,
    pid: u32,
    server: Option<Child>,
}

impl GarageNode {
    pub fn new(endpoint: String, config: String, pid: u32) -> GarageNode {
        GarageNode { endpoint, config, pid, server: None }
    }

    pub fn kill(&mut self) {
        match self.server.take() {
            Some(mut child) => {
                child.kill().unwrap();
                child.wait().unwrap();
            }
            None => {
                Command::new("kill").args(["-9", &self.pid.to_string()]).status().unwrap();
            }
        }
    }

    /// Starts it again, and waits until it takes connections.
    pub fn restart(&mut self) {
        let child = Command::new("garage")
            .args(["-c", &self.config, "server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.pid = child.id();
        self.server = Some(child);
        let addr = self.endpoint.trim_start_matches("http://").to_owned();
        wait_until("Garage to come back", || std::net::TcpStream::connect(&addr).is_ok());
    }
}

impl Drop for GarageNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `done` until it holds. The two minutes are a guard against a test that would
/// otherwise hang, not a time budget: what is waited for takes a second or two.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(120), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test sample (`testdata/sample`, 183 small files) copied to `dir/src`, with one file of
/// `big` incompressible bytes (`big.bin`), large enough to go up in several parts.
pub fn sample_with_big(dir: &Path, big: usize) -> PathBuf {
    let src = dir.join("src");
    let sample = repo().join("testdata/sample");
    for entry in walkdir::WalkDir::new(&sample) {
        let entry = entry.unwrap();
        let target = src.join(entry.path().strip_prefix(&sample).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    std::fs::write(src.join("big.bin"), haypack_testkit::noise(big, 9)).unwrap();
    src
}

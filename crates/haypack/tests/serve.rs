//! `haypack serve` as a process: it listens, reloads on SIGHUP and stops cleanly on SIGTERM.
//! (Every HTTP status is tested against the library in `crates/haypack-serve/tests`.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn haypack() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_haypack"));
    cmd.env_remove("HAYPACK_LOG");
    cmd
}

fn pack(src: &Path, dest: &Path, force: bool) {
    let mut cmd = haypack();
    cmd.args(["-q", "pack"]).arg(src).arg(dest);
    if force {
        cmd.arg("--force");
    }
    assert!(cmd.status().expect("haypack runs").success());
}

/// Starts `haypack serve` on a free port; returns the process, its base URL and its stderr.
fn serve(archive: &Path) -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut child = haypack()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(archive)
        .stderr(Stdio::piped())
        .spawn()
        .expect("haypack serve starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("a first line");
    let url = line.split("on ").last().expect("serving ... on URL").trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url, stderr)
}

fn get(url: &str) -> (String, String) {
    let out = Command::new("curl").args(["-s", "-w", "\n%{http_code}", url]).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_owned(), body.to_owned())
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill runs").success());
}

#[test]
fn serve_reloads_on_sighup_and_stops_on_sigterm() {
    let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(src.path().join("v.txt"), "version 1").unwrap();
    let archive = dest.path().join("a");
    pack(src.path(), &archive, false);
    let (mut child, url, mut stderr) = serve(&archive);

    assert_eq!(get(&format!("{url}/v.txt")), ("200".into(), "version 1".into()));
    assert_eq!(get(&format!("{url}/healthz")).0, "200");
    assert_eq!(get(&format!("{url}/missing")).0, "404");

    std::fs::write(src.path().join("v.txt"), "version 2").unwrap();
    pack(src.path(), &archive, true);
    assert_eq!(get(&format!("{url}/v.txt")).1, "version 1", "no reload without a reason");
    signal(&child, "-HUP");
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "reloaded: serving generation 2");
    assert_eq!(get(&format!("{url}/v.txt")), ("200".into(), "version 2".into()));

    signal(&child, "-TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

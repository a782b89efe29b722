//! Shared by the source tests: running the real archivers, and draining a source.
#![allow(dead_code, missing_docs, clippy::unwrap_used)] // test helpers fail loudly

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use haypack_format::Timestamp;
use haypack_source::{Content, Item, Source};

/// One record read from a source, content and all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub key: String,
    pub mtime: Option<Timestamp>,
    pub mode: Option<u32>,
    pub content_type: Option<String>,
    pub len: Option<u64>,
    pub content: Vec<u8>,
}

/// Skipped entries as `(path, reason)`.
pub type SkippedList = Vec<(PathBuf, String)>;

/// Everything a source yields: records read whole, and skipped entries as `(path, reason)`.
pub fn drain(src: &mut dyn Source) -> haypack_source::Result<(Vec<Got>, SkippedList)> {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    while let Some(item) = src.next_item()? {
        match item {
            Item::Record(r) => {
                let (content, len) = match r.content {
                    Content::Bytes(b) => (b, None),
                    Content::File { path, len } => (std::fs::read(path).unwrap(), Some(len)),
                    Content::Reader { mut reader, len } => {
                        let mut v = Vec::new();
                        reader
                            .read_to_end(&mut v)
                            .map_err(|e| haypack_source::Error::Io { path: r.key.clone().into(), source: e })?;
                        (v, len)
                    }
                };
                records.push(Got {
                    key: r.key,
                    mtime: r.mtime,
                    mode: r.mode,
                    content_type: r.content_type,
                    len,
                    content,
                });
            }
            Item::Skipped(s) => skipped.push((s.path, s.reason)),
        }
    }
    Ok((records, skipped))
}

/// The first error a source gives, read to its end (content included).
pub fn first_error(src: &mut dyn Source) -> String {
    match drain(src) {
        Ok((records, _)) => panic!("no error; records {:?}", records.iter().map(|r| &r.key).collect::<Vec<_>>()),
        Err(e) => e.to_string(),
    }
}

/// Fails the test unless `tool` runs. Tests that need a tool outside the Rust toolchain are
/// `#[ignore]`d in a bare `cargo test`; scripts/test.sh installs the tools and runs them.
pub fn need(tool: &str, probe: &[&str]) {
    let ok = Command::new(tool).args(probe).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{tool} is needed: scripts/test.sh installs it");
}

/// The Python with warcio: `HAYPACK_PYTHON` (scripts/test.sh's venv), else `python3`; fails the
/// test if it has no warcio.
pub fn python_with_warcio() -> String {
    let python = std::env::var("HAYPACK_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python).args(["-c", "import warcio"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "{python} with warcio is needed: scripts/test.sh installs it");
    python
}

/// Runs a command, which must succeed.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs a Python script with `args`.
pub fn python(python: &str, script: &str, args: &[&Path]) {
    run(Command::new(python).arg("-c").arg(script).args(args));
}

/// Writes files (path, content) under `dir`.
pub fn tree(dir: &Path, files: &[(&str, &[u8])]) {
    for (p, content) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

pub fn open(path: &Path) -> Box<dyn Source + 'static> {
    haypack_source::open(path, None, &Default::default()).unwrap()
}

pub fn keys(records: &[Got]) -> Vec<&str> {
    records.iter().map(|r| r.key.as_str()).collect()
}

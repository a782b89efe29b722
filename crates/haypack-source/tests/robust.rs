//! No input makes a source panic: valid tar and WARC streams (plain and gzip), cut at every
//! length and with each byte flipped in turn, give records or a named error.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::io::Write;
use std::path::Path;

use haypack_source::{SourceOptions, open_stream};

fn tar_stream() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (key, len) in [("a.txt", 5usize), (&*format!("long/{}", "n".repeat(150)), 700), ("./c/d", 0)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(len as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, key, &vec![b'x'; len][..]).unwrap();
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "link", "a.txt").unwrap();
    b.append_pax_extensions([("mtime", &b"1700000000.25"[..])]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o600);
    h.set_mtime(1);
    b.append_data(&mut h, "pax", &b"abc"[..]).unwrap();
    b.into_inner().unwrap()
}

fn warc_stream() -> Vec<u8> {
    let record = |kind: &str, uri: &str, ctype: &str, block: &str| {
        format!(
            "WARC/1.1\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {uri}\r\nWARC-Date: 2024-01-02T03:04:05Z\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{block}\r\n\r\n",
            block.len()
        )
    };
    let mut w = String::new();
    w += &record("warcinfo", "x", "application/warc-fields", "software: t\r\n");
    w += &record(
        "response",
        "http://a/",
        "application/http; msgtype=response",
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody",
    );
    w += &record(
        "response",
        "http://a/c",
        "application/http; msgtype=response",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    w += &record("resource", "file:///r", "text/plain", "resource");
    w.into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Reads everything the source gives; the outcome does not matter, only that there is one.
fn drain(bytes: &[u8]) -> bool {
    let Ok(mut src) = open_stream(bytes, Path::new("<test>"), None, &SourceOptions::default()) else { return false };
    common::drain(&mut *src).is_ok()
}

#[test]
fn cut_and_flipped_streams_give_records_or_errors_never_panics() {
    for (name, whole) in [("tar", tar_stream()), ("warc", warc_stream())] {
        for bytes in [whole.clone(), gzip(&whole)] {
            let mut src = open_stream(&bytes[..], Path::new("<test>"), None, &SourceOptions::default()).unwrap();
            let (records, skipped) = common::drain(&mut *src).unwrap();
            assert_eq!(records.len(), if name == "tar" { 4 } else { 3 }, "{name}");
            assert_eq!(skipped.len(), usize::from(name == "tar"), "{name}");
            let complete: Vec<usize> = (0..bytes.len()).filter(|&cut| drain(&bytes[..cut])).collect();
            // Only a WARC may end cleanly between records; a tar needs its end marker (its
            // first zero block: the second is not waited for), and gzip its trailer.
            if name == "tar" {
                let first_ok = if bytes == whole { whole.len() - 512 } else { bytes.len() };
                assert!(complete.iter().all(|&c| c >= first_ok), "a cut tar read as complete: {complete:?}");
            }
            for i in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[i] ^= 0x55;
                drain(&flipped);
            }
        }
    }
}

//! WARC files made by warcio (the Webrecorder WARC library), plain and gzip, read as sources.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::io::Write;
use std::path::Path;

use common::{Got, drain, first_error, keys, open, python_with_warcio};
use haypack_format::Timestamp;

/// Writes a WARC with warcio: argv[1] the path, argv[2] `gz` for one gzip member per record.
const MAKE_WARC: &str = r#"
import sys, gzip as gz
from io import BytesIO
from warcio.warcwriter import WARCWriter
from warcio.statusandheaders import StatusAndHeaders
path, mode = sys.argv[1], sys.argv[2]
with open(path, 'wb') as f:
    w = WARCWriter(f, gzip=(mode == 'gz'))
    date = {'WARC-Date': '2024-01-02T03:04:05Z'}
    w.write_record(w.create_warcinfo_record('x.warc', {'software': 'haypack tests'}))
    def http(headers):
        return StatusAndHeaders('200 OK', headers, protocol='HTTP/1.1')
    w.write_record(w.create_warc_record('http://example.com/', 'request', payload=BytesIO(b''),
        http_headers=StatusAndHeaders('GET / HTTP/1.1', [('Host', 'example.com')], is_http_request=True)))
    w.write_record(w.create_warc_record('http://example.com/', 'response', payload=BytesIO(b'<html>hi</html>'),
        http_headers=http([('Content-Type', 'text/html; charset=utf-8')]), warc_headers_dict=date))
    w.write_record(w.create_warc_record('http://example.com/chunked', 'response',
        payload=BytesIO(b'5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n'),
        http_headers=http([('Content-Type', 'text/plain'), ('Transfer-Encoding', 'chunked')]), warc_headers_dict={'WARC-Date': '2024-01-02T03:04:05.5Z'}))
    w.write_record(w.create_warc_record('http://example.com/gz', 'response', payload=BytesIO(gz.compress(b'zipped', mtime=0)),
        http_headers=http([('Content-Type', 'text/plain'), ('Content-Encoding', 'gzip')])))
    w.write_record(w.create_revisit_record('http://example.com/', 'sha1:AAAA', 'http://example.com/', '2024-01-01T00:00:00Z',
        http_headers=http([('Content-Type', 'text/html')])))
    w.write_record(w.create_warc_record('file:///notes.txt', 'resource', payload=BytesIO(b'notes\r\n'), warc_content_type='text/plain'))
    w.write_record(w.create_warc_record('http://example.com/', 'metadata', payload=BytesIO(b'k: v\r\n'), warc_content_type='application/warc-fields'))
"#;

fn make(python: &str, path: &Path, mode: &str) {
    common::run(std::process::Command::new(python).arg("-c").arg(MAKE_WARC).arg(path).arg(mode));
}

fn check(records: &[Got], skipped: &[(std::path::PathBuf, String)]) {
    assert_eq!(
        keys(records),
        ["http://example.com/", "http://example.com/chunked", "http://example.com/gz", "file:///notes.txt"]
    );
    let page = &records[0];
    assert_eq!(page.content, b"<html>hi</html>");
    assert_eq!(page.len, Some(15));
    assert_eq!(page.content_type.as_deref(), Some("text/html; charset=utf-8"));
    assert_eq!(page.mtime, Some(Timestamp { secs: 1_704_164_645, nanos: 0 }));
    let chunked = &records[1];
    assert_eq!(chunked.content, b"hello world");
    assert_eq!(chunked.len, None);
    assert_eq!(chunked.mtime, Some(Timestamp { secs: 1_704_164_645, nanos: 500_000_000 }));
    // Content-Encoding is left as it is: the payload is still gzip.
    assert_eq!(records[2].content[..2], [0x1f, 0x8b]);
    let resource = &records[3];
    assert_eq!(resource.content, b"notes\r\n");
    assert_eq!(resource.content_type.as_deref(), Some("text/plain"));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].1.contains("revisit"), "{skipped:?}");
}

#[ignore = "needs warcio: run with --include-ignored under scripts/test.sh"]
#[test]
fn warcio_warcs_plain_per_record_gzip_and_one_gzip_stream_give_the_same_records() {
    let python = python_with_warcio();
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("t.warc");
    make(&python, &plain, "plain");
    let (records, skipped) = drain(&mut *open(&plain)).unwrap();
    check(&records, &skipped);

    let members = tmp.path().join("t.warc.gz");
    make(&python, &members, "gz");
    let (records, skipped) = drain(&mut *open(&members)).unwrap();
    check(&records, &skipped);

    let whole = tmp.path().join("whole.warc.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&whole).unwrap(), flate2::Compression::default());
    gz.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    gz.finish().unwrap();
    let (records, skipped) = drain(&mut *open(&whole)).unwrap();
    check(&records, &skipped);
}

#[ignore = "needs warcio: run with --include-ignored under scripts/test.sh"]
#[test]
fn a_truncated_warc_names_the_record() {
    let python = python_with_warcio();
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("t.warc");
    make(&python, &plain, "plain");
    let bytes = std::fs::read(&plain).unwrap();
    let at = bytes.windows(8).position(|w| w == b"<html>hi").unwrap();
    std::fs::write(&plain, &bytes[..at + 4]).unwrap();
    let err = first_error(&mut *open(&plain));
    assert!(err.contains("truncated") && err.contains("record \"http://example.com/\""), "{err}");
}

#[test]
fn a_response_without_a_target_uri_is_a_named_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.warc");
    let block = "HTTP/1.1 200 OK\r\n\r\nx";
    let warc = format!(
        "WARC/1.1\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:1>\r\nContent-Type: application/http\r\nContent-Length: {}\r\n\r\n{block}\r\n\r\n",
        block.len()
    );
    std::fs::write(&path, warc).unwrap();
    let err = first_error(&mut *open(&path));
    assert!(err.contains("response record <urn:uuid:1> at byte 0 has no WARC-Target-URI"), "{err}");
}

#[test]
fn a_header_line_without_end_is_refused_at_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("long.warc");
    let mut warc = b"WARC/1.1\r\nWARC-Type: resource\r\nX: ".to_vec();
    warc.extend(std::iter::repeat_n(b'a', 1 << 20));
    std::fs::write(&path, warc).unwrap();
    let err = first_error(&mut *open(&path));
    assert!(err.contains("longer than"), "{err}");
}

//! Zip files made by Python's zipfile and Info-ZIP's `zip`, read as sources.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{drain, first_error, keys, need, open, python, run, tree};
use haypack_format::Timestamp;
use haypack_source::{Content, Error, Item, SourceOptions};

/// A zip written by Python's zipfile from `body` (statements using `z`, the open ZipFile).
fn python_zip(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("py.zip");
    let script = format!(
        "import sys, zipfile\n\
         with zipfile.ZipFile(sys.argv[1], 'w', allowZip64=True) as z:\n{}",
        body.lines().map(|l| format!("    {l}\n")).collect::<String>()
    );
    python("python3", &script, &[&path]);
    path
}

#[ignore = "needs python3: run with --include-ignored under scripts/test.sh"]
#[test]
fn python_zips_stored_deflated_and_zip64_keep_names_modes_and_dos_times() {
    need("python3", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    let zip = python_zip(
        tmp.path(),
        "i = zipfile.ZipInfo('stored.txt', (2024, 5, 6, 7, 8, 10)); i.external_attr = 0o100640 << 16\n\
         z.writestr(i, b'plain', zipfile.ZIP_STORED)\n\
         z.writestr(zipfile.ZipInfo('d/'), b'')\n\
         z.writestr('d/deflated.txt', b'squeeze ' * 10000, zipfile.ZIP_DEFLATED)\n\
         with z.open(zipfile.ZipInfo('d/big64.bin'), 'w', force_zip64=True) as f: f.write(bytes(range(256)) * 4096)\n",
    );
    let (records, skipped) = drain(&mut *open(&zip)).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(keys(&records), ["stored.txt", "d/deflated.txt", "d/big64.bin"]);
    assert_eq!(records[0].content, b"plain");
    assert_eq!(records[0].mode, Some(0o640));
    // 2024-05-06T07:08:10, DOS time taken as UTC.
    assert_eq!(records[0].mtime, Some(Timestamp { secs: 1_714_979_290, nanos: 0 }));
    assert_eq!(records[1].content, b"squeeze ".repeat(10000));
    assert_eq!(records[1].len, Some(80_000));
    let big: Vec<u8> = (0..=255u8).collect::<Vec<u8>>().repeat(4096);
    assert_eq!(records[2].content, big);
    let raw = std::fs::read(&zip).unwrap();
    // The local header's extra field, right after the name, is zip64's (id 1).
    let name = raw.windows(11).position(|w| w == b"d/big64.bin").unwrap();
    assert_eq!(raw[name + 11..name + 13], [0x01, 0x00], "expected a zip64 extra field");
}

#[ignore = "needs zip: run with --include-ignored under scripts/test.sh"]
#[test]
fn info_zip_keeps_extended_timestamps_and_skips_symlinks() {
    need("zip", &["-v"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, &[("a.txt", b"alpha"), ("dir/b.txt", b"beta")]);
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    run(Command::new("touch").arg("-d").arg("@1700000001").arg(src.join("dir/b.txt")));
    std::fs::set_permissions(src.join("a.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let zip = tmp.path().join("z.zip");
    run(Command::new("zip").current_dir(&src).arg("-q").arg("-r").arg("-y").arg(&zip).arg("."));
    let (records, skipped) = drain(&mut *open(&zip)).unwrap();
    let mut records = records;
    records.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(keys(&records), ["a.txt", "dir/b.txt"]);
    assert_eq!(records[0].content, b"alpha");
    assert_eq!(records[0].mode, Some(0o600));
    assert_eq!(records[1].mtime, Some(Timestamp { secs: 1_700_000_001, nanos: 0 }));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].1.starts_with("symbolic link"), "{skipped:?}");
}

#[ignore = "needs zip, python3: run with --include-ignored under scripts/test.sh"]
#[test]
fn encrypted_and_bzip2_members_are_named_errors() {
    need("zip", &["-v"]);
    need("python3", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    tree(tmp.path(), &[("secret.txt", b"psst")]);
    let zip = tmp.path().join("enc.zip");
    run(Command::new("zip").current_dir(tmp.path()).arg("-q").arg("-P").arg("pw").arg(&zip).arg("secret.txt"));
    let err = first_error(&mut *open(&zip));
    assert!(err.contains("\"secret.txt\" at byte 0 is encrypted"), "{err}");

    let zip = python_zip(tmp.path(), "z.writestr('b.txt', b'x' * 100, zipfile.ZIP_BZIP2)\n");
    let err = haypack_source::open(&zip, None, &Default::default()).unwrap().next_item().err().unwrap();
    assert!(matches!(err, Error::ZipMethod { .. }), "{err}");
    assert!(err.to_string().contains("\"b.txt\""), "{err}");
}

#[ignore = "needs python3: run with --include-ignored under scripts/test.sh"]
#[test]
fn member_names_that_could_escape_or_are_not_utf8_are_named_errors() {
    need("python3", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    for (name, why) in [("../x", "`..`"), ("/etc/x", "absolute"), ("a//b", "empty component")] {
        let zip = python_zip(tmp.path(), &format!("z.writestr('ok', b'1')\nz.writestr({name:?}, b'2')\n"));
        let err = first_error(&mut *open(&zip));
        assert!(err.contains(why) && err.contains(&format!("{name:?} at byte 33")), "{name}: {err}");
    }
    // Python writes ASCII names without the UTF-8 flag; make one byte of it invalid UTF-8.
    let zip = python_zip(tmp.path(), "z.writestr('ok', b'1')\nz.writestr('bad_name', b'2')\n");
    let bytes = std::fs::read(&zip).unwrap();
    let patched = String::from_utf8_lossy(&bytes).contains("bad_name");
    assert!(patched);
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"bad_name") {
            out.extend_from_slice(b"bad\xffname");
            i += 8;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    std::fs::write(&zip, out).unwrap();
    let err = first_error(&mut *open(&zip));
    assert!(err.contains("not UTF-8"), "{err}");
    let skip = SourceOptions { skip_unreadable: true, ..Default::default() };
    let (records, skipped) = drain(&mut *haypack_source::open(&zip, None, &skip).unwrap()).unwrap();
    assert_eq!((keys(&records), skipped.len()), (vec!["ok"], 1));
}

#[ignore = "needs python3: run with --include-ignored under scripts/test.sh"]
#[test]
fn a_member_that_inflates_past_its_declared_size_stops_one_byte_past_it() {
    need("python3", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    // 64 MiB of zeros deflate to ~64 KiB; then both headers are made to claim 1,000 bytes. (The
    // entry is zip64 only past 4 GiB, so the sizes are the plain 32-bit fields.)
    let zip = python_zip(tmp.path(), "z.writestr('bomb', bytes(64 << 20), zipfile.ZIP_DEFLATED)\n");
    let mut bytes = std::fs::read(&zip).unwrap();
    let real = (64u32 << 20).to_le_bytes();
    let fake = 1000u32.to_le_bytes();
    let mut patched = 0;
    for i in 0..bytes.len() - 4 {
        if bytes[i..i + 4] == real {
            bytes[i..i + 4].copy_from_slice(&fake);
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "local and central size fields");
    std::fs::write(&zip, bytes).unwrap();
    let mut src = open(&zip);
    let Some(Item::Record(record)) = src.next_item().unwrap() else { panic!("no record") };
    let Content::Reader { mut reader, len } = record.content else { panic!("not a reader") };
    assert_eq!(len, Some(1000));
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let err = loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("read to the end: {total} bytes"),
            Ok(n) => total += n as u64,
            Err(e) => break e,
        }
    };
    assert!(total <= 1000, "{total} bytes came out");
    let msg = err.to_string();
    assert!(msg.contains("member \"bomb\" at byte 0 inflates past its declared size of 1000"), "{msg}");
}

#[test]
fn a_zip_cannot_come_from_standard_input() {
    // The error is chosen before anything is read from stdin only when --format says zip.
    let err =
        haypack_source::open(Path::new("-"), Some(haypack_source::Format::Zip), &Default::default()).err().unwrap();
    assert!(matches!(err, Error::ZipFromStdin), "{err}");
}

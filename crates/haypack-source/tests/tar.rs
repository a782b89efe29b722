//! Tar streams made by GNU tar and Python's tarfile, read as sources.

#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod common;

use std::path::Path;
use std::process::Command;

use common::{Got, drain, first_error, keys, need, open, run, tree};
use haypack_format::Timestamp;
use haypack_source::{DirSource, Error, SourceOptions};

const LONG: &str =
    "long/name/that/goes/past/the/hundred/bytes/of/a/ustar/name/field/and/then/some/more/to/be/sure/file.txt";

fn sample(dir: &Path) {
    let noise = haypack_testkit::noise(200_000, 7);
    tree(dir, &[("a.txt", b"hello"), ("dir/b.bin", &noise), ("dir/sub/empty", b""), (LONG, b"long")]);
    std::fs::set_permissions(dir.join("a.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    run(Command::new("touch").arg("-d").arg("@1700000000.123456789").arg(dir.join("a.txt")));
}

fn sorted(mut v: Vec<Got>) -> Vec<Got> {
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

/// What packing the directory itself yields, with lengths as a reader would report them.
fn from_dir(dir: &Path) -> Vec<Got> {
    let (records, _) = drain(&mut DirSource::new(dir, &SourceOptions::default())).unwrap();
    records
}

#[ignore = "needs tar: run with --include-ignored under scripts/test.sh"]
#[test]
fn gnu_tar_of_a_directory_gives_the_directory_s_keys_contents_modes_and_mtimes() {
    need("tar", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample(&src);
    let tar = tmp.path().join("t.tar");
    run(Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&src).arg("."));
    let (records, skipped) = drain(&mut *open(&tar)).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let want = from_dir(&src);
    assert_eq!(keys(&want), ["a.txt", "dir/b.bin", "dir/sub/empty", LONG]);
    let records = sorted(records);
    assert_eq!(keys(&records), keys(&want));
    for (got, want) in records.iter().zip(&want) {
        assert_eq!(got.content, want.content, "{}", got.key);
        assert_eq!(got.len, Some(want.content.len() as u64));
        assert_eq!(got.mode, want.mode, "{}", got.key);
        // GNU format keeps whole seconds.
        assert_eq!(got.mtime.map(|t| t.secs), want.mtime.map(|t| t.secs), "{}", got.key);
    }
    assert_eq!(records[0].mode, Some(0o750));
}

#[ignore = "needs tar, zstd, xz, bzip2: run with --include-ignored under scripts/test.sh"]
#[test]
fn compressed_tars_are_detected_from_their_bytes() {
    need("tar", &["--version"]);
    need("zstd", &["--version"]);
    need("xz", &["--version"]);
    need("bzip2", &["--help"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample(&src);
    let want = from_dir(&src);
    // Misleading names: detection must not look at them.
    for (flag, name) in [("-z", "t.gz.bin"), ("--zstd", "t.zst.bin"), ("-J", "t.xz.bin"), ("-j", "t.bz2.bin")] {
        let path = tmp.path().join(name);
        run(Command::new("tar").arg(flag).arg("-cf").arg(&path).arg("-C").arg(&src).arg("."));
        let (records, _) = drain(&mut *open(&path)).unwrap();
        let records = sorted(records);
        assert_eq!(keys(&records), keys(&want), "{flag}");
        assert!(records.iter().zip(&want).all(|(a, b)| a.content == b.content), "{flag}");
    }
}

#[ignore = "needs tar: run with --include-ignored under scripts/test.sh"]
#[test]
fn pax_tars_keep_long_names_and_sub_second_mtimes() {
    need("tar", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample(&src);
    let tar = tmp.path().join("t.tar");
    run(Command::new("tar").arg("--format=pax").arg("-cf").arg(&tar).arg("-C").arg(&src).arg("a.txt").arg(LONG));
    let (records, _) = drain(&mut *open(&tar)).unwrap();
    assert_eq!(keys(&records), ["a.txt", LONG]);
    assert_eq!(records[0].mtime, Some(Timestamp { secs: 1_700_000_000, nanos: 123_456_789 }));
    assert_eq!(records[1].content, b"long");
}

#[ignore = "needs tar, mkfifo: run with --include-ignored under scripts/test.sh"]
#[test]
fn links_and_special_files_are_skipped_with_their_kind() {
    need("tar", &["--version"]);
    need("mkfifo", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tree(&src, &[("f", b"x")]);
    std::os::unix::fs::symlink("f", src.join("s")).unwrap();
    std::fs::hard_link(src.join("f"), src.join("h")).unwrap();
    run(Command::new("mkfifo").arg(src.join("p")));
    let tar = tmp.path().join("t.tar");
    run(Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&src).arg("f").arg("h").arg("p").arg("s"));
    let (records, skipped) = drain(&mut *open(&tar)).unwrap();
    assert_eq!(keys(&records), ["f"]);
    let reasons: Vec<String> =
        skipped.iter().map(|(p, r)| format!("{}: {r}", p.file_name().unwrap().to_string_lossy())).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("h: hard link"), "{reasons:?}");
    assert!(reasons[1].starts_with("p: FIFO"), "{reasons:?}");
    assert!(reasons[2].starts_with("s: symbolic link"), "{reasons:?}");
}

/// A tar written by Python's tarfile with one member named `name` (a Python expression).
fn python_tar(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join("py.tar");
    let script = format!(
        "import io, sys, tarfile\n\
         with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT, encoding='utf-8', errors='surrogateescape') as t:\n\
         \x20   for n in ['ok.txt', {name}]:\n\
         \x20       i = tarfile.TarInfo(n); i.size = 3; t.addfile(i, io.BytesIO(b'abc'))\n"
    );
    common::python("python3", &script, &[&path]);
    path
}

#[ignore = "needs python3: run with --include-ignored under scripts/test.sh"]
#[test]
fn member_names_that_could_escape_are_named_errors_with_their_offset() {
    need("python3", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    for (name, why) in [("'../x'", "`..`"), ("'/etc/x'", "absolute"), ("'a//b'", "empty component")] {
        let tar = python_tar(tmp.path(), name);
        let err = first_error(&mut *open(&tar));
        assert!(err.contains(why) && err.contains("at byte 1024"), "{name}: {err}");
        eprintln!("{err}");
    }
    let tar = python_tar(tmp.path(), r"'bad\udcff.txt'");
    let mut src = open(&tar);
    let err = first_error(&mut *src);
    assert!(err.contains("not UTF-8") && err.contains("bad\u{fffd}.txt"), "{err}");
    let skip = SourceOptions { skip_unreadable: true, ..Default::default() };
    let (records, skipped) = drain(&mut *haypack_source::open(&tar, None, &skip).unwrap()).unwrap();
    assert_eq!(keys(&records), ["ok.txt"]);
    assert_eq!(skipped.len(), 1);
}

#[ignore = "needs tar, zstd: run with --include-ignored under scripts/test.sh"]
#[test]
fn truncated_tar_gzip_and_zstd_streams_name_the_member_and_the_offset() {
    need("tar", &["--version"]);
    need("zstd", &["--version"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    sample(&src);
    let tar = tmp.path().join("t.tar");
    run(Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&src).arg("a.txt").arg("dir/b.bin"));
    let bytes = std::fs::read(&tar).unwrap();
    // a.txt: header at 0, data at 512; dir/b.bin: header at 1024, data from 1536.
    std::fs::write(&tar, &bytes[..100_000]).unwrap();
    let err = first_error(&mut *open(&tar));
    assert!(err.contains("truncated") && err.contains("member \"dir/b.bin\" at byte 100000"), "{err}");

    // Cut at a block boundary between members: no end-of-archive marker.
    std::fs::write(&tar, &bytes[..1024]).unwrap();
    let err = first_error(&mut *open(&tar));
    assert!(err.contains("the header after member \"a.txt\" at byte 1024"), "{err}");

    for (tool, cut) in [("gzip", 20_000), ("zstd", 20_000)] {
        let compressed = tmp.path().join(format!("t.{tool}"));
        std::fs::write(&tar, &bytes).unwrap();
        run(Command::new(tool).arg("-c").arg(&tar).stdout(std::fs::File::create(&compressed).unwrap()));
        let data = std::fs::read(&compressed).unwrap();
        std::fs::write(&compressed, &data[..cut.min(data.len() - 10)]).unwrap();
        let err = first_error(&mut *open(&compressed));
        assert!(err.contains("truncated") && err.contains("member \"dir/b.bin\" at byte"), "{tool}: {err}");
        eprintln!("{err}");
    }
}

#[test]
fn not_an_archive_is_a_named_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x");
    std::fs::write(&path, "just some text").unwrap();
    let err = haypack_source::open(&path, None, &Default::default()).err().unwrap();
    assert!(matches!(err, Error::UnknownFormat { .. }), "{err}");
    let err = haypack_source::open(&path, Some(haypack_source::Format::Tar), &Default::default()).err().unwrap();
    assert!(matches!(err, Error::FormatMismatch { .. }), "{err}");
}

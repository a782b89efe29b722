//! A directory tree as a source, walked in key order.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use haypack_format::{MAX_KEY_LEN, Timestamp};

use crate::{Content, Error, Item, Record, Result, Skipped, Source, SourceOptions};

/// The regular files under a directory, in key order, as [`Content::File`]s.
pub struct DirSource {
    root: PathBuf,
    walk: walkdir::IntoIter,
    skip_unreadable: bool,
}

impl DirSource {
    /// Walks `root` (a directory, or a single file whose key is its name).
    pub fn new(root: &Path, opts: &SourceOptions) -> Self {
        DirSource {
            root: root.to_owned(),
            walk: walkdir::WalkDir::new(root).follow_links(opts.follow_symlinks).sort_by(key_order).into_iter(),
            skip_unreadable: opts.skip_unreadable,
        }
    }

    /// The item for one walk entry; `None` for a directory.
    fn item(&self, entry: walkdir::Result<walkdir::DirEntry>) -> Result<Option<Item<'static>>> {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(&self.root).to_owned();
            Error::Unreadable {
                path,
                source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            }
        })?;
        let path = entry.path().to_owned();
        let ft = entry.file_type();
        if ft.is_dir() {
            return Ok(None);
        }
        if ft.is_symlink() {
            let reason = "symbolic link, not followed (see --follow-symlinks)".into();
            return Ok(Some(Item::Skipped(Skipped { path, reason })));
        }
        if !ft.is_file() {
            let reason = "not a regular file (device, socket or FIFO)".into();
            return Ok(Some(Item::Skipped(Skipped { path, reason })));
        }
        let meta = entry.metadata().map_err(|e| Error::Unreadable {
            path: path.clone(),
            source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("metadata")),
        })?;
        Ok(Some(Item::Record(Record {
            key: key_of(&self.root, &path)?,
            mtime: Some(meta.modified().map(Timestamp::from_system_time).unwrap_or_default()),
            mode: Some(meta.permissions().mode() & 0o7777),
            content_type: None,
            content: Content::File { len: meta.len(), path },
        })))
    }
}

impl Source for DirSource {
    fn next_item(&mut self) -> Result<Option<Item<'_>>> {
        while let Some(entry) = self.walk.next() {
            match self.item(entry) {
                Ok(None) => continue,
                Ok(Some(item)) => return Ok(Some(item)),
                Err(Error::Unreadable { path, source }) if self.skip_unreadable => {
                    let reason = Error::Unreadable { path: path.clone(), source }.to_string();
                    return Ok(Some(Item::Skipped(Skipped { path, reason })));
                }
                Err(Error::NonUtf8Name { path }) if self.skip_unreadable => {
                    let reason = "name is not UTF-8, so it cannot become a key".into();
                    return Ok(Some(Item::Skipped(Skipped { path, reason })));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// Sorting siblings as if directory names ended in `/` makes a depth-first walk visit paths in
/// byte order of their `/`-joined keys (`a.txt` < `a/b`, as `.` < `/`). So the writer gets
/// records in key order and the archive index streams out without a sort.
fn key_order(a: &walkdir::DirEntry, b: &walkdir::DirEntry) -> Ordering {
    let name = |e: &walkdir::DirEntry| {
        let mut n: OsString = e.file_name().to_owned();
        if e.file_type().is_dir() {
            n.push("/");
        }
        n
    };
    name(a).as_encoded_bytes().cmp(name(b).as_encoded_bytes())
}

/// The key of `path`, relative to `root` (or the file name, when the root is the file).
fn key_of(root: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(path.file_name().unwrap_or_default()) } else { rel };
    let mut key = String::with_capacity(rel.as_os_str().len());
    for c in rel.components() {
        let part = c.as_os_str().to_str().ok_or_else(|| Error::NonUtf8Name { path: path.to_owned() })?;
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str(part);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLong { path: path.to_owned(), len: key.len(), max: MAX_KEY_LEN });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(src: &mut dyn Source) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(item) = src.next_item().unwrap() {
            out.push(match item {
                Item::Record(r) => r.key,
                Item::Skipped(s) => format!("skipped {}: {}", s.path.file_name().unwrap().to_string_lossy(), s.reason),
            });
        }
        out
    }

    #[test]
    fn the_walk_visits_keys_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["a/b", "a.txt", "a-z/c", "b", "a/b.d/e", "a/b0", "A", "ä"] {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, p).unwrap();
        }
        let keys = items(&mut DirSource::new(dir.path(), &SourceOptions::default()));
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 8);
    }

    #[test]
    fn links_and_fifos_are_skipped_with_a_reason_and_non_utf8_names_fail_or_skip() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        let fifo = std::process::Command::new("mkfifo").arg(dir.path().join("p")).status().unwrap();
        assert!(fifo.success());
        let keys = items(&mut DirSource::new(dir.path(), &SourceOptions::default()));
        assert_eq!(keys[0], "f");
        assert!(keys[1].starts_with("skipped l: symbolic link"), "{keys:?}");
        assert!(keys[2].starts_with("skipped p: not a regular file"), "{keys:?}");
        let follow = SourceOptions { follow_symlinks: true, ..Default::default() };
        assert_eq!(items(&mut DirSource::new(dir.path(), &follow))[..2], ["f", "l"]);

        use std::os::unix::ffi::OsStrExt;
        std::fs::write(dir.path().join(std::ffi::OsStr::from_bytes(b"z\xff")), "x").unwrap();
        let mut src = DirSource::new(dir.path(), &SourceOptions::default());
        let err = loop {
            match src.next_item() {
                Err(e) => break e,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error"),
            }
        };
        assert!(matches!(err, Error::NonUtf8Name { .. }), "{err}");
        let skip = SourceOptions { skip_unreadable: true, ..Default::default() };
        let keys = items(&mut DirSource::new(dir.path(), &skip));
        assert!(keys[3].contains("not UTF-8"), "{keys:?}");
    }
}

//! Walking the source tree in key order.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use haypack_format::{MAX_KEY_LEN, Timestamp};

use crate::{Error, Result};

/// A regular file to pack.
#[derive(Debug, Clone)]
pub(crate) struct FileItem {
    pub path: PathBuf,
    pub key: String,
    pub len: u64,
    pub mtime: Timestamp,
    pub mode: u32,
}

/// What the walk yields: a file, or something it passed over and why.
#[derive(Debug)]
pub(crate) enum Found {
    File(FileItem),
    Skipped { path: PathBuf, reason: String },
    Failed(Error),
}

/// Sorting siblings as if directory names ended in `/` makes a depth-first walk visit paths in
/// byte order of their `/`-joined keys (`a.txt` < `a/b`, as `.` < `/`). So the packer writes
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

/// Every entry under `root` in key order.
pub(crate) fn walk(root: &Path, follow_symlinks: bool) -> impl Iterator<Item = Found> + '_ {
    walkdir::WalkDir::new(root).follow_links(follow_symlinks).sort_by(key_order).into_iter().filter_map(move |entry| {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_owned();
                let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("filesystem loop"));
                return Some(Found::Failed(Error::Unreadable { path, source }));
            }
        };
        let path = entry.path().to_owned();
        let ft = entry.file_type();
        if ft.is_dir() {
            return None;
        }
        if ft.is_symlink() {
            return Some(Found::Skipped { path, reason: "symbolic link, not followed (see --follow-symlinks)".into() });
        }
        if !ft.is_file() {
            return Some(Found::Skipped { path, reason: "not a regular file (device, socket or FIFO)".into() });
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("metadata"));
                return Some(Found::Failed(Error::Unreadable { path, source }));
            }
        };
        let key = match key_of(root, &path) {
            Ok(k) => k,
            Err(e) => return Some(Found::Failed(e)),
        };
        use std::os::unix::fs::PermissionsExt;
        Some(Found::File(FileItem {
            key,
            len: meta.len(),
            mtime: meta.modified().map(Timestamp::from_system_time).unwrap_or_default(),
            mode: meta.permissions().mode() & 0o7777,
            path,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_visits_keys_in_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["a/b", "a.txt", "a-z/c", "b", "a/b.d/e", "a/b0", "A", "ä"] {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, p).unwrap();
        }
        let keys: Vec<String> = walk(dir.path(), false)
            .map(|f| match f {
                Found::File(f) => f.key,
                other => panic!("{other:?}"),
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 8);
    }
}

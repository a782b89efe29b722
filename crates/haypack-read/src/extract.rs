//! `extract`: restore records as files, never outside the target directory.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use haypack_format::Entry;

use crate::{Archive, Error, Result};

/// What `extract` wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The relative path a key extracts to, or why it may not be extracted. A key is a
/// `/`-separated list of plain names: no empty, `.` or `..` component, no NUL.
pub fn safe_path(key: &str) -> Result<PathBuf> {
    let unsafe_key = |reason| Err(Error::UnsafeKey { key: key.to_owned(), reason });
    if key.starts_with('/') {
        return unsafe_key("it is an absolute path");
    }
    let mut path = PathBuf::new();
    for part in key.split('/') {
        match part {
            "" => return unsafe_key("it has an empty path component"),
            "." | ".." => return unsafe_key("it has a `.` or `..` component that could leave the target directory"),
            _ if part.contains('\0') => return unsafe_key("it contains a NUL byte"),
            _ => path.push(part),
        }
    }
    // Belt and braces: whatever the platform's parsing, only plain names may remain.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return unsafe_key("it does not reduce to plain names");
    }
    Ok(path)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_owned(), source }
}

/// Creates `dir/rel`'s parent directories, refusing to pass through a symbolic link or a file:
/// an archive must not be able to write through a link planted in the target.
fn make_parents(dir: &Path, rel: &Path, key: &str) -> Result<()> {
    let mut at = dir.to_owned();
    let parents: Vec<_> = rel.parent().map(|p| p.components().collect()).unwrap_or_default();
    for c in parents {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::UnsafeKey {
                    key: key.to_owned(),
                    reason: "a file or symbolic link in the target directory stands where it needs a directory",
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(&at).map_err(io("creating", &at))?,
            Err(e) => return Err(io("inspecting", &at)(e)),
        }
    }
    Ok(())
}

impl Archive {
    /// Extracts every record whose key starts with `prefix` into `dir`, restoring content,
    /// permissions and modification time (to the nanosecond, from each record's header). Every key is checked before anything is written; records
    /// are fetched in merged ranges ([`Archive::get_many`]), and each file is written under a
    /// temporary name and renamed into place only once its checksum matched, so a failure leaves
    /// no partial file. `progress` hears each file's raw bytes.
    pub async fn extract(&self, dir: &Path, prefix: &str, progress: impl Fn(u64)) -> Result<ExtractReport> {
        self.extract_entries(dir, self.list(prefix).await?, progress).await
    }

    /// Extracts these entries (from [`Archive::list`]) into `dir`, as [`Archive::extract`] does.
    pub async fn extract_entries(
        &self,
        dir: &Path,
        entries: Vec<Entry>,
        progress: impl Fn(u64),
    ) -> Result<ExtractReport> {
        for e in &entries {
            safe_path(&e.key)?;
        }
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let mut report = ExtractReport::default();
        let mut done = |e: &Entry| {
            report.files += 1;
            report.bytes += e.raw_len;
            progress(e.raw_len);
        };
        let large = self
            .get_many(entries, |e, content| {
                let mut file = PendingFile::begin(dir, e)?;
                file.out.write_all(&content).map_err(io("writing", &file.temp))?;
                file.commit(e)?;
                done(e);
                Ok(())
            })
            .await?;
        for mut e in large {
            let mut file = PendingFile::begin(dir, &e)?;
            e.mtime = self.read_entry(&e, &mut file.out).await?;
            file.commit(&e)?;
            done(&e);
        }
        Ok(report)
    }
}

/// A file being extracted: written under a temporary name beside its target, renamed into place
/// by `commit`, removed if dropped before.
struct PendingFile {
    temp: PathBuf,
    target: PathBuf,
    out: std::io::BufWriter<fs::File>,
    committed: bool,
}

impl PendingFile {
    /// Creates the parents (never through a link) and the temporary file.
    fn begin(dir: &Path, entry: &Entry) -> Result<Self> {
        let rel = safe_path(&entry.key)?;
        make_parents(dir, &rel, &entry.key)?;
        let target = dir.join(&rel);
        let file_name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("record");
        let temp = target.with_file_name(format!(".{file_name}.haypack-{}", std::process::id()));
        let file = fs::File::create(&temp).map_err(io("creating", &temp))?;
        Ok(PendingFile { out: std::io::BufWriter::with_capacity(1 << 20, file), temp, target, committed: false })
    }

    /// Sets mode and mtime and renames the file into place.
    fn commit(mut self, entry: &Entry) -> Result<()> {
        self.out.flush().map_err(io("writing", &self.temp))?;
        let file = self.out.get_ref();
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(entry.mode)).map_err(io("setting mode of", &self.temp))?;
        if let Some(t) = entry.mtime.to_system_time() {
            file.set_modified(t).map_err(io("setting mtime of", &self.temp))?;
        }
        fs::rename(&self.temp, &self.target).map_err(io("renaming into place", &self.target))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_are_refused() {
        for key in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/.", "a\0b", "a/"] {
            assert!(matches!(safe_path(key), Err(Error::UnsafeKey { .. })), "{key:?}");
        }
        assert_eq!(safe_path("a/b c/..d").unwrap(), Path::new("a/b c/..d"));
    }
}

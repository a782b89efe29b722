//! `extract`: restore records as files, never outside the target directory.

use std::collections::{HashMap, HashSet};
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

/// How to extract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Restore the setuid, setgid and sticky bits a record's mode has. Off by default: an
    /// archive may come from anyone, and a setuid program it plants is not the user's choice.
    pub keep_special_bits: bool,
}

/// Checks, before anything is written, that every entry can be extracted into `dir` as a file:
/// no key is another key's directory (`a` and `a/b`), and nothing already in `dir` (a file, a
/// symbolic link) stands where a directory is needed, or a directory where a file goes.
fn preflight(dir: &Path, entries: &[Entry]) -> Result<()> {
    let keys: HashSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    // Directories already looked at: whether each exists (a missing one has nothing below it).
    let mut seen: HashMap<PathBuf, bool> = HashMap::new();
    for e in entries {
        let rel = safe_path(&e.key)?;
        if let Some(file) = e.key.match_indices('/').map(|(i, _)| &e.key[..i]).find(|p| keys.contains(p)) {
            return Err(Error::KeyClash { file: file.to_owned(), under: e.key.clone() });
        }
        let mut at = dir.to_owned();
        let mut exists = true;
        for c in rel.parent().into_iter().flat_map(Path::components) {
            at.push(c);
            exists = match seen.get(&at) {
                Some(known) => *known,
                None if !exists => false,
                None => {
                    let found = existing(&at)?.map(|m| m.is_dir());
                    if found == Some(false) {
                        return Err(in_the_way(at, "a file or symbolic link stands where a directory is needed", 0));
                    }
                    found.is_some()
                }
            };
            seen.insert(at.clone(), exists);
        }
        let target = dir.join(&rel);
        if exists && existing(&target)?.is_some_and(|m| m.is_dir()) {
            return Err(in_the_way(target, "a directory stands where the file goes", 0));
        }
    }
    Ok(())
}

/// What is at `path`, not following a link; `None` if nothing.
fn existing(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("inspecting", path)(e)),
    }
}

fn in_the_way(path: PathBuf, reason: &'static str, extracted: u64) -> Error {
    Error::UnsafeTarget { path, reason, extracted }
}

/// Creates `dir/rel`'s parent directories, refusing to pass through a symbolic link or a file:
/// an archive must not be able to write through a link planted in the target. (`preflight`
/// checked this before anything was written; this holds if the target changes meanwhile.)
fn make_parents(dir: &Path, rel: &Path, extracted: u64) -> Result<()> {
    let mut at = dir.to_owned();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        at.push(c);
        match existing(&at)? {
            Some(m) if m.is_dir() => {}
            Some(_) => {
                return Err(in_the_way(at, "a file or symbolic link stands where a directory is needed", extracted));
            }
            None => fs::create_dir(&at).map_err(io("creating", &at))?,
        }
    }
    Ok(())
}

impl Archive {
    /// Extracts every record whose key starts with `prefix` into `dir`, restoring content,
    /// permissions (without setuid, setgid and sticky bits) and modification time (to the
    /// nanosecond, from each record's header). Every key, and the target directory, is checked
    /// before anything is written; records are fetched in merged ranges
    /// ([`Archive::get_many`]), and each file is written under a temporary name and renamed
    /// into place only once its checksum matched, so a failure leaves no partial file.
    /// `progress` hears each file's raw bytes.
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
        self.extract_entries_with(dir, entries, ExtractOptions::default(), progress).await
    }

    /// Extracts these entries into `dir` as [`Archive::extract`] does, with `options`.
    pub async fn extract_entries_with(
        &self,
        dir: &Path,
        entries: Vec<Entry>,
        options: ExtractOptions,
        progress: impl Fn(u64),
    ) -> Result<ExtractReport> {
        preflight(dir, &entries)?;
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let mut report = ExtractReport::default();
        let done = |report: &mut ExtractReport, e: &Entry| {
            report.files += 1;
            report.bytes += e.raw_len;
            progress(e.raw_len);
        };
        let large = self
            .get_many(entries, |e, content| {
                let mut file = PendingFile::begin(dir, e, report.files)?;
                file.out.write_all(&content).map_err(|err| io("writing", file.temp_path())(err))?;
                file.commit(e, options)?;
                done(&mut report, e);
                Ok(())
            })
            .await?;
        for mut e in large {
            let mut file = PendingFile::begin(dir, &e, report.files)?;
            e.mtime = match self.read_entry(&e, &mut file.out).await {
                Ok(mtime) => mtime,
                // The record read fine; the temporary file could not take it (a full disk).
                Err(Error::Output(err)) => return Err(io("writing", file.temp_path())(err)),
                Err(err) => return Err(err),
            };
            file.commit(&e, options)?;
            done(&mut report, &e);
        }
        Ok(report)
    }
}

/// A file being extracted: written to a temporary file beside its target (a random name,
/// created exclusively, never through a link), renamed into place by `commit`, removed if
/// dropped before.
struct PendingFile {
    target: PathBuf,
    out: std::io::BufWriter<tempfile::NamedTempFile>,
}

impl PendingFile {
    /// Creates the parents (never through a link) and the temporary file.
    fn begin(dir: &Path, entry: &Entry, extracted: u64) -> Result<Self> {
        let rel = safe_path(&entry.key)?;
        make_parents(dir, &rel, extracted)?;
        let target = dir.join(&rel);
        let parent = target.parent().unwrap_or(dir);
        let file_name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("record");
        let temp =
            haypack_store::create_temp_in(parent, file_name).map_err(io("creating a temporary file in", parent))?;
        Ok(PendingFile { out: std::io::BufWriter::with_capacity(1 << 20, temp), target })
    }

    fn temp_path(&self) -> &Path {
        self.out.get_ref().path()
    }

    /// Sets mode and mtime and renames the file into place.
    fn commit(self, entry: &Entry, options: ExtractOptions) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let temp = self.out.into_inner().map_err(|e| {
            let (err, out) = e.into_parts();
            io("writing", out.get_ref().path())(err)
        })?;
        let path = temp.path().to_owned();
        let mode = entry.mode & if options.keep_special_bits { 0o7777 } else { 0o777 };
        let file = temp.as_file();
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io("setting mode of", &path))?;
        if let Some(t) = entry.mtime.to_system_time() {
            file.set_modified(t).map_err(io("setting mtime of", &path))?;
        }
        // A rename replaces a link at the target instead of writing through it.
        temp.persist(&self.target).map_err(|e| io("renaming into place", &self.target)(e.error))?;
        Ok(())
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

    #[test]
    fn a_target_that_changes_mid_extract_is_refused_without_claiming_nothing_was_extracted() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"a file where a directory is needed").unwrap();
        let err = make_parents(dir.path(), Path::new("a/b"), 3).unwrap_err();
        let expected = format!(
            "refusing to write {}: a file or symbolic link stands where a directory is needed; 3 file(s) were extracted before this",
            dir.path().join("a").display()
        );
        assert_eq!(err.to_string(), expected);
        let err = make_parents(dir.path(), Path::new("a/b"), 0).unwrap_err();
        assert!(err.to_string().ends_with("; nothing was extracted"), "{err}");
    }
}

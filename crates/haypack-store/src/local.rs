//! The embedded default store: a directory on the local file system.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tempfile::NamedTempFile;

use crate::{Error, Finished, ObjectMeta, ObjectWriter, PutMode, Result, Store, check_name, check_put, check_range};

/// A store whose objects are files under a root directory.
///
/// Every write goes to a hidden temporary file first and is renamed into place after `fsync`,
/// so a crash leaves either the old object or the new one. Conditional puts hold an exclusive
/// lock on `ROOT/.lock` around their check-and-rename, so two processes cannot both win.
/// Only regular files are objects: a FIFO, a device or a link to one under an object's name is
/// refused before a byte is read, so nothing planted in the directory can block a reader or
/// feed it without end.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_owned(), source }
}

/// Creates a temporary file in `dir` named `.{prefix}.RANDOM.partial`: exclusively (an existing
/// name, a symbolic link included, is never opened: another random name is tried) and never
/// following a link, so nothing planted in a directory haypack writes can redirect the write.
/// The file is removed when the handle is dropped unless it is persisted. Every temporary file
/// haypack writes beside its target (store objects, the manifest, extracted files, `get -o`)
/// is made here.
pub fn create_temp_in(dir: &Path, prefix: &str) -> std::io::Result<NamedTempFile> {
    tempfile::Builder::new().prefix(&format!(".{prefix}.")).suffix(".partial").make_in(dir, open_new)
}

/// Creates `path`, failing with `AlreadyExists` if anything, a link included, is there.
fn open_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// What kind of file `m` describes, for a refusal.
fn kind(m: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    match () {
        _ if t.is_dir() => "directory",
        _ if t.is_fifo() => "FIFO",
        _ if t.is_char_device() => "character device",
        _ if t.is_block_device() => "block device",
        _ if t.is_socket() => "socket",
        _ => "special file",
    }
}

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }

    fn not_found(&self, name: &str) -> Error {
        Error::NotFound { store: self.describe(), name: name.to_owned() }
    }

    /// The object's metadata, if `m` is a regular file's; an error naming what it is otherwise.
    fn regular(&self, name: &str, m: &fs::Metadata) -> Result<ObjectMeta> {
        if m.is_file() {
            return Ok(object_meta(name, m));
        }
        Err(Error::NotAFile { store: self.describe(), name: name.to_owned(), kind: kind(m) })
    }

    fn meta(&self, name: &str, path: &Path) -> Result<ObjectMeta> {
        match fs::metadata(path) {
            Ok(m) => self.regular(name, &m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.not_found(name)),
            Err(e) => Err(io("reading metadata of", path)(e)),
        }
    }

    /// Opens an object for reading. The type is checked before opening (a device is never
    /// opened) and again on the open file (the name may have been replaced in between); the open
    /// itself does not wait, even on a FIFO.
    fn open(&self, name: &str) -> Result<(File, PathBuf, ObjectMeta)> {
        let path = self.path(name)?;
        self.meta(name, &path)?;
        let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.not_found(name)),
            Err(e) => return Err(io("opening", &path)(e)),
        };
        let meta = self.regular(name, &file.metadata().map_err(io("reading metadata of", &path))?)?;
        Ok((file, path, meta))
    }

    fn temp_writer(&self, name: &str) -> Result<LocalWriter> {
        let path = self.path(name)?;
        let dir = path.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&dir).map_err(io("creating directory", &dir))?;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("object");
        let temp = create_temp_in(&dir, file_name).map_err(io("creating a temporary file in", &dir))?;
        Ok(LocalWriter { name: name.to_owned(), path, file: Some(std::io::BufWriter::with_capacity(1 << 20, temp)) })
    }

    fn put_blocking(&self, name: &str, data: &[u8], mode: PutMode) -> Result<ObjectMeta> {
        let mut w = self.temp_writer(name)?;
        w.write_all(data).map_err(|e| io("writing", w.temp_path())(e))?;
        w.sync()?;
        match mode {
            PutMode::Overwrite => w.rename(),
            PutMode::Create => {
                // A hard link, unlike a rename, fails if the target exists: create-if-absent
                // in one atomic step.
                match fs::hard_link(w.temp_path(), &w.path) {
                    Ok(()) => {}
                    // The name exists: the create-if-absent rule refuses, in its own words.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(check_put(self, name, &mode, Some("")).expect_err("a create over an object"));
                    }
                    Err(e) => return Err(io("linking", &w.path)(e)),
                }
                let meta = fs::metadata(&w.path).map_err(io("reading metadata of", &w.path))?;
                sync_dir(&w.path)?;
                Ok(object_meta(name, &meta))
            }
            PutMode::Update(_) => {
                let lock_path = self.root.join(".lock");
                // Opened, never truncated, and never through a link: a `.lock` planted as a
                // link to a file elsewhere must not be written to.
                let lock = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(&lock_path)
                    .map_err(io("opening", &lock_path))?;
                lock.lock().map_err(io("locking", &lock_path))?;
                let current = match self.meta(name, &w.path) {
                    Ok(m) => Some(m.version),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                check_put(self, name, &mode, current.as_deref())?;
                w.rename()
            }
        }
    }
}

fn object_meta(name: &str, m: &fs::Metadata) -> ObjectMeta {
    // Inode, size and modification time: a rename-into-place always changes the inode.
    let version = format!("{:x}-{:x}-{:x}.{:x}", m.ino(), m.size(), m.mtime(), m.mtime_nsec());
    ObjectMeta { name: name.to_owned(), size: m.size(), version, modified: m.modified().ok() }
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing directory", dir))
}

/// A streaming write to a hidden temporary file, renamed into place by `finish`; dropped
/// unfinished, the temporary file is removed.
#[derive(Debug)]
struct LocalWriter {
    name: String,
    path: PathBuf,
    file: Option<std::io::BufWriter<NamedTempFile>>,
}

impl LocalWriter {
    fn temp(&self) -> &NamedTempFile {
        self.file.as_ref().expect("open until finished").get_ref()
    }

    fn temp_path(&self) -> &Path {
        self.temp().path()
    }

    fn sync(&mut self) -> Result<()> {
        let file = self.file.as_mut().expect("open until finished");
        file.flush().map_err(|e| io("writing", file.get_ref().path())(e))?;
        file.get_ref().as_file().sync_all().map_err(|e| io("syncing", file.get_ref().path())(e))
    }

    fn rename(mut self) -> Result<ObjectMeta> {
        let file = self.file.take().expect("open until finished");
        let temp = file.into_inner().map_err(|e| {
            let (error, file) = e.into_parts();
            io("writing", file.get_ref().path())(error)
        })?;
        temp.persist(&self.path).map_err(|e| io("renaming into place", &self.path)(e.error))?;
        sync_dir(&self.path)?;
        let meta = fs::metadata(&self.path).map_err(io("reading metadata of", &self.path))?;
        Ok(object_meta(&self.name, &meta))
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("open until finished").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("open until finished").flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn finish(mut self: Box<Self>) -> Result<Finished> {
        self.sync()?;
        (*self).rename().map(Finished::Written)
    }
}

/// Range reads up to this size run on the calling task instead of a blocking thread.
const INLINE_READ: u64 = 256 << 10;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.expect("store I/O does not panic")
}

#[async_trait::async_trait]
impl Store for LocalStore {
    /// A local read costs microseconds: small chunks keep a copy's memory small.
    fn read_chunk(&self) -> u64 {
        1 << 20
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn get(&self, name: &str) -> Result<Bytes> {
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || {
            let (f, path, meta) = this.open(&name)?;
            // No more than the size it had when opened: a file that grows while it is read
            // (or lies about its size) cannot make this read go on without end.
            let mut buf = Vec::with_capacity(meta.size.min(1 << 30) as usize);
            f.take(meta.size).read_to_end(&mut buf).map_err(io("reading", &path))?;
            Ok(buf.into())
        })
        .await
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        Ok(self.get_range_pinned(name, range, None).await?.0)
    }

    async fn get_range_pinned(&self, name: &str, range: Range<u64>, version: Option<&str>) -> Result<(Bytes, String)> {
        let (this, name, version) = (self.clone(), name.to_owned(), version.map(str::to_owned));
        let small = range.end.saturating_sub(range.start) <= INLINE_READ;
        let read = move || {
            // The version of the open file is the version read, whatever renames happen after.
            let (f, path, meta) = this.open(&name)?;
            if let Some(v) = version.filter(|v| *v != meta.version) {
                return Err(crate::changed(&this, &name, &v, &meta.version));
            }
            check_range(&this, &name, &range, meta.size)?;
            let mut buf = vec![0; (range.end - range.start) as usize];
            f.read_exact_at(&mut buf, range.start).map_err(io("reading", &path))?;
            Ok((buf.into(), meta.version))
        };
        // A small read (a record, an index block) from the page cache takes microseconds: less
        // than handing it to a blocking thread and back, which a server doing thousands of
        // them a second otherwise spends most of its time on.
        if small {
            return read();
        }
        blocking(read).await
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        let path = self.path(name)?;
        self.meta(name, &path)
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || this.put_blocking(&name, &data, mode)).await
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(self.temp_writer(name)?))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut out = Vec::new();
            let mut dirs = vec![(this.root.clone(), String::new())];
            while let Some((dir, rel)) = dirs.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("listing", &dir)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(io("listing", &dir))?;
                    let Some(file) = entry.file_name().to_str().map(str::to_owned) else { continue };
                    if file.starts_with('.') {
                        continue; // temporaries and the lock
                    }
                    let name = format!("{rel}{file}");
                    let meta = entry.metadata().map_err(io("reading metadata of", &entry.path()))?;
                    if meta.is_dir() {
                        let sub = format!("{name}/");
                        if sub.starts_with(&prefix) || prefix.starts_with(&sub) {
                            dirs.push((entry.path(), sub));
                        }
                    } else if meta.is_file() && name.starts_with(&prefix) {
                        out.push(object_meta(&name, &meta));
                    }
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("deleting", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::run_all(&LocalStore::new(dir.path())).await;
    }

    #[tokio::test]
    async fn an_unfinished_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let mut w = store.create("packs/a").unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert!(fs::read_dir(dir.path().join("packs")).unwrap().next().is_none());
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success());
    }

    #[tokio::test]
    async fn fifos_devices_and_links_to_them_are_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        fs::create_dir(dir.path().join("packs")).unwrap();
        // Opening a FIFO for reading blocks until a writer comes; none ever does here.
        mkfifo(&dir.path().join("manifest.json"));
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("packs/zero")).unwrap();
        mkfifo(&dir.path().join("packs/fifo"));
        std::os::unix::fs::symlink("fifo", dir.path().join("packs/to-fifo")).unwrap();
        for (name, kind) in [
            ("manifest.json", "FIFO"),
            ("packs/zero", "character device"),
            ("packs/fifo", "FIFO"),
            ("packs/to-fifo", "FIFO"),
        ] {
            let refused = |e: Error| matches!(&e, Error::NotAFile { name: n, kind: k, .. } if n == name && *k == kind);
            assert!(refused(store.get(name).await.unwrap_err()), "get {name}");
            assert!(refused(store.get_range(name, 0..10).await.unwrap_err()), "get_range {name}");
            assert!(refused(store.get_range(name, 0..(1 << 20)).await.unwrap_err()), "large get_range {name}");
            assert!(refused(store.head(name).await.unwrap_err()), "head {name}");
        }
        let err = store.get("packs").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: packs is a directory, not a regular file; remove it, or point haypack at another directory",
                dir.path().display()
            )
        );
        // Not objects, so not listed either.
        assert!(store.list("").await.unwrap().is_empty());
    }

    #[test]
    fn temporary_files_never_open_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let planted = dir.path().join(".x.planted.partial");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        // The one opener every temporary file goes through, on a name a link already holds:
        // it refuses as for any taken name, and `create_temp_in` draws another random name.
        let opened = open_new(&planted);
        assert_eq!(opened.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        let mut t = create_temp_in(dir.path(), "x").unwrap();
        t.write_all(b"new").unwrap();
        assert_ne!(t.path(), planted);
        assert!(t.path().file_name().unwrap().to_str().unwrap().starts_with(".x."));
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn a_planted_lock_link_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let store = LocalStore::new(dir.path());
        let first = store.put("manifest.json", Bytes::from_static(b"1"), PutMode::Create).await.unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".lock")).unwrap();
        let err = store.put("manifest.json", Bytes::from_static(b"2"), PutMode::Update(first.version)).await;
        assert!(matches!(err, Err(Error::Io { op: "opening", .. })), "{err:?}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(&store.get("manifest.json").await.unwrap()[..], b"1");
    }
}

//! The embedded default store: a directory on the local file system.

use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::{Error, Finished, ObjectMeta, ObjectWriter, PutMode, Result, Store, check_name, check_put, check_range};

/// A store whose objects are files under a root directory.
///
/// Every write goes to a hidden temporary file first and is renamed into place after `fsync`,
/// so a crash leaves either the old object or the new one. Conditional puts hold an exclusive
/// lock on `ROOT/.lock` around their check-and-rename, so two processes cannot both win.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_owned(), source }
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

    fn meta(&self, name: &str, path: &Path) -> Result<ObjectMeta> {
        match fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(object_meta(name, &m)),
            Ok(_) => Err(self.not_found(name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.not_found(name)),
            Err(e) => Err(io("reading metadata of", path)(e)),
        }
    }

    fn open(&self, name: &str) -> Result<(File, PathBuf)> {
        let path = self.path(name)?;
        match File::open(&path) {
            Ok(f) => Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.not_found(name)),
            Err(e) => Err(io("opening", &path)(e)),
        }
    }

    fn temp_writer(&self, name: &str) -> Result<LocalWriter> {
        let path = self.path(name)?;
        let dir = path.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&dir).map_err(io("creating directory", &dir))?;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("object");
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{file_name}.partial.{}.{n}", std::process::id()));
        let file = File::create(&temp).map_err(io("creating", &temp))?;
        Ok(LocalWriter {
            name: name.to_owned(),
            path,
            temp,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    fn put_blocking(&self, name: &str, data: &[u8], mode: PutMode) -> Result<ObjectMeta> {
        let mut w = self.temp_writer(name)?;
        w.write_all(data).map_err(io("writing", &w.temp))?;
        w.sync()?;
        match mode {
            PutMode::Overwrite => w.rename(),
            PutMode::Create => {
                // A hard link, unlike a rename, fails if the target exists: create-if-absent
                // in one atomic step.
                match fs::hard_link(&w.temp, &w.path) {
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
                let lock = File::create(&lock_path).map_err(io("creating", &lock_path))?;
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

/// A streaming write to a hidden temporary file, renamed into place by `finish`.
#[derive(Debug)]
struct LocalWriter {
    name: String,
    path: PathBuf,
    temp: PathBuf,
    file: Option<std::io::BufWriter<File>>,
}

impl LocalWriter {
    fn sync(&mut self) -> Result<()> {
        let file = self.file.as_mut().expect("open until finished");
        file.flush().map_err(io("writing", &self.temp))?;
        file.get_ref().sync_all().map_err(io("syncing", &self.temp))
    }

    fn rename(mut self) -> Result<ObjectMeta> {
        self.file = None;
        fs::rename(&self.temp, &self.path).map_err(io("renaming into place", &self.path))?;
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
        let w = std::mem::replace(
            &mut *self,
            LocalWriter { name: String::new(), path: PathBuf::new(), temp: PathBuf::new(), file: None },
        );
        w.rename().map(Finished::Written)
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // Unfinished: leave nothing behind. After a rename the temp path no longer exists.
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp);
        }
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
            let (mut f, path) = this.open(&name)?;
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut buf).map_err(io("reading", &path))?;
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
            let (f, path) = this.open(&name)?;
            let meta = object_meta(&name, &f.metadata().map_err(io("reading metadata of", &path))?);
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
}

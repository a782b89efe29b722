//! Reading: an archive pinned to one generation, whatever process it is used in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use haypack_format::{Budget, Entry};
use haypack_read::{Archive, Want};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::errors::{Failure, to_py};
use crate::{Location, run};

/// An archive opened in one process.
struct Conn {
    pid: u32,
    archive: Arc<Archive>,
}

/// An open archive (`haypack.Archive` wraps it). It keeps the manifest it opened, so that a
/// process it is copied into (by `fork`, or pickled into by `spawn`) reads exactly the same
/// generation through a store of its own.
#[pyclass(frozen, module = "haypack._haypack", name = "NativeArchive")]
pub(crate) struct NativeArchive {
    location: Location,
    manifest: Vec<u8>,
    /// The bound on the index kept in memory (`Archive::set_index_memory`), if not the default.
    index_memory: Option<usize>,
    generation: u64,
    records: u64,
    /// `None` only while being dropped.
    conn: ArcSwapOption<Conn>,
}

impl Drop for NativeArchive {
    fn drop(&mut self) {
        // A parent's archive dropped in a forked child: its connections are not ours to close.
        if let Some(conn) = self.conn.swap(None)
            && conn.pid != std::process::id()
        {
            std::mem::forget(conn);
        }
    }
}

type Row = (String, u64, u64, i64, u32, Option<String>);

/// An entry as the tuple `haypack.Entry` is made of: key, size, stored size, mtime (seconds),
/// mode, content type.
fn row(e: &Entry) -> Row {
    (e.key.clone(), e.raw_len, e.len, e.mtime.secs, e.mode, e.content_type.clone())
}

impl NativeArchive {
    /// The archive for this process: the one it opened, or after a `fork` a new one over a new
    /// store, from the same manifest. The parent's is leaked: its store's connections belong to
    /// the parent's runtime, which cannot run here, and dropping them could wait on it.
    async fn archive(&self) -> Result<Arc<Archive>, Failure> {
        let pid = std::process::id();
        let conn = self.conn.load_full();
        if let Some(c) = conn.as_ref().filter(|c| c.pid == pid) {
            return Ok(c.archive.clone());
        }
        let store = self.location.store().await?;
        let archive = Archive::open_manifest(store, &self.manifest, self.location.cache_dir.clone())?;
        if let Some(bytes) = self.index_memory {
            archive.set_index_memory(bytes);
        }
        let archive = Arc::new(archive);
        let old = self.conn.swap(Some(Arc::new(Conn { pid, archive: archive.clone() })));
        if old.as_ref().is_some_and(|c| c.pid != pid) {
            std::mem::forget(old);
        }
        std::mem::forget(conn);
        Ok(archive)
    }

    async fn build(
        location: Location,
        manifest: Option<Vec<u8>>,
        index_memory: Option<usize>,
    ) -> Result<Self, Failure> {
        let store = location.store().await?;
        let archive = match &manifest {
            Some(m) => Archive::open_manifest(store, m, location.cache_dir.clone())?,
            None => Archive::open_with_cache(store, location.cache_dir.clone()).await?,
        };
        if let Some(bytes) = index_memory {
            archive.set_index_memory(bytes);
        }
        let manifest = manifest.unwrap_or_else(|| archive.manifest().to_json());
        let (generation, records) = (archive.manifest().generation, archive.manifest().records);
        let conn = Conn { pid: std::process::id(), archive: Arc::new(archive) };
        let conn = ArcSwapOption::from_pointee(conn);
        Ok(NativeArchive { location, manifest, index_memory, generation, records, conn })
    }
}

#[pymethods]
impl NativeArchive {
    /// Opens the archive at `url`: reads its manifest (one request). With `manifest`, opens
    /// that generation instead, reading nothing. `index_memory` bounds the index kept in memory.
    #[new]
    #[pyo3(signature = (url, endpoint_url=None, region=None, credentials=None, cache_dir=None, manifest=None, index_memory=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: String,
        endpoint_url: Option<String>,
        region: Option<String>,
        credentials: Option<(String, String)>,
        cache_dir: Option<PathBuf>,
        manifest: Option<Vec<u8>>,
        index_memory: Option<usize>,
    ) -> PyResult<Self> {
        let location = Location::new(url, endpoint_url, region, credentials, cache_dir);
        run(py, Self::build(location, manifest, index_memory))
    }

    /// What pickling carries: the arguments `NativeArchive(...)` takes, the manifest included.
    fn __getnewargs__(&self, py: Python<'_>) -> PyResult<Py<PyTuple>> {
        let l = &self.location;
        let args = (
            l.url.clone(),
            l.s3.endpoint_url.clone(),
            l.s3.region.clone(),
            l.s3.credentials.clone(),
            l.cache_dir.clone(),
            PyBytes::new(py, &self.manifest),
            self.index_memory,
        );
        Ok(args.into_pyobject(py)?.unbind())
    }

    /// The location, as given.
    #[getter]
    fn url(&self) -> String {
        self.location.url.clone()
    }

    /// The bound on the index kept in memory, if not the default.
    #[getter]
    fn index_memory(&self) -> Option<usize> {
        self.index_memory
    }

    /// The pinned generation.
    #[getter]
    fn generation(&self) -> u64 {
        self.generation
    }

    /// Records in the pinned generation.
    #[getter]
    fn records(&self) -> u64 {
        self.records
    }

    /// The manifest of the pinned generation, as JSON bytes.
    fn manifest_json<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.manifest)
    }

    /// The verified content of `key`. A record within the reader's budget is read with one
    /// range read and decoded whole; a larger one is decoded a step at a time straight into the
    /// `bytes` object returned, so memory holds it once, not twice.
    fn get<'py>(&self, py: Python<'py>, key: String) -> PyResult<Bound<'py, PyBytes>> {
        let (entry, small) = run(py, async {
            let archive = self.archive().await?;
            let entry = archive.stat(&key).await?;
            if !Budget::whole(entry.len, entry.raw_len) {
                return Ok((entry, None));
            }
            let mut content = None;
            archive
                .get_many(vec![entry.clone()], |_, c| {
                    content = Some(c);
                    Ok(())
                })
                .await?;
            Ok((entry, content))
        })?;
        if let Some(content) = small {
            return Ok(PyBytes::new(py, &content));
        }
        let len = usize::try_from(entry.raw_len)
            .map_err(|_| to_py(Failure::Other(format!("{key:?} is too large for this machine"))))?;
        PyBytes::new_with(py, len, |buf| {
            run(py, async {
                let mut out: &mut [u8] = buf;
                self.archive().await?.get_to(&key, &mut out).await?;
                match out.len() {
                    0 => Ok(()),
                    n => Err(Failure::Other(format!("{key:?} decoded {n} bytes short of its length"))),
                }
            })
        })
    }

    /// Whether `key` is in the archive.
    fn contains(&self, py: Python<'_>, key: String) -> PyResult<bool> {
        run(py, async {
            match self.archive().await?.stat(&key).await {
                Ok(_) => Ok(true),
                Err(haypack_read::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// The index entry of `key` as a tuple.
    fn stat(&self, py: Python<'_>, key: String) -> PyResult<Row> {
        run(py, async { Ok(row(&self.archive().await?.stat(&key).await?)) })
    }

    /// Up to `limit` entries under `prefix` after the key `after`, and whether more follow.
    #[pyo3(signature = (prefix, after, limit))]
    fn list_page(
        &self,
        py: Python<'_>,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> PyResult<(Vec<Row>, bool)> {
        run(py, async {
            let page = self.archive().await?.list_page(&prefix, after.as_deref(), limit.max(1)).await?;
            Ok((page.entries.iter().map(row).collect(), page.more))
        })
    }

    /// Disjoint key ranges covering the archive index, as (first key, records): its pages, or
    /// their leaves when there are fewer than `at_least` pages. How a reader splits an archive
    /// (see `haypack.ray`); a part holds the keys up to the next part's first.
    fn index_parts(&self, py: Python<'_>, at_least: usize) -> PyResult<Vec<(String, u64)>> {
        run(py, async {
            let archive = self.archive().await?;
            Ok(archive.index_parts(at_least).await?.into_iter().map(|p| (p.first_key, p.records)).collect())
        })
    }

    /// The entries with `start <= key < end` (no end: to the last) whose keys start with
    /// `prefix`, in key order.
    fn range_entries(&self, py: Python<'_>, start: String, end: Option<String>, prefix: String) -> PyResult<Vec<Row>> {
        run(py, async {
            let archive = self.archive().await?;
            let mut rows = Vec::new();
            archive
                .scan_range(&start, end.as_deref(), &prefix, |e| {
                    rows.push(row(e));
                    true
                })
                .await?;
            Ok(rows)
        })
    }

    /// The contents of `keys`, in their order (a key may repeat), read with few requests:
    /// neighbouring records of a pack share one range read, several in flight.
    fn get_many<'py>(&self, py: Python<'py>, keys: Vec<String>) -> PyResult<Bound<'py, PyList>> {
        let contents = run(py, async {
            let archive = self.archive().await?;
            let mut at: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
            let mut entries = Vec::with_capacity(keys.len());
            for key in &keys {
                if !at.contains_key(key.as_str()) {
                    at.insert(key, entries.len());
                    entries.push(archive.stat(key).await?);
                }
            }
            let mut got: Vec<Option<Vec<u8>>> = vec![None; entries.len()];
            let large = archive
                .get_many(entries, |e, content| {
                    got[at[e.key.as_str()]] = Some(content);
                    Ok(())
                })
                .await?;
            // Too large to read in a batch: read alone (the caller asked for them whole).
            for e in large {
                got[at[e.key.as_str()]] = Some(archive.get(&e.key).await?);
            }
            let order: Vec<usize> = keys.iter().map(|k| at[k.as_str()]).collect();
            Ok((got, order))
        })?;
        let (got, order) = contents;
        let mut out = Vec::with_capacity(order.len());
        for i in order {
            let content = got[i].as_deref().ok_or_else(|| to_py(Failure::Other("a record was not read".into())))?;
            out.push(PyBytes::new(py, content));
        }
        PyList::new(py, out)
    }

    /// Reads everything and checks everything: (packs, records, bytes, problems).
    fn verify(&self, py: Python<'_>) -> PyResult<(u64, u64, u64, Vec<String>)> {
        run(py, async {
            let r = self.archive().await?.verify().await?;
            Ok((r.packs, r.records, r.bytes, r.problems.iter().map(ToString::to_string).collect()))
        })
    }

    /// A stream of `key`'s content in pieces, and its entry.
    fn stream(&self, py: Python<'_>, key: String) -> PyResult<(NativeStream, Row)> {
        run(py, async {
            let archive = self.archive().await?;
            let record = archive.record(&key, Want::Header).await?;
            let entry = row(record.entry());
            let stream: Pieces = Box::pin(record.into_stream(None));
            let pieces = tokio::sync::Mutex::new(Some(stream));
            Ok((NativeStream { pid: std::process::id(), pieces }, entry))
        })
    }
}

type Pieces = Pin<Box<dyn Stream<Item = haypack_read::Result<Bytes>> + Send>>;

/// A record's content, a piece (at most 256 KiB) at a time: memory holds one chunk of stored
/// bytes and one piece, whatever the record's size. The last piece comes out only once the
/// whole record passed its checks; a failed check is an error instead of the next piece, and
/// what came before must be discarded.
#[pyclass(frozen, module = "haypack._haypack", name = "NativeStream")]
pub(crate) struct NativeStream {
    pid: u32,
    pieces: tokio::sync::Mutex<Option<Pieces>>,
}

impl Drop for NativeStream {
    fn drop(&mut self) {
        // A parent's stream dropped in a forked child: its tasks belong to the parent's runtime.
        if self.pid != std::process::id() {
            std::mem::forget(self.pieces.get_mut().take());
        }
    }
}

#[pymethods]
impl NativeStream {
    /// The next piece; empty at the end.
    fn next_piece<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        if self.pid != std::process::id() {
            return Err(to_py(Failure::Other(
                "a record stream cannot be read in a child process (after fork): open the record again there".into(),
            )));
        }
        let piece = run(py, async {
            let mut pieces = self.pieces.lock().await;
            let Some(stream) = pieces.as_mut() else { return Ok(None) };
            match stream.next().await {
                Some(Ok(piece)) => Ok(Some(piece)),
                Some(Err(e)) => {
                    *pieces = None;
                    Err(e.into())
                }
                None => {
                    *pieces = None;
                    Ok(None)
                }
            }
        })?;
        Ok(PyBytes::new(py, piece.as_deref().unwrap_or_default()))
    }

    /// Lets go of the stream.
    fn close(&self) {
        if self.pid == std::process::id()
            && let Ok(mut pieces) = self.pieces.try_lock()
        {
            pieces.take();
        }
    }
}

//! `haypack._haypack`, the native half of the `haypack` Python package: thin pyo3 classes over
//! [`haypack_read::Archive`] and [`haypack_pack::Writer`]. Everything a user sees first — the
//! `Archive` and `Writer` classes, the exceptions, `haypack.data` — is the pure-Python half in
//! `python/haypack`, which calls this module.
//!
//! Three rules hold everywhere here:
//! - every call that reads, writes or decodes runs with the GIL released (`run`);
//! - the tokio runtime and every store belong to one process: after a `fork` they are rebuilt,
//!   and the parent's copies are leaked, never used or dropped (`runtime`, `Location`);
//! - every error leaves through `errors::to_py`, the one mapping onto the Python hierarchy.

mod archive;
mod errors;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use haypack_s3::S3Options;
use haypack_store::Store;
use pyo3::prelude::*;

use crate::errors::{Failure, to_py};

/// A tokio runtime and the process it was made in.
struct Runtime {
    pid: u32,
    rt: tokio::runtime::Runtime,
}

static RUNTIME: ArcSwapOption<Runtime> = ArcSwapOption::const_empty();
/// Held only while a runtime is made, so two threads do not both make one.
static MAKING: Mutex<()> = Mutex::new(());

/// This process's runtime, made on first use and made again in a child after `fork`: the
/// parent's worker threads do not exist there, so its runtime could never run a task. The
/// parent's copy is leaked: dropping it would wait for those threads.
fn runtime() -> Result<Arc<Runtime>, Failure> {
    let pid = std::process::id();
    if let Some(rt) = RUNTIME.load_full().filter(|r| r.pid == pid) {
        return Ok(rt);
    }
    let _making = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(rt) = RUNTIME.load_full().filter(|r| r.pid == pid) {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("haypack")
        .build()
        .map_err(|e| Failure::Other(format!("cannot start the async runtime: {e}")))?;
    let fresh = Arc::new(Runtime { pid, rt });
    if let Some(old) = RUNTIME.swap(Some(fresh.clone()))
        && old.pid != pid
    {
        std::mem::forget(old);
    }
    Ok(fresh)
}

/// Runs `f` to completion on this process's runtime with the GIL released, so other Python
/// threads run meanwhile (and read at the same time: the runtime is shared).
fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: Future<Output = Result<T, Failure>> + Send,
    T: Send,
{
    py.detach(|| {
        let rt = runtime()?;
        rt.rt.block_on(f)
    })
    .map_err(to_py)
}

/// Runs blocking `f` (the writer compresses and uploads on the calling thread) with the GIL
/// released and this process's runtime entered, as the S3 store's writer needs.
fn run_blocking<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Failure> + Send) -> PyResult<T> {
    py.detach(|| {
        let rt = runtime()?;
        let _entered = rt.rt.enter();
        f()
    })
    .map_err(to_py)
}

/// Where an archive is and how to reach it: what a pickled reader carries to another process.
#[derive(Debug, Clone)]
struct Location {
    url: String,
    s3: S3Options,
    cache_dir: Option<PathBuf>,
}

impl Location {
    fn new(
        url: String,
        endpoint_url: Option<String>,
        region: Option<String>,
        credentials: Option<(String, String)>,
        cache_dir: Option<PathBuf>,
    ) -> Self {
        let s3 = S3Options { endpoint_url, region, credentials, ..S3Options::default() };
        // A local archive's blocks are on disk already: the cache is for remote ones.
        let cache_dir = cache_dir.filter(|_| haypack_s3::is_remote(&url));
        Location { url, s3, cache_dir }
    }

    /// A store for this process (no request is made yet).
    async fn store(&self) -> Result<Arc<dyn Store>, Failure> {
        Ok(haypack_s3::store_at(&self.url, self.s3.clone()).await?)
    }
}

/// The native module.
#[pymodule]
fn _haypack(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<archive::NativeArchive>()?;
    m.add_class::<archive::NativeStream>()?;
    m.add_class::<writer::NativeWriter>()?;
    m.add_function(wrap_pyfunction!(writer::commit, m)?)?;
    m.add_function(wrap_pyfunction!(writer::pack, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

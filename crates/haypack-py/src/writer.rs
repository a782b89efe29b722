//! Writing: the record writer, committing segments, and packing a directory or tar.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use haypack_format::{Compression, Container, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, Segment, Timestamp};
use haypack_pack::{Content, DictChoice, Duplicates, Format, PackOptions, Record, Writer};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;

use crate::errors::{Failure, to_py};
use crate::{Location, run, run_blocking};

/// Packing options from the Python arguments: `codec` is `zstd`, `gzip` or `stored`, as the
/// CLI's `--codec` says; `dict` is `off`, `on` or `auto`, as its `--dict`.
fn options(codec: &str, level: Option<i32>, pack_size: Option<u64>, dict: &str) -> Result<PackOptions, Failure> {
    let compression = match codec {
        "zstd" => {
            Compression { container: Container::Zstd, level: level.unwrap_or(DEFAULT_ZSTD_LEVEL), compress: true }
        }
        "gzip" => Compression {
            container: Container::Gzip,
            level: level.unwrap_or(DEFAULT_GZIP_LEVEL as i32),
            compress: true,
        },
        "stored" => Compression { container: Container::Zstd, level: 0, compress: false },
        other => return Err(Failure::Invalid(format!("codec {other:?}: use \"zstd\", \"gzip\" or \"stored\""))),
    };
    let dictionary = match dict {
        "off" => DictChoice::Off,
        "on" => DictChoice::On,
        "auto" => DictChoice::Auto,
        other => return Err(Failure::Invalid(format!("dict {other:?}: use \"off\", \"on\" or \"auto\""))),
    };
    let mut opts = PackOptions { compression, dictionary, ..PackOptions::default() };
    if let Some(size) = pack_size {
        if size == 0 {
            return Err(Failure::Invalid("pack_size must be more than 0 bytes".into()));
        }
        opts.pack_size = size;
    }
    Ok(opts)
}

fn timestamp(mtime: Option<f64>) -> Result<Option<Timestamp>, Failure> {
    let Some(t) = mtime else { return Ok(None) };
    if !t.is_finite() || t.abs() > 1e17 {
        return Err(Failure::Invalid(format!("mtime {t} is not a time in seconds since 1970")));
    }
    let secs = t.floor();
    let nanos = (((t - secs) * 1e9).round() as u32).min(999_999_999);
    Ok(Some(Timestamp { secs: secs as i64, nanos }))
}

/// A Python binary file (anything with `read(n)`), read with the GIL taken for each call.
struct PyReader(Py<PyAny>);

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Python::attach(|py| {
            let chunk = self.0.bind(py).call_method1("read", (buf.len(),)).map_err(std::io::Error::other)?;
            let chunk: PyBackedBytes = chunk.extract().map_err(|e| std::io::Error::other(PyErr::from(e)))?;
            if chunk.len() > buf.len() {
                return Err(std::io::Error::other("read(n) returned more than n bytes"));
            }
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        })
    }
}

/// What `write` takes as content.
enum Data {
    Bytes(PyBackedBytes),
    File(Py<PyAny>),
}

impl<'py> FromPyObject<'_, 'py> for Data {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = obj.extract::<PyBackedBytes>() {
            return Ok(Data::Bytes(b));
        }
        if obj.hasattr("read")? {
            return Ok(Data::File(obj.to_owned().unbind()));
        }
        Err(pyo3::exceptions::PyTypeError::new_err("data must be bytes, bytearray or a binary file opened for reading"))
    }
}

/// A record writer (`haypack.Writer` wraps it).
#[pyclass(frozen, module = "haypack._haypack", name = "NativeWriter")]
pub(crate) struct NativeWriter {
    pid: u32,
    writer: Mutex<State>,
}

/// Where a writer is in its life.
enum State {
    /// Ready for the next call.
    Idle(Box<Writer>),
    /// A call has it (another thread's `write`).
    Busy,
    /// Committed, made a segment, or closed.
    Done,
}

impl Drop for NativeWriter {
    fn drop(&mut self) {
        // A parent's writer dropped in a forked child: its uploads belong to the parent.
        if self.pid != std::process::id() {
            let state = self.writer.get_mut().map(|s| std::mem::replace(s, State::Done));
            std::mem::forget(state);
        }
    }
}

impl NativeWriter {
    /// Takes the writer out for one call; it is put back (`write`) or marked done.
    fn take(&self) -> Result<Writer, Failure> {
        if self.pid != std::process::id() {
            return Err(Failure::Other(
                "a Writer cannot be used in a child process (after fork): make one there".into(),
            ));
        }
        let mut state = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match std::mem::replace(&mut *state, State::Busy) {
            State::Idle(w) => Ok(*w),
            State::Busy => {
                Err(Failure::Invalid("the writer is in use by another thread: write from one thread".into()))
            }
            State::Done => {
                *state = State::Done;
                Err(Failure::Invalid("the writer was already committed or closed".into()))
            }
        }
    }

    /// Takes the writer out for the call that ends it: later calls find it done.
    fn take_last(&self) -> Result<Writer, Failure> {
        let writer = self.take()?;
        *self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = State::Done;
        Ok(writer)
    }
}

#[pymethods]
impl NativeWriter {
    /// A writer into the archive at `url` (created at the first commit if there is none).
    #[new]
    #[pyo3(signature = (url, endpoint_url=None, region=None, credentials=None, codec="zstd", level=None, pack_size=None, dict="off"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        url: String,
        endpoint_url: Option<String>,
        region: Option<String>,
        credentials: Option<(String, String)>,
        codec: &str,
        level: Option<i32>,
        pack_size: Option<u64>,
        dict: &str,
    ) -> PyResult<Self> {
        let location = Location::new(url, endpoint_url, region, credentials, None);
        let opts = options(codec, level, pack_size, dict).map_err(to_py)?;
        let writer = run(py, async move { Ok(Writer::open(location.store().await?, opts, Arc::new(())).await?) })?;
        Ok(NativeWriter { pid: std::process::id(), writer: Mutex::new(State::Idle(Box::new(writer))) })
    }

    /// Writes one record; `data` is read to its end before this returns.
    #[pyo3(signature = (key, data, mtime=None, mode=None, content_type=None))]
    fn write(
        &self,
        py: Python<'_>,
        key: String,
        data: Data,
        mtime: Option<f64>,
        mode: Option<u32>,
        content_type: Option<String>,
    ) -> PyResult<()> {
        let mtime = timestamp(mtime).map_err(to_py)?;
        let mut writer = self.take().map_err(to_py)?;
        let (writer, result) = run_blocking(py, move || {
            let content = match data {
                Data::Bytes(b) => Content::Bytes(b.to_vec()),
                Data::File(f) => Content::Reader { reader: Box::new(PyReader(f)), len: None },
            };
            let result = writer.write(Record { key, mtime, mode, content_type, content });
            Ok((writer, result))
        })?;
        *self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = State::Idle(Box::new(writer));
        result.map_err(|e| to_py(e.into()))
    }

    /// Commits what was written as the archive's next generation: (added, replaced,
    /// generation), the generation `None` when nothing was written.
    fn commit(&self, py: Python<'_>) -> PyResult<(u64, u64, Option<u64>)> {
        let writer = self.take_last().map_err(to_py)?;
        run(py, async move {
            let r = writer.commit().await?;
            Ok((r.added, r.removed, r.manifest.map(|m| m.generation)))
        })
    }

    /// Ends without committing: the segment's JSON, `None` when nothing was written.
    fn segment(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let writer = self.take_last().map_err(to_py)?;
        run(py, async move {
            let (segment, _) = writer.segment().await?;
            Ok(segment.map(|s| String::from_utf8_lossy(&s.to_json()).into_owned()))
        })
    }

    /// Drops the writer without committing; what it wrote stays for `haypack gc` to remove.
    fn close(&self) {
        if self.pid == std::process::id() {
            *self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = State::Done;
        }
    }
}

/// Commits segments (their JSON) into the archive at `url` as one generation: (added,
/// replaced, generation or `None`, tokens of segments committed before).
#[pyfunction]
#[pyo3(signature = (url, segments, endpoint_url=None, region=None, credentials=None, keep_last=false))]
pub(crate) fn commit(
    py: Python<'_>,
    url: String,
    segments: Vec<String>,
    endpoint_url: Option<String>,
    region: Option<String>,
    credentials: Option<(String, String)>,
    keep_last: bool,
) -> PyResult<(u64, u64, Option<u64>, Vec<String>)> {
    let location = Location::new(url, endpoint_url, region, credentials, None);
    let segments = segments
        .iter()
        .map(|s| Segment::parse(s.as_bytes()).map_err(|e| Failure::Pack(e.into())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(to_py)?;
    let duplicates = if keep_last { Duplicates::KeepLast } else { Duplicates::Refuse };
    run(py, async move {
        let r = haypack_pack::commit_segments(location.store().await?, &segments, duplicates).await?;
        Ok((r.change.added, r.change.removed, r.change.manifest.map(|m| m.generation), r.already))
    })
}

/// What `pack` returns: generation, records, raw bytes, skipped entries as (path, reason).
type Packed = (u64, u64, u64, Vec<(String, String)>);

/// Packs a directory, or a tar, zip or WARC file, into a new archive at `dest`: (generation,
/// records, raw bytes, skipped entries as (path, reason)).
#[pyfunction]
#[pyo3(signature = (src, dest, endpoint_url=None, region=None, credentials=None, codec="zstd", level=None, pack_size=None, dict="off", force=false, prefix=String::new(), skip_unreadable=false, format=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack(
    py: Python<'_>,
    src: PathBuf,
    dest: String,
    endpoint_url: Option<String>,
    region: Option<String>,
    credentials: Option<(String, String)>,
    codec: &str,
    level: Option<i32>,
    pack_size: Option<u64>,
    dict: &str,
    force: bool,
    prefix: String,
    skip_unreadable: bool,
    format: Option<String>,
) -> PyResult<Packed> {
    let location = Location::new(dest, endpoint_url, region, credentials, None);
    let format = match format.as_deref() {
        None => None,
        Some(name) => Some(
            Format::from_name(name)
                .ok_or_else(|| to_py(Failure::Invalid(format!("format {name:?}: use dir, tar, zip or warc"))))?,
        ),
    };
    let opts = PackOptions {
        force,
        key_prefix: prefix,
        skip_unreadable,
        format,
        ..options(codec, level, pack_size, dict).map_err(to_py)?
    };
    run(py, async move {
        let r = haypack_pack::pack(&src, location.store().await?, opts, Arc::new(())).await?;
        let skipped = r.skipped.into_iter().map(|s| (s.path.display().to_string(), s.reason)).collect();
        Ok((r.manifest.generation, r.manifest.records, r.manifest.raw_bytes, skipped))
    })
}

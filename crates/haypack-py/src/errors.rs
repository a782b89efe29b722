//! The one mapping from the libraries' errors onto the Python exception hierarchy, which is
//! defined once, in `python/haypack/errors.py`.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// Anything that can fail below Python.
#[derive(Debug)]
pub(crate) enum Failure {
    Read(haypack_read::Error),
    Pack(haypack_pack::Error),
    Store(haypack_store::Error),
    /// A value from Python that cannot be used (a codec name, a segment that is no segment).
    Invalid(String),
    /// The runtime could not start, or a stream was used after `fork`.
    Other(String),
}

impl From<haypack_read::Error> for Failure {
    fn from(e: haypack_read::Error) -> Self {
        Failure::Read(e)
    }
}

impl From<haypack_pack::Error> for Failure {
    fn from(e: haypack_pack::Error) -> Self {
        Failure::Pack(e)
    }
}

impl From<haypack_store::Error> for Failure {
    fn from(e: haypack_store::Error) -> Self {
        Failure::Store(e)
    }
}

/// The Python class an error becomes, by name in `haypack.errors`.
fn class_of(f: &Failure) -> &'static str {
    use haypack_read::Error as R;
    fn store(e: &haypack_store::Error) -> &'static str {
        match e {
            haypack_store::Error::InvalidLocation { .. } | haypack_store::Error::InvalidName { .. } => "InvalidError",
            _ => "StoreError",
        }
    }
    fn read(e: &R) -> &'static str {
        match e {
            R::NotFound { .. } => "NotFoundError",
            R::NoArchive { .. } => "NoArchiveError",
            R::Corrupt { .. } | R::Manifest { .. } => "CorruptError",
            R::Changed { .. } => "ChangedError",
            R::Store(e) => store(e),
            R::Io { .. } | R::Output(_) => "StoreError",
            _ => "Error",
        }
    }
    match f {
        Failure::Read(e) => read(e),
        Failure::Store(e) => store(e),
        Failure::Pack(e) => match e {
            haypack_pack::Error::Read(e) => read(e),
            haypack_pack::Error::Store(e) => store(e),
            haypack_pack::Error::BadKey { .. } => "InvalidError",
            haypack_pack::Error::Format(_) => "CorruptError",
            _ => "Error",
        },
        Failure::Invalid(_) => "InvalidError",
        Failure::Other(_) => "Error",
    }
}

/// The message the CLI prints for `e` (less its `haypack: error:` prefix): the error, then
/// each cause the line before does not already quote.
fn message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut shown = out.clone();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !shown.contains(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
        shown = text;
        cause = c.source();
    }
    out
}

static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The Python exception for `f`.
pub(crate) fn to_py(f: Failure) -> PyErr {
    let class = class_of(&f);
    let text = match &f {
        Failure::Read(e) => message(e),
        Failure::Pack(e) => message(e),
        Failure::Store(e) => message(e),
        Failure::Invalid(m) | Failure::Other(m) => m.clone(),
    };
    Python::attach(|py| {
        let module = MODULE.get_or_try_init(py, || py.import("haypack.errors").map(Bound::unbind));
        let ty = module.and_then(|m| m.bind(py).getattr(class)).and_then(|t| Ok(t.cast_into::<PyType>()?));
        match ty {
            Ok(ty) => PyErr::from_type(ty, (text,)),
            // Only a broken installation lacks the module: say what failed all the same.
            Err(_) if class == "InvalidError" => PyValueError::new_err(text),
            Err(_) => PyRuntimeError::new_err(text),
        }
    })
}

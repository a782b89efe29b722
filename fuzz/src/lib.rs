//! The fuzz targets' checks (see `checks.rs`), as a library the targets and the seed generator
//! share.

mod checks;

pub use checks::*;

//! The one rule from an archive location to its store, for every front end (the CLI, the Python
//! package): `s3://bucket/prefix` is an [`S3Store`], anything else without a scheme a local
//! directory.

use std::sync::Arc;

use haypack_store::{Error, LocalStore, Result, Store};

use crate::{S3Options, S3Store};

/// Whether `location` names a remote archive (`s3://`), whose index blocks are worth keeping in
/// a local cache directory; a local archive's are read from disk anyway.
pub fn is_remote(location: &str) -> bool {
    location.starts_with("s3://")
}

/// The store `location` names: `s3://bucket/prefix` (reached with `opts`), or a local directory.
/// Any other scheme is refused. No request is made.
pub async fn store_at(location: &str, opts: S3Options) -> Result<Arc<dyn Store>> {
    if is_remote(location) {
        return Ok(Arc::new(S3Store::connect(location, opts).await?));
    }
    if location.contains("://") {
        return Err(Error::InvalidLocation {
            location: location.to_owned(),
            detail: "an archive is a local directory or s3://bucket/prefix".into(),
        });
    }
    Ok(Arc::new(LocalStore::new(location)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn locations_pick_their_store() {
        let local = store_at("some/dir", S3Options::default()).await.expect("a directory is a store");
        assert!(local.describe().ends_with("some/dir"), "{}", local.describe());
        let Err(err) = store_at("http://example.invalid/x", S3Options::default()).await else {
            panic!("another scheme is refused")
        };
        assert!(err.to_string().contains("local directory or s3://"), "{err}");
        assert!(is_remote("s3://bucket/x") && !is_remote("/tmp/x"));
    }
}

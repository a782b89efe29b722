//! The behaviour every store must have, as public async test functions: each store's tests call
//! [`run_all`] on an empty store (a temp directory, a fresh bucket on Garage or moto).

use crate::{Error, PutMode, Store};

/// Runs every conformance check against `store`, which must be empty. Panics on a failure.
pub async fn run_all(store: &dyn Store) {
    put_get_and_ranges(store).await;
    missing_objects(store).await;
    conditional_puts(store).await;
    pinned_reads(store).await;
    streaming_writes(store).await;
    abandoned_writes(store).await;
    list_and_delete(store).await;
    invalid_names(store).await;
}

/// Whole and ranged reads return exactly what was written; ranges past the end fail.
pub async fn put_get_and_ranges(store: &dyn Store) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let meta = store.put("c/data", data.clone().into(), PutMode::Overwrite).await.expect("put");
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(&store.get("c/data").await.expect("get")[..], &data[..]);
    assert_eq!(&store.get_range("c/data", 10..20).await.expect("range")[..], &data[10..20]);
    assert_eq!(&store.get_range("c/data", 99_990..100_000).await.expect("tail")[..], &data[99_990..]);
    assert!(store.get_range("c/data", 5..5).await.expect("empty range").is_empty());
    let err = store.get_range("c/data", 99_990..100_001).await.expect_err("past the end");
    assert!(matches!(err, Error::OutOfRange { size: 100_000, .. }), "{err}");
    assert_eq!(store.head("c/data").await.expect("head").size, 100_000);
}

/// Every read of a missing object is `NotFound`.
pub async fn missing_objects(store: &dyn Store) {
    assert!(matches!(store.get("c/none").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_range("c/none", 0..1).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.head("c/none").await, Err(Error::NotFound { .. })));
}

/// `Create` fails if the object exists; `Update` fails unless the version still matches.
pub async fn conditional_puts(store: &dyn Store) {
    let first = store.put("c/manifest", b"one".to_vec().into(), PutMode::Create).await.expect("create");
    let err = store.put("c/manifest", b"two".to_vec().into(), PutMode::Create).await.expect_err("second create");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    let second = store.put("c/manifest", b"two".to_vec().into(), PutMode::Update(first.version.clone())).await;
    let second = second.expect("update at the current version");
    assert_ne!(second.version, first.version);
    let err = store.put("c/manifest", b"three".to_vec().into(), PutMode::Update(first.version)).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "stale update must lose");
    assert_eq!(&store.get("c/manifest").await.expect("get")[..], b"two");
}

/// A read pinned to a version fails once the object is replaced, instead of mixing versions.
pub async fn pinned_reads(store: &dyn Store) {
    store.put("c/pinned", b"first version".to_vec().into(), PutMode::Overwrite).await.expect("put");
    let (bytes, version) = store.get_range_pinned("c/pinned", 0..5, None).await.expect("first read");
    assert_eq!(&bytes[..], b"first");
    let (bytes, again) = store.get_range_pinned("c/pinned", 6..13, Some(&version)).await.expect("same version");
    assert_eq!((&bytes[..], &again), (&b"version"[..], &version));
    store.put("c/pinned", b"other version".to_vec().into(), PutMode::Overwrite).await.expect("replace");
    let err = store.get_range_pinned("c/pinned", 0..5, Some(&version)).await.expect_err("replaced");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
}

/// A streamed object appears only when finished, with all its bytes, whether it fits in one
/// part (a single PUT on S3) or needs several (a multipart upload).
pub async fn streaming_writes(store: &dyn Store) {
    for (name, mib) in [("c/small-stream", 3usize), ("c/large-stream", 12)] {
        let w = store.create(name).expect("create writer");
        let w = tokio::task::spawn_blocking(move || {
            let mut w = w;
            for i in 0..mib {
                std::io::Write::write_all(&mut w, &vec![i as u8; 1 << 20]).expect("write");
            }
            w
        })
        .await
        .expect("join");
        assert!(matches!(store.head(name).await, Err(Error::NotFound { .. })), "visible before finish");
        let done = tokio::task::spawn_blocking(move || w.finish()).await.expect("join").expect("finish");
        assert!(matches!(done, crate::Finished::Written(_)), "a plain create writes");
        assert_eq!(done.meta().size, (mib as u64) << 20);
        let last = (mib as u64) << 20;
        assert_eq!(store.get_range(name, last - 1..last).await.expect("range")[..], [mib as u8 - 1]);
        let middle = (mib as u64 / 2) << 20;
        let expected = [mib as u8 / 2 - 1, mib as u8 / 2 - 1, mib as u8 / 2, mib as u8 / 2];
        assert_eq!(store.get_range(name, middle - 2..middle + 2).await.expect("range")[..], expected);
    }
}

/// An abandoned streaming write leaves no object behind.
pub async fn abandoned_writes(store: &dyn Store) {
    let w = store.create("c/abandoned").expect("create writer");
    tokio::task::spawn_blocking(move || {
        let mut w = w;
        std::io::Write::write_all(&mut w, &vec![1u8; 6 << 20]).expect("write");
        drop(w);
    })
    .await
    .expect("join");
    assert!(matches!(store.head("c/abandoned").await, Err(Error::NotFound { .. })));
}

/// Listing is by prefix and sorted; delete removes, and deleting twice is fine.
pub async fn list_and_delete(store: &dyn Store) {
    for name in ["l/b", "l/a", "l/sub/c", "lx"] {
        store.put(name, b"x".to_vec().into(), PutMode::Overwrite).await.expect("put");
    }
    let names: Vec<String> = store.list("l/").await.expect("list").into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["l/a", "l/b", "l/sub/c"]);
    store.delete("l/a").await.expect("delete");
    store.delete("l/a").await.expect("delete again");
    let names: Vec<String> = store.list("l/").await.expect("list").into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["l/b", "l/sub/c"]);
}

/// Names that could escape the store are refused before any I/O.
pub async fn invalid_names(store: &dyn Store) {
    for name in ["", "/abs", "a/../b", "a//b", "./a"] {
        let err = store.put(name, b"x".to_vec().into(), PutMode::Overwrite).await.expect_err(name);
        assert!(matches!(err, Error::InvalidName { .. }), "{name}: {err}");
    }
}

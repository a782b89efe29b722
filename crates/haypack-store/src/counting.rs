//! A store wrapper that counts requests, for tests and benchmarks that hold haypack to a request
//! budget ("a warm lookup costs one range read").

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::{ObjectMeta, ObjectWriter, PutMode, Result, Store};

/// Requests made through a [`Counting`] store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Whole-object reads.
    pub gets: u64,
    /// Range reads.
    pub ranges: u64,
    /// Bytes returned by reads.
    pub bytes_read: u64,
    /// Of those, bytes of objects under `index/`: an archive's index.
    pub index_bytes_read: u64,
    /// Heads.
    pub heads: u64,
    /// Puts and streaming creates.
    pub writes: u64,
    /// Lists.
    pub lists: u64,
    /// Deletes.
    pub deletes: u64,
}

impl Counts {
    /// Read requests of either kind.
    pub fn reads(&self) -> u64 {
        self.gets + self.ranges
    }
}

/// Wraps a store and counts every request made through it.
#[derive(Debug)]
pub struct Counting<S> {
    inner: S,
    counters: [AtomicU64; 8],
}

impl<S: Store> Counting<S> {
    /// Counts requests to `inner`.
    pub fn new(inner: S) -> Self {
        Counting { inner, counters: Default::default() }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        let c = |i: usize| self.counters[i].load(Ordering::Relaxed);
        Counts {
            gets: c(0),
            ranges: c(1),
            bytes_read: c(2),
            heads: c(3),
            writes: c(4),
            lists: c(5),
            deletes: c(6),
            index_bytes_read: c(7),
        }
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        self.counters.iter().for_each(|c| c.store(0, Ordering::Relaxed));
    }

    fn bump(&self, i: usize, n: u64) {
        self.counters[i].fetch_add(n, Ordering::Relaxed);
    }

    fn read(&self, name: &str, bytes: &Bytes) {
        self.bump(2, bytes.len() as u64);
        if name.starts_with("index/") {
            self.bump(7, bytes.len() as u64);
        }
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for Counting<S> {
    fn read_chunk(&self) -> u64 {
        self.inner.read_chunk()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn get(&self, name: &str) -> Result<Bytes> {
        self.bump(0, 1);
        let b = self.inner.get(name).await?;
        self.read(name, &b);
        Ok(b)
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        self.bump(1, 1);
        let b = self.inner.get_range(name, range).await?;
        self.read(name, &b);
        Ok(b)
    }

    async fn get_range_pinned(&self, name: &str, range: Range<u64>, version: Option<&str>) -> Result<(Bytes, String)> {
        self.bump(1, 1);
        let (b, v) = self.inner.get_range_pinned(name, range, version).await?;
        self.read(name, &b);
        Ok((b, v))
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        self.bump(3, 1);
        self.inner.head(name).await
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        self.bump(4, 1);
        self.inner.put(name, data, mode).await
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        self.bump(4, 1);
        self.inner.create(name)
    }

    fn create_resumable(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        self.bump(4, 1);
        self.inner.create_resumable(name)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.bump(5, 1);
        self.inner.list(prefix).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.bump(6, 1);
        self.inner.delete(name).await
    }

    async fn abort_uploads(&self, names: &[String]) -> Result<usize> {
        self.inner.abort_uploads(names).await
    }
}

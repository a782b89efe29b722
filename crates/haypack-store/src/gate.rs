//! A store wrapper that holds chosen requests until the test lets them go, so a test can run
//! two writers in exactly the interleaving it means to check ("add stops right before its
//! manifest put; gc runs to the end; add goes on") without a sleep or a timing assumption.
//!
//! Built only with the `testing` feature: no release build has it.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::{ObjectMeta, ObjectWriter, PutMode, Result, Store};

/// The requests a gate can hold. Streaming creates are synchronous and are not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Whole-object reads.
    Get,
    /// Range reads, pinned or not.
    GetRange,
    /// Heads.
    Head,
    /// Puts.
    Put,
    /// Lists (matched on the prefix listed).
    List,
    /// Deletes.
    Delete,
}

#[derive(Debug)]
struct GateState {
    op: Op,
    name: String,
    /// Set until a request stops here: a gate holds one request, once.
    armed: std::sync::atomic::AtomicBool,
    reached: Semaphore,
    released: Semaphore,
}

/// One gate: holds the first request that matches it until [`Gate::release`].
#[derive(Debug, Clone)]
pub struct Gate(Arc<GateState>);

impl Gate {
    /// Waits until a request has stopped at this gate (returns at once if one already has).
    pub async fn reached(&self) {
        if let Ok(permit) = self.0.reached.acquire().await {
            permit.forget();
        }
    }

    /// Lets the held request (or the next one to arrive) go on.
    pub fn release(&self) {
        self.0.released.add_permits(1);
    }
}

/// Wraps a store; requests pass straight through unless a gate was set for them.
#[derive(Debug)]
pub struct Gated<S> {
    inner: S,
    gates: Mutex<Vec<Arc<GateState>>>,
}

impl<S: Store> Gated<S> {
    /// Passes requests to `inner`.
    pub fn new(inner: S) -> Self {
        Gated { inner, gates: Mutex::new(Vec::new()) }
    }

    /// Holds the next `op` request whose object name (or listed prefix) starts with `name`.
    pub fn gate(&self, op: Op, name: &str) -> Gate {
        let state = Arc::new(GateState {
            op,
            name: name.to_owned(),
            armed: true.into(),
            reached: Semaphore::new(0),
            released: Semaphore::new(0),
        });
        self.gates.lock().unwrap_or_else(|e| e.into_inner()).push(state.clone());
        Gate(state)
    }

    async fn pass(&self, op: Op, name: &str) {
        use std::sync::atomic::Ordering;
        let hit = {
            let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
            gates
                .iter()
                .find(|g| g.op == op && name.starts_with(&g.name) && g.armed.swap(false, Ordering::SeqCst))
                .cloned()
        };
        if let Some(g) = hit {
            g.reached.add_permits(1);
            if let Ok(permit) = g.released.acquire().await {
                permit.forget();
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for Gated<S> {
    fn read_chunk(&self) -> u64 {
        self.inner.read_chunk()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn get(&self, name: &str) -> Result<Bytes> {
        self.pass(Op::Get, name).await;
        self.inner.get(name).await
    }

    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        self.pass(Op::GetRange, name).await;
        self.inner.get_range(name, range).await
    }

    async fn get_range_pinned(&self, name: &str, range: Range<u64>, version: Option<&str>) -> Result<(Bytes, String)> {
        self.pass(Op::GetRange, name).await;
        self.inner.get_range_pinned(name, range, version).await
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        self.pass(Op::Head, name).await;
        self.inner.head(name).await
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        self.pass(Op::Put, name).await;
        self.inner.put(name, data, mode).await
    }

    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create(name)
    }

    fn create_resumable(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create_resumable(name)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.pass(Op::List, prefix).await;
        self.inner.list(prefix).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.pass(Op::Delete, name).await;
        self.inner.delete(name).await
    }

    async fn abort_uploads(&self, names: &[String]) -> Result<usize> {
        self.inner.abort_uploads(names).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStore;

    #[tokio::test]
    async fn a_gate_holds_one_matching_request_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Gated::new(LocalStore::new(dir.path())));
        let gate = store.gate(Op::Put, "b");
        // Other names and other operations pass.
        store.put("a", Bytes::from_static(b"1"), PutMode::Overwrite).await.unwrap();
        let s = store.clone();
        let held = tokio::spawn(async move { s.put("b", Bytes::from_static(b"2"), PutMode::Overwrite).await });
        gate.reached().await;
        assert!(store.head("b").await.is_err(), "held before the write");
        gate.release();
        held.await.unwrap().unwrap();
        // Once only: the next matching request passes.
        store.put("b", Bytes::from_static(b"3"), PutMode::Overwrite).await.unwrap();
        assert_eq!(&store.get("b").await.unwrap()[..], b"3");
    }
}

//! An HTTP gateway that serves every record of a haypack archive by its key, like a static file
//! server: `GET /KEY` is the record, `GET /?prefix=P&after=K&limit=N` a page of keys as JSON,
//! `GET /healthz` a liveness probe.
//!
//! ```
//! use std::sync::Arc;
//! use haypack_serve::{ServeOptions, Server, opener};
//! use haypack_store::LocalStore;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let src = tempfile::tempdir()?;
//! # std::fs::write(src.path().join("hello.txt"), "hello, haypack")?;
//! # let dest = tempfile::tempdir()?;
//! # let store = Arc::new(LocalStore::new(dest.path()));
//! # haypack_pack::pack(src.path(), store.clone(), Default::default(), Arc::new(())).await?;
//! let options = ServeOptions { listen: "127.0.0.1:0".parse()?, ..ServeOptions::default() };
//! let server = Server::bind(opener(store, None), options).await?;
//! println!("serving on http://{}", server.local_addr());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! server.run(async { stopped.await.ok(); }).await?; // returns once `stop` fires or drops
//! # Ok(())
//! # }
//! ```
//!
//! Each request takes the archive generation current when it arrives (an `Arc<Archive>`) and
//! keeps it until its response body ends; a reload swaps in the next generation atomically for
//! later requests. Nothing is shared between requests but that `Arc`, the reader's index-block
//! cache (a short lock, never held across a read) and a semaphore bounding upstream reads.

mod error;
mod handler;
mod request;
mod timeout;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use haypack_read::Archive;
use haypack_store::Store;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use crate::error::{Error, Result};
use crate::timeout::WriteTimeout;

/// Opens the archive to serve: called once at start and again on every reload.
pub type Opener = Arc<dyn Fn() -> BoxFuture<'static, haypack_read::Result<Archive>> + Send + Sync>;

/// An [`Opener`] for the archive in `store`, keeping index blocks in `cache_dir` if given.
pub fn opener(store: Arc<dyn Store>, cache_dir: Option<std::path::PathBuf>) -> Opener {
    Arc::new(move || {
        let (store, cache_dir) = (store.clone(), cache_dir.clone());
        Box::pin(async move { Archive::open_with_cache(store, cache_dir).await })
    })
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The `Cache-Control` header sent with every record.
    pub cache_control: String,
    /// Open the archive again this often and serve a new generation if there is one.
    pub reload_every: Option<Duration>,
    /// The longest a request may take to get its response head (504 after that); also the
    /// longest a client may take to send its request head.
    pub request_timeout: Duration,
    /// The longest a client may take nothing of a response it is sent before its connection
    /// is closed: a client that stops reading cannot keep a response (and what it holds) for
    /// longer.
    pub write_timeout: Duration,
    /// Reads from the store in flight at once, across all requests; more wait their turn. A
    /// read holds its slot while it runs, never while a client takes the bytes.
    pub max_upstream: usize,
    /// On shutdown, how long requests in flight get to finish before their connections close.
    pub drain_timeout: Duration,
    /// The most keys one listing page may hold (and the default page size).
    pub max_page: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cache_control: "public, max-age=300".into(),
            reload_every: None,
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_upstream: 64,
            drain_timeout: Duration::from_secs(30),
            max_page: 1000,
        }
    }
}

/// What every request handler sees.
struct State {
    current: ArcSwap<Archive>,
    opener: Opener,
    upstream: Arc<tokio::sync::Semaphore>,
    options: ServeOptions,
    /// One reload at a time: two racing would open the archive twice for nothing.
    reloading: tokio::sync::Mutex<()>,
}

impl State {
    /// Opens the archive again and serves its generation if the manifest changed; with `seen`,
    /// only if `seen` is still the one served (a request that found its generation gone asks
    /// for one reload, not one per request).
    async fn reload(&self, seen: Option<&Arc<Archive>>) -> Result<u64> {
        let _one = self.reloading.lock().await;
        let old = self.current.load_full();
        if seen.is_some_and(|seen| !Arc::ptr_eq(seen, &old)) {
            return Ok(old.manifest().generation);
        }
        let fresh = (self.opener)().await?;
        if fresh.manifest() != old.manifest() {
            tracing::info!(
                from = old.manifest().generation,
                to = fresh.manifest().generation,
                "serving a new generation"
            );
            self.current.store(Arc::new(fresh));
        }
        Ok(self.current.load().manifest().generation)
    }
}

/// A server bound to its address with its archive open, not yet accepting.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("listener", &self.listener).finish_non_exhaustive()
    }
}

/// Reloads the archive of a running [`Server`] (from a signal handler, say).
#[derive(Clone)]
pub struct Handle {
    state: Arc<State>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("generation", &self.generation()).finish()
    }
}

impl Handle {
    /// Opens the archive again; if its manifest changed, later requests see the new generation
    /// while requests in flight finish on theirs. Returns the generation served from now on.
    /// On failure the current generation stays.
    pub async fn reload(&self) -> Result<u64> {
        self.state.reload(None).await
    }

    /// The generation new requests are served from.
    pub fn generation(&self) -> u64 {
        self.state.current.load().manifest().generation
    }
}

impl Server {
    /// Opens the archive and binds the listening socket.
    pub async fn bind(opener: Opener, options: ServeOptions) -> Result<Server> {
        let archive = opener().await?;
        let listener =
            TcpListener::bind(options.listen).await.map_err(|source| Error::Bind { addr: options.listen, source })?;
        let state = State {
            current: ArcSwap::from_pointee(archive),
            opener,
            upstream: Arc::new(tokio::sync::Semaphore::new(options.max_upstream.max(1))),
            options,
            reloading: tokio::sync::Mutex::new(()),
        };
        Ok(Server { listener, state: Arc::new(state) })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.options.listen)
    }

    /// A handle to reload the archive while it runs.
    pub fn handle(&self) -> Handle {
        Handle { state: self.state.clone() }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight finish
    /// (up to the drain timeout) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let Server { listener, state } = self;
        tracing::info!(
            addr = %listener.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()),
            generation = state.current.load().manifest().generation,
            "serving"
        );
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = pin!(shutdown);
        let mut tick = state.options.reload_every.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let handle = Handle { state: state.clone() };
        loop {
            let reload_due = async {
                match &mut tick {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Small responses: send them now rather than wait for more to coalesce.
                        let _ = stream.set_nodelay(true);
                        let timeout = state.options.request_timeout;
                        let handler_state = state.clone();
                        let service = hyper::service::service_fn(move |req| {
                            handler::handle(handler_state.clone(), req, peer)
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(timeout)
                            .serve_connection(
                                TokioIo::new(WriteTimeout::new(stream, state.options.write_timeout)),
                                service,
                            );
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(%peer, "connection ended: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors, usually: wait for connections to close.
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = reload_due => {
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle.reload().await {
                            tracing::warn!("reload failed, still serving generation {}: {e}", handle.generation());
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        tracing::info!("shutting down: letting requests in flight finish");
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(state.options.drain_timeout) => {
                tracing::warn!("requests still in flight after {:?}: closing them", state.options.drain_timeout);
            }
        }
        Ok(())
    }
}

/// Binds and serves until `shutdown` completes: [`Server::bind`] then [`Server::run`].
pub async fn serve(opener: Opener, options: ServeOptions, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    Server::bind(opener, options).await?.run(shutdown).await
}

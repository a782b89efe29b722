//! The one error type of the server. Errors while answering a request are not here: they become
//! HTTP statuses (see `handler.rs`) and access-log lines.

use std::net::SocketAddr;

/// What stopped the server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The archive could not be opened (at start, or on a reload).
    #[error("opening the archive to serve: {0}")]
    Open(#[from] haypack_read::Error),
}

/// The server's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The proxy's one error type: what was refused or failed, and for which address.

use std::io;
use std::net::SocketAddr;

pub type ProxyResult<T> = Result<T, ProxyError>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The workplace forbids traffic to anything but loopback, so the proxy will neither
    /// listen on nor connect to another address.
    #[error("{what} address {addr} is not loopback; only 127.0.0.0/8 and ::1 are allowed")]
    NotLoopback { what: &'static str, addr: SocketAddr },
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Io(#[from] io::Error),
}

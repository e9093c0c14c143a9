//! A hyper-util connector: plain TCP for `http` URIs, TLS for `https` ones, where the server
//! must prove the hub the topology expects at that address (or, for the CLI, the URL's host).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::TlsError;
use crate::identity::{hub_server_name, validate_hub_id};

/// Longest wait for a TCP connection to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the TLS handshake once connected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which name an `https` server must prove.
#[derive(Debug, Clone)]
pub enum NameMode {
    /// Hub to hub: `authority` (`host:port` of a peer endpoint URL; port 443 when left out) ->
    /// hub id. The server must prove `<hub id>.hub.valley`, whatever the URL's host; an `https`
    /// URI whose authority is not listed is refused without dialling.
    Hubs(HashMap<String, String>),
    /// Standard verification: the server must prove the URL's host (the admin CLI).
    UrlHost,
}

#[derive(Debug)]
enum Names {
    Hubs(RwLock<HashMap<String, String>>),
    UrlHost,
}

/// A `tower_service::Service<Uri>` for `hyper_util::client::legacy::Client`. Clones share the
/// configuration and the hub map.
#[derive(Debug, Clone)]
pub struct PeerConnector {
    config: Arc<ClientConfig>,
    names: Arc<Names>,
}

/// `host:port`, host lowercased, the port spelled out: the key of the hub map.
fn authority_key(host: &str, port: u16) -> String {
    format!("{}:{port}", host.to_ascii_lowercase())
}

fn normalize_hubs(hubs: HashMap<String, String>) -> Result<HashMap<String, String>, TlsError> {
    let mut out = HashMap::with_capacity(hubs.len());
    for (authority, id) in hubs {
        validate_hub_id(&id)?;
        let parsed: http::uri::Authority = authority.parse().map_err(|_| TlsError::BadUri {
            uri: authority.clone(),
            reason: "not a host:port authority",
        })?;
        out.insert(authority_key(parsed.host(), parsed.port_u16().unwrap_or(443)), id);
    }
    Ok(out)
}

impl PeerConnector {
    /// A connector over `config` (from [`crate::PeerTls::config`] or
    /// [`crate::cli_client_config`]). Fails on a hub id or authority that is not valid.
    pub fn new(config: Arc<ClientConfig>, mode: NameMode) -> Result<Self, TlsError> {
        let names = match mode {
            NameMode::Hubs(hubs) => Names::Hubs(RwLock::new(normalize_hubs(hubs)?)),
            NameMode::UrlHost => Names::UrlHost,
        };
        Ok(PeerConnector {
            config,
            names: Arc::new(names),
        })
    }

    /// Replaces the hub map (the topology changed); every clone sees the new map. A connector
    /// in [`NameMode::UrlHost`] ignores it.
    pub fn set_hubs(&self, hubs: HashMap<String, String>) -> Result<(), TlsError> {
        if let Names::Hubs(map) = &*self.names {
            let hubs = normalize_hubs(hubs)?;
            *map.write().unwrap_or_else(|p| p.into_inner()) = hubs;
        }
        Ok(())
    }

    /// The name an `https` server at `host:port` must prove.
    fn server_name(&self, host: &str, port: u16) -> Result<ServerName<'static>, TlsError> {
        let name = match &*self.names {
            Names::UrlHost => host.trim_start_matches('[').trim_end_matches(']').to_string(),
            Names::Hubs(map) => {
                let key = authority_key(host, port);
                let map = map.read().unwrap_or_else(|p| p.into_inner());
                match map.get(&key) {
                    Some(id) => hub_server_name(id),
                    None => return Err(TlsError::UnknownPeer { authority: key }),
                }
            }
        };
        ServerName::try_from(name.clone()).map_err(|_| TlsError::BadUri {
            uri: name,
            reason: "host is not a valid TLS server name",
        })
    }

    async fn connect(self, uri: Uri) -> Result<PeerStream, TlsError> {
        let bad = |reason| TlsError::BadUri {
            uri: uri.to_string(),
            reason,
        };
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("scheme is neither http nor https")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // Decide the name before dialling: an unknown peer is never contacted.
        let server_name = if tls { Some(self.server_name(host, port)?) } else { None };
        let addr = authority_key(host, port);
        let dial_host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((dial_host, port)))
            .await
            .map_err(|_| TlsError::Timeout {
                what: "TCP connect",
                addr: addr.clone(),
                timeout_s: CONNECT_TIMEOUT.as_secs(),
            })?
            .map_err(|source| TlsError::Connect {
                addr: addr.clone(),
                source,
            })?;
        tcp.set_nodelay(true).map_err(|source| TlsError::Connect {
            addr: addr.clone(),
            source,
        })?;
        let Some(server_name) = server_name else {
            return Ok(PeerStream(Inner::Plain(TokioIo::new(tcp))));
        };
        let expected = server_name.to_str().into_owned();
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, tcp))
            .await
            .map_err(|_| TlsError::Timeout {
                what: "TLS handshake",
                addr: addr.clone(),
                timeout_s: HANDSHAKE_TIMEOUT.as_secs(),
            })?
            .map_err(|source| TlsError::Handshake {
                addr,
                server_name: expected,
                source,
            })?;
        Ok(PeerStream(Inner::Tls(Box::new(TokioIo::new(stream)))))
    }
}

impl tower_service::Service<Uri> for PeerConnector {
    type Response = PeerStream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<PeerStream, TlsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TlsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// A connection made by [`PeerConnector`]: plain TCP or TLS over TCP.
#[derive(Debug)]
pub struct PeerStream(Inner);

#[derive(Debug)]
enum Inner {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl PeerStream {
    /// The TLS session, for a TLS connection (e.g. to read the peer's certificate).
    pub fn tls(&self) -> Option<&rustls::ClientConnection> {
        match &self.0 {
            Inner::Plain(_) => None,
            Inner::Tls(io) => Some(io.inner().get_ref().1),
        }
    }
}

impl Connection for PeerStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for PeerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(io) => Pin::new(io).poll_flush(cx),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Plain(io) => io.is_write_vectored(),
            Inner::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Inner::Tls(io) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

//! Client configurations: a hub dialling its peers (network CA only, its own certificate for
//! mTLS) and the admin CLI (a given CA, standard host name verification).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::{ClientConfig, ConfigBuilder, RootCertStore};

use crate::TlsError;
use crate::connector::{NameMode, PeerConnector};
use crate::pem::{load_roots, provider, read_certs};
use crate::reload::ReloadingCert;
use crate::server::ALPN_HTTP1;

/// Where the CLI looks for the system's trust store when it is given no CA.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// TLS for a hub dialling its peers: trusts only the network CA and presents the hub's own
/// certificate (reloaded when its files change, like the server's). Every connection makes a
/// full handshake (no resumption), so each one proves both hubs' current certificates.
#[derive(Debug, Clone)]
pub struct PeerTls {
    config: Arc<ClientConfig>,
    cert: Arc<ReloadingCert>,
}

impl PeerTls {
    /// Loads the network CA and the hub's own certificate and key.
    pub fn load(ca_pem: &Path, own_cert: &Path, own_key: &Path) -> Result<Self, TlsError> {
        let cert = Arc::new(ReloadingCert::load(own_cert, own_key, provider())?);
        let mut config = builder(load_roots(ca_pem)?)?.with_client_cert_resolver(cert.clone());
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        // No session resumption: a resumed session carries the identities of the handshake it
        // resumes, so after a rotation the peer would keep seeing our old certificate (and we
        // its). Connections are pooled, so full handshakes are rare.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(PeerTls {
            config: Arc::new(config),
            cert,
        })
    }

    /// The rustls configuration: roots = the network CA, client auth = this hub.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// A connector that verifies each `https` peer as the hub `hubs` maps its authority to
    /// (`host:port` -> hub id).
    pub fn connector(&self, hubs: HashMap<String, String>) -> Result<PeerConnector, TlsError> {
        PeerConnector::new(self.config.clone(), NameMode::Hubs(hubs))
    }

    /// Re-reads the hub's own certificate and key now if they changed (see
    /// [`crate::ServerTls::reload_now`]).
    pub fn reload_now(&self) -> Result<bool, TlsError> {
        self.cert.reload_now()
    }
}

/// A client configuration for the admin CLI talking to `https://...`: roots = the CA in
/// `ca_pem` (the network CA), or without it the system trust store; the server must prove the
/// URL's host name. No client certificate.
pub fn cli_client_config(ca_pem: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let roots = match ca_pem {
        Some(path) => load_roots(path)?,
        None => system_roots()?,
    };
    let mut config = builder(roots)?.with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// A connector for a network without TLS: `http` URIs only (an `https` one is refused before
/// dialling, as no peer is known to it).
pub fn plain_connector() -> Result<PeerConnector, TlsError> {
    let config = builder(RootCertStore::empty())?.with_no_client_auth();
    PeerConnector::new(Arc::new(config), NameMode::Hubs(HashMap::new()))
}

fn builder(roots: RootCertStore) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots))
}

/// The system trust store: `SSL_CERT_FILE`, else the first bundle of [`SYSTEM_BUNDLES`] found.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = env.into_iter().chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
    for path in candidates {
        if !path.is_file() {
            continue;
        }
        let mut roots = RootCertStore::empty();
        // A system bundle may hold a few certificates rustls cannot use; skip those.
        let (added, _ignored) = roots.add_parsable_certificates(read_certs(&path)?);
        if added > 0 {
            return Ok(roots);
        }
    }
    Err(TlsError::NoSystemRoots {
        tried: SYSTEM_BUNDLES.join(", "),
    })
}

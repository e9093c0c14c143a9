//! The server side of a Valley port: the hub's certificate (reloaded when its files change) and,
//! optionally, client certificates checked against the network CA.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use crate::TlsError;
use crate::pem::{load_roots, provider};
use crate::reload::ReloadingCert;

/// The only application protocol Valley ports speak.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

/// TLS for one listening port.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    cert: Arc<ReloadingCert>,
}

impl ServerTls {
    /// Loads the port's certificate and key; with `client_ca`, clients may present a certificate,
    /// which must then chain to that CA (see [`crate::peer_hub`]). Clients without one are still
    /// accepted: the admin CLI has none; a peer hub presents its own.
    pub fn load(cert_pem: &Path, key_pem: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let provider = provider();
        let cert = Arc::new(ReloadingCert::load(cert_pem, key_pem, provider.clone())?);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(load_roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Config(format!("client verifier for {}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            cert,
        })
    }

    /// An acceptor for the port's connections; cheap, all acceptors share the reloading pair.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// The rustls configuration behind [`Self::acceptor`].
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Re-reads the certificate and key files now if they changed (handshakes do it at most once
    /// per second by themselves). Ok(true): reloaded; Ok(false): unchanged; Err: changed but
    /// unusable, the previous pair keeps serving.
    pub fn reload_now(&self) -> Result<bool, TlsError> {
        self.cert.reload_now()
    }
}

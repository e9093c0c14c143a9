//! The TLS layer of every Valley port.
//!
//! Identity model:
//! - A network has one CA ([`init_network`] makes it). The topology pins it by the SHA-256 of
//!   its DER certificate ([`fingerprint_sha256`], lowercase hex), so a hub trusts no other CA.
//! - Each hub has one certificate, issued by that CA, naming `<hub-id>.hub.valley`
//!   ([`hub_server_name`], [`HUB_NAME_SUFFIX`]) plus optional host names and IPs. Hub ids are
//!   DNS labels ([`validate_hub_id`]). The same certificate serves the hub's ports and
//!   authenticates the hub when it dials a peer (serverAuth and clientAuth).
//! - A peer is the hub its *verified* certificate names ([`peer_hub`]), never what a header or
//!   a URL claims. A port accepts clients without a certificate (the admin CLI); a client that
//!   presents one must chain to the network CA or the handshake fails.
//! - Dialling a peer ([`PeerConnector`] in [`NameMode::Hubs`]) checks the server proves the hub
//!   the topology expects at that address, `<hub-id>.hub.valley`, not the URL's host; an `https`
//!   address no hub is known at is never dialled. The admin CLI ([`cli_client_config`],
//!   [`NameMode::UrlHost`]) does standard host name verification against the CA it is given.
//! - Certificates rotate without restarts: servers and dialling hubs re-read their certificate
//!   and key when the files change, and keep the old pair if the new one is unusable.
//!
//! Crypto is rustls with the ring provider only; TLS 1.2 and 1.3; ALPN `http/1.1`.

mod certs;
mod client;
mod connector;
mod error;
mod identity;
mod pem;
mod reload;
mod server;
mod signing;

pub use certs::{CA_VALIDITY_DAYS, HUB_VALIDITY_DAYS, HubCertSpec, NetworkCerts, init_network, issue_hub_cert};
pub use client::{PeerTls, cli_client_config, plain_connector};
pub use connector::{CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, NameMode, PeerConnector, PeerStream};
pub use error::TlsError;
pub use identity::{
    HUB_ID_LEN_MAX, HUB_NAME_SUFFIX, fingerprint_sha256, hub_id_from_dns_name, hub_server_name, peer_hub,
    peer_hub_from_certs, pem_fingerprint, validate_hub_id,
};
pub use pem::{load_certs, load_key, load_roots};
pub use reload::RELOAD_CHECK_INTERVAL;
pub use server::ServerTls;
pub use signing::{HubSignatureCheck, HubSigner, Signed};
/// Re-exported so callers name the same rustls and tokio-rustls versions as this crate.
pub use {rustls, tokio_rustls};

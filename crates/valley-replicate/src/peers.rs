//! [`Peers`]: signed calls to the other hubs of the network, and the checks of their calls to
//! this one (network secret, replays, refusals).

use std::sync::Arc;

use serde::Serialize;
use valley_policy::Topology;

use crate::auth::ReplayGuard;
use crate::client::{Payload, PeerClient, PeerError};
use crate::hub::HubError;
use crate::refusals::RefusalLimiter;

pub struct Peers {
    /// This hub.
    id: String,
    topology: Arc<Topology>,
    pub(crate) client: PeerClient,
    pub(crate) secret: Vec<u8>,
    /// Signatures of peer calls already taken (a replayed call is refused).
    pub(crate) replays: ReplayGuard,
    /// Refused unauthenticated calls: counted, audited once per interval.
    pub refusals: RefusalLimiter,
}

/// The connector to every peer: over mutual TLS when the topology pins a network CA (each peer
/// endpoint must then be `https`, and the server must prove it is the hub of that endpoint),
/// plain HTTP otherwise.
fn peer_connector(
    topology: &Topology,
    tls: Option<&valley_tls::PeerTls>,
) -> Result<valley_tls::PeerConnector, HubError> {
    let invalid = |e: valley_tls::TlsError| HubError::Invalid(e.to_string());
    match (topology.tls(), tls) {
        (None, None) => valley_tls::plain_connector().map_err(invalid),
        (None, Some(_)) => Err(HubError::Invalid(
            "TLS certificates were given but the topology pins no network CA ([tls] ca_sha256)".into(),
        )),
        (Some(_), None) => Err(HubError::Invalid(
            "the topology pins a network CA ([tls]): this hub needs --tls-cert, --tls-key and --tls-ca".into(),
        )),
        (Some(_), Some(tls)) => {
            let mut map = std::collections::HashMap::new();
            for hub in topology.hubs() {
                let endpoint = hub.peer_endpoint.as_deref().unwrap_or("");
                let uri: http::Uri = endpoint.parse().map_err(|_| {
                    HubError::Invalid(format!("hub {:?}: peer_endpoint {endpoint:?} is not a URL", hub.id))
                })?;
                if uri.scheme_str() != Some("https") {
                    return Err(HubError::Invalid(format!(
                        "hub {:?}: the topology pins a network CA, so its peer_endpoint must be https, not {endpoint:?}",
                        hub.id
                    )));
                }
                let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
                map.insert(authority, hub.id.clone());
            }
            tls.connector(map).map_err(invalid)
        }
    }
}

impl Peers {
    /// The peers of hub `id`, called with `network_secret` (over TLS when `tls` is given).
    pub(crate) fn open(
        id: &str,
        topology: Arc<Topology>,
        network_secret: Vec<u8>,
        tls: Option<&valley_tls::PeerTls>,
    ) -> Result<Self, HubError> {
        let connector = peer_connector(&topology, tls)?;
        let client = PeerClient::new(
            network_secret.clone(),
            id.to_owned(),
            topology.hash().to_owned(),
            connector,
        )
        .with_rules_hash(topology.rules_hash().to_owned());
        Ok(Self {
            id: id.to_owned(),
            topology,
            client,
            secret: network_secret,
            replays: ReplayGuard::new(),
            refusals: RefusalLimiter::new("peer request refused"),
        })
    }

    /// Every other hub of the topology.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.topology
            .hubs()
            .filter(|h| h.id != self.id)
            .map(|h| h.id.clone())
            .collect()
    }

    /// A GET of the peer API of `peer` (`route` under the peer prefix), for status views.
    pub async fn get(&self, peer: &str, route: &str) -> Result<bytes::Bytes, PeerError> {
        self.get_hinted(peer, route, 0).await
    }

    /// [`Peers::get`] for answers that may be large and slow to compute (residency
    /// evidence: a bucket's versions and audit records), with a timeout to match.
    pub(crate) async fn get_large(&self, peer: &str, route: &str) -> Result<bytes::Bytes, PeerError> {
        self.get_hinted(peer, route, 16 << 20).await
    }

    async fn get_hinted(&self, peer: &str, route: &str, bytes_hint: u64) -> Result<bytes::Bytes, PeerError> {
        let endpoint = self.endpoint_of(peer)?;
        let path = format!("{}{route}", crate::wire::PREFIX);
        self.client
            .call(http::Method::GET, &endpoint, &path, &[], Payload::empty(), bytes_hint)
            .await
    }

    /// Where `peer` takes peer calls.
    pub(crate) fn endpoint_of(&self, peer: &str) -> Result<String, PeerError> {
        self.topology
            .hub(peer)
            .and_then(|h| h.peer_endpoint.clone())
            .ok_or_else(|| PeerError::Unreachable(format!("hub {peer} has no peer endpoint")))
    }

    /// A signed POST of a JSON body to `peer`, answered with JSON.
    pub(crate) async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        peer: &str,
        route: &str,
        body: &impl Serialize,
    ) -> Result<T, PeerError> {
        let endpoint = self.endpoint_of(peer)?;
        let body = serde_json::to_vec(body).map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let path = format!("{}{route}", crate::wire::PREFIX);
        let headers = [("content-type", "application/json".to_owned())];
        let answer = self
            .client
            .call(
                http::Method::POST,
                &endpoint,
                &path,
                &headers,
                Payload::Bytes(body.into()),
                0,
            )
            .await?;
        serde_json::from_slice(&answer).map_err(|e| PeerError::Failed {
            status: 200,
            message: format!("malformed answer to {route}: {e}"),
        })
    }
}

//! The peer client: signed HTTP/1.1 requests to other hubs.

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::auth;

/// Longest wait for a small request (control, delete, hello).
const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Slowest transfer rate tolerated before an object transfer is abandoned and retried.
const TRANSFER_BYTES_PER_SEC_MIN: u64 = 64 * 1024;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Why a peer call did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// Could not reach the peer or it timed out: retry later.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer refused by policy (403): retrying will not help until the policy changes.
    #[error("refused: {0}")]
    Refused(String),
    /// Any other failure answer (corrupt transfer, unknown bucket yet, topology mismatch…).
    #[error("HTTP {status}: {message}")]
    Failed { status: u16, message: String },
}

#[derive(Clone)]
pub struct PeerClient {
    http: Client<HttpConnector, Body>,
    secret: std::sync::Arc<Vec<u8>>,
    identity: String,
    topology_hash: String,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A request body streaming the given chunks.
pub fn streaming(stream: valley_store::ByteStream) -> Body {
    BodyExt::boxed_unsync(StreamBody::new(stream.map_ok(Frame::data)))
}

impl PeerClient {
    #[must_use]
    pub fn new(secret: Vec<u8>, identity: String, topology_hash: String) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            http,
            secret: std::sync::Arc::new(secret),
            identity,
            topology_hash,
        }
    }

    /// Sends a signed request; `bytes_hint` stretches the timeout for large bodies.
    pub async fn call(
        &self,
        method: http::Method,
        endpoint: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Body,
        bytes_hint: u64,
    ) -> Result<Bytes, PeerError> {
        let timeout = SMALL_REQUEST_TIMEOUT + Duration::from_secs(bytes_hint / TRANSFER_BYTES_PER_SEC_MIN);
        tokio::time::timeout(timeout, async {
            let response = self.open(method, endpoint, path_and_query, headers, body).await?;
            Ok(response
                .into_body()
                .collect()
                .await
                .map_err(|e| PeerError::Unreachable(e.to_string()))?
                .to_bytes())
        })
        .await
        .map_err(|_| PeerError::Unreachable(format!("no answer within {}s", timeout.as_secs())))?
    }

    /// Sends a signed request and returns a successful response with its body still to be
    /// read (for streaming answers); a failure answer is read and turned into the error.
    pub async fn open(
        &self,
        method: http::Method,
        endpoint: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<http::Response<hyper::body::Incoming>, PeerError> {
        let time = auth::unix_now();
        let signature = auth::sign(&self.secret, method.as_str(), path_and_query, &self.identity, time);
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", endpoint.trim_end_matches('/'), path_and_query))
            .header(auth::HEADER_IDENTITY, &self.identity)
            .header(auth::HEADER_TIME, time.to_string())
            .header(auth::HEADER_SIGNATURE, signature)
            .header(auth::HEADER_TOPOLOGY, &self.topology_hash);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder.body(body).map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = tokio::time::timeout(SMALL_REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| PeerError::Unreachable("error answer cut off".into()))?
            .map_err(|e| PeerError::Unreachable(e.to_string()))?
            .to_bytes();
        let message = String::from_utf8_lossy(&body).into_owned();
        if status == http::StatusCode::FORBIDDEN {
            return Err(PeerError::Refused(message));
        }
        Err(PeerError::Failed {
            status: status.as_u16(),
            message,
        })
    }
}

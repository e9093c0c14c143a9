//! The peer client: signed HTTP/1.1 requests to other hubs.

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use valley_tls::PeerConnector;

use crate::auth;

/// Longest wait for a small request (control, delete, hello).
const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a pooled connection is kept unused: under the servers' idle timeout, so a request is
/// not sent on a connection the server is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
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
    http: Client<PeerConnector, Body>,
    secret: std::sync::Arc<Vec<u8>>,
    identity: String,
    topology_hash: String,
    /// Sent as `x-valley-rules` when set: the rule packs this hub judges by.
    rules_hash: Option<String>,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A request body streaming the given chunks.
pub fn streaming(stream: valley_store::ByteStream) -> Body {
    BodyExt::boxed_unsync(StreamBody::new(stream.map_ok(Frame::data)))
}

/// A request's body, as its signature covers it.
pub enum Payload {
    /// Hashed into the signature (control records, deletes, every small body).
    Bytes(Bytes),
    /// Streamed unhashed: only for bodies a signed header binds end to end (an object's bytes
    /// by the ETag and size in `x-valley-version`, a chunk's by `x-valley-chunk-md5`).
    Checked(valley_store::ByteStream),
}

impl Payload {
    #[must_use]
    pub fn empty() -> Self {
        Payload::Bytes(Bytes::new())
    }
}

impl PeerClient {
    /// A client signing with `secret` as `identity`, dialling through `connector` (TLS with
    /// the server's identity checked, or plain HTTP; see `valley_tls`).
    #[must_use]
    pub fn new(secret: Vec<u8>, identity: String, topology_hash: String, connector: PeerConnector) -> Self {
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Self {
            http,
            secret: std::sync::Arc::new(secret),
            identity,
            topology_hash,
            rules_hash: None,
        }
    }

    /// The same client, telling peers the hash of the rule packs it judges by.
    #[must_use]
    pub fn with_rules_hash(mut self, rules_hash: String) -> Self {
        self.rules_hash = Some(rules_hash);
        self
    }

    /// Sends a signed request; `bytes_hint` stretches the timeout for large bodies.
    pub async fn call(
        &self,
        method: http::Method,
        endpoint: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Payload,
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
        body: Payload,
    ) -> Result<http::Response<hyper::body::Incoming>, PeerError> {
        let bad = |e: String| PeerError::Unreachable(format!("cannot build the request: {e}"));
        let mut map = http::HeaderMap::new();
        map.insert(
            auth::HEADER_TOPOLOGY,
            http::HeaderValue::from_str(&self.topology_hash).map_err(|e| bad(e.to_string()))?,
        );
        if let Some(rules) = &self.rules_hash {
            map.insert(
                auth::HEADER_RULES,
                http::HeaderValue::from_str(rules).map_err(|e| bad(e.to_string()))?,
            );
        }
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
            map.insert(
                name,
                http::HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?,
            );
        }
        let (content_sha256, body) = match body {
            Payload::Bytes(bytes) => (auth::sha256_hex(&bytes), full(bytes)),
            Payload::Checked(stream) => (auth::STREAMING_CHECKED.to_owned(), streaming(stream)),
        };
        auth::sign_request(
            &self.secret,
            method.as_str(),
            path_and_query,
            &self.identity,
            &content_sha256,
            &mut map,
        )
        .map_err(|e| bad(e.to_string()))?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", endpoint.trim_end_matches('/'), path_and_query))
            .body(body)
            .map_err(|e| bad(e.to_string()))?;
        *request.headers_mut() = map;
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

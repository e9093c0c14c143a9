//! A minimal S3 client: each request is signed in its `Authorization` header ([`crate::sigv4`],
//! unsigned payload) and sent by hyper 1 over a pooled HTTP/1.1 connection; rusty-s3 parses
//! ListObjectsV2 responses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use md5::{Digest, Md5};
use rusty_s3::actions::ListObjectsV2;
use url::Url;
use valley_tls::PeerConnector;

use crate::sigv4::{self, Signer};

/// Refuses any endpoint that is not on this machine's loopback: this tool only loads local servers.
pub fn loopback_endpoint(endpoint: &str) -> Result<Url> {
    let url: Url = endpoint
        .parse()
        .with_context(|| format!("endpoint {endpoint:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("endpoint {endpoint}: only http and https are supported");
    }
    let ok = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    if !ok {
        bail!("endpoint {endpoint}: only loopback hosts (127.0.0.0/8, ::1, localhost) are allowed");
    }
    Ok(url)
}

/// One bucket on one endpoint; cheap to clone (the connection pool and signer are shared).
#[derive(Clone)]
pub struct S3 {
    http: Client<PeerConnector, Full<Bytes>>,
    /// `host:port`, as sent in `Host` and signed.
    host: String,
    /// `http` or `https`.
    scheme: &'static str,
    bucket: String,
    signer: Arc<Signer>,
    timeout: Duration,
    /// Put on the bucket once created (`{bucket}` replaced by its name).
    bucket_policy: Option<Arc<str>>,
    bucket_encryption: Option<Arc<str>>,
    /// SSE-C: the customer key's three headers, sent (and signed) with every object request.
    customer_key: Option<Arc<[(&'static str, String); 3]>>,
}

impl S3 {
    /// A client of `endpoint`; an https one is verified against `ca` (the system's roots when
    /// none is given).
    pub fn new(
        endpoint: &Url,
        ca: Option<&std::path::Path>,
        bucket: &str,
        signer: Signer,
        pool: usize,
        timeout: Duration,
    ) -> Result<Self> {
        let host = match (endpoint.host_str(), endpoint.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            _ => bail!("endpoint {endpoint} has no host"),
        };
        // The same connector for both schemes (TCP_NODELAY either way).
        let conn = if endpoint.scheme() == "https" {
            let config = valley_tls::cli_client_config(ca).context("TLS configuration")?;
            PeerConnector::new(Arc::new(config), valley_tls::NameMode::UrlHost)?
        } else {
            valley_tls::plain_connector()?
        };
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Ok(Self {
            http,
            scheme: if endpoint.scheme() == "https" { "https" } else { "http" },
            host,
            bucket: bucket.to_owned(),
            signer: Arc::new(signer),
            timeout,
            bucket_policy: None,
            bucket_encryption: None,
            customer_key: None,
        })
    }

    /// The same endpoint and connection pool, another bucket.
    pub fn with_bucket(&self, bucket: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            ..self.clone()
        }
    }

    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    #[must_use]
    pub fn with_bucket_policy(mut self, policy: Option<String>) -> Self {
        self.bucket_policy = policy.map(Arc::from);
        self
    }

    #[must_use]
    pub fn with_bucket_encryption(mut self, algorithm: Option<String>) -> Self {
        self.bucket_encryption = algorithm.map(Arc::from);
        self
    }

    /// Every object written and read with a customer key (SSE-C), this random one.
    #[must_use]
    pub fn with_customer_key(mut self, on: bool) -> Self {
        use base64::Engine as _;
        self.customer_key = on.then(|| {
            let key: [u8; 32] = rand::random();
            let b64 = base64::engine::general_purpose::STANDARD;
            Arc::new([
                ("x-amz-server-side-encryption-customer-algorithm", "AES256".to_owned()),
                ("x-amz-server-side-encryption-customer-key", b64.encode(key)),
                (
                    "x-amz-server-side-encryption-customer-key-md5",
                    b64.encode(Md5::digest(key)),
                ),
            ])
        });
        self
    }

    pub fn bucket_name(&self) -> &str {
        &self.bucket
    }

    /// Signs and sends one request for `key` (or the bucket) with the canonical `query`.
    async fn send(&self, method: Method, key: Option<&str>, query: &str, body: Bytes) -> Result<Response<Incoming>> {
        let path = sigv4::encode_path(&self.bucket, key);
        let customer: Vec<(&str, &str)> = match (&self.customer_key, key) {
            (Some(headers), Some(_)) => headers.iter().map(|(n, v)| (*n, v.as_str())).collect(),
            _ => Vec::new(),
        };
        let signed = self.signer.sign(method.as_str(), &self.host, &path, query, &customer);
        let uri = if query.is_empty() {
            format!("{}://{}{path}", self.scheme, self.host)
        } else {
            format!("{}://{}{path}?{query}", self.scheme, self.host)
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-amz-date", signed.amz_date)
            .header("x-amz-content-sha256", sigv4::UNSIGNED_PAYLOAD)
            .header(hyper::header::AUTHORIZATION, signed.authorization);
        for (name, value) in customer {
            req = req.header(name, value);
        }
        let req = req.body(Full::new(body)).context("building request")?;
        self.http.request(req).await.context("sending request")
    }

    /// Runs `op` under the request timeout.
    async fn timed<T>(&self, what: &str, op: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(r) => r.with_context(|| what.to_owned()),
            Err(_) => bail!("{what}: timed out after {:?}", self.timeout),
        }
    }

    /// Creates the bucket; an existing bucket owned by us is fine.
    pub async fn create_bucket(&self) -> Result<()> {
        self.timed("create bucket", async {
            let resp = self.send(Method::PUT, None, "", Bytes::new()).await?;
            let status = resp.status();
            let text = read_text(resp).await?;
            if !(status.is_success() || (status == StatusCode::CONFLICT && text.contains("BucketAlreadyOwnedByYou"))) {
                bail!("{status}: {}", snippet(&text))
            }
            if let Some(algorithm) = &self.bucket_encryption {
                let body = Bytes::from(format!(
                    "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>\
                     <SSEAlgorithm>{algorithm}</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>\
                     </ServerSideEncryptionConfiguration>"
                ));
                let resp = self.send(Method::PUT, None, "encryption=", body).await?;
                let status = resp.status();
                let text = read_text(resp).await?;
                if !status.is_success() {
                    bail!("put bucket encryption: {status}: {}", snippet(&text));
                }
            }
            if let Some(policy) = &self.bucket_policy {
                let body = Bytes::from(policy.replace("{bucket}", &self.bucket));
                let resp = self.send(Method::PUT, None, "policy=", body).await?;
                let status = resp.status();
                let text = read_text(resp).await?;
                if !status.is_success() {
                    bail!("put bucket policy: {status}: {}", snippet(&text));
                }
            }
            Ok(())
        })
        .await
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.timed("PUT", async {
            let resp = self.send(Method::PUT, Some(key), "", body).await?;
            expect_ok(resp).await?;
            Ok(())
        })
        .await
    }

    /// Downloads an object, discarding its bytes; returns its size and, if asked, its MD5.
    pub async fn get(&self, key: &str, want_md5: bool) -> Result<(u64, Option<String>)> {
        self.timed("GET", async {
            let resp = self.send(Method::GET, Some(key), "", Bytes::new()).await?;
            let mut body = expect_ok(resp).await?.into_body();
            let mut n = 0u64;
            let mut hasher = want_md5.then(Md5::new);
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.context("reading body")?.into_data() {
                    n += data.len() as u64;
                    if let Some(h) = hasher.as_mut() {
                        h.update(&data);
                    }
                }
            }
            Ok((n, hasher.map(|h| hex::encode(h.finalize()))))
        })
        .await
    }

    /// HEAD; `Ok(None)` for 404, else the Content-Length.
    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.timed("HEAD", async {
            let resp = self.send(Method::HEAD, Some(key), "", Bytes::new()).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let resp = expect_ok(resp).await?;
            let len = resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .context("HEAD without Content-Length")?;
            Ok(Some(len))
        })
        .await
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        self.timed("DELETE", async {
            let resp = self.send(Method::DELETE, Some(key), "", Bytes::new()).await?;
            expect_ok(resp).await?;
            Ok(())
        })
        .await
    }

    /// One ListObjectsV2 page; returns the keys and the continuation token.
    pub async fn list_page(
        &self,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: usize,
    ) -> Result<(Vec<String>, Option<String>)> {
        let max_keys = max_keys.to_string();
        let mut pairs = vec![("list-type", "2"), ("max-keys", max_keys.as_str())];
        if let Some(s) = start_after {
            pairs.push(("start-after", s));
        }
        if let Some(t) = token {
            pairs.push(("continuation-token", t));
        }
        let query = sigv4::canonical_query(&pairs);
        self.timed("LIST", async {
            let resp = self.send(Method::GET, None, &query, Bytes::new()).await?;
            let text = read_text(expect_ok(resp).await?).await?;
            let parsed = ListObjectsV2::parse_response(&text)
                .map_err(|e| anyhow!("parsing ListObjectsV2 response: {e}: {}", snippet(&text)))?;
            let keys = parsed.contents.into_iter().map(|c| c.key).collect();
            Ok((keys, parsed.next_continuation_token))
        })
        .await
    }
}

/// Passes a 2xx response through; turns anything else into an error with the body's start.
async fn expect_ok(resp: Response<Incoming>) -> Result<Response<Incoming>> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = read_text(resp).await.unwrap_or_default();
    bail!("{status}: {}", snippet(&text))
}

async fn read_text(resp: Response<Incoming>) -> Result<String> {
    let bytes = resp.into_body().collect().await.context("reading body")?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn snippet(text: &str) -> String {
    text.chars().take(300).collect::<String>().replace('\n', " ")
}

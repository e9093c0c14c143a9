//! The HTTP front of the S3 port: health for load balancers, request metrics, then s3s.
//! Also the admin port's service.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};
use s3s::service::S3Service;

use crate::metrics::{MethodLabel, Metrics, RequestLabels};

/// Health path on the S3 port. Bucket names cannot start with `_`, so it never shadows a bucket.
pub const HEALTH_PATH: &str = "/_valley/health";

fn text(status: StatusCode, body: &'static str) -> Response<s3s::Body> {
    let mut res = Response::new(s3s::Body::from(body.to_owned()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

#[derive(Clone)]
pub struct S3Front {
    pub s3: S3Service,
    pub metrics: Arc<Metrics>,
}

impl hyper::service::Service<Request<Incoming>> for S3Front {
    type Response = Response<s3s::Body>;
    type Error = s3s::HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if req.uri().path() == HEALTH_PATH && matches!(*req.method(), Method::GET | Method::HEAD) {
            return Box::pin(async { Ok(text(StatusCode::OK, "ok\n")) });
        }
        let request_id = hex::encode_upper(rand::random::<[u8; 8]>());
        if let Some(refusal) = presign_refusal(req.uri().query(), &request_id) {
            return Box::pin(async move { Ok(refusal) });
        }
        let method = req.method().as_str().to_owned();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        metrics.requests_in_flight.inc();
        let response = hyper::service::Service::call(&self.s3, req);
        Box::pin(async move {
            let mut result = response.await;
            metrics.requests_in_flight.dec();
            if let Ok(r) = &mut result
                && let Ok(id) = http::HeaderValue::from_str(&request_id)
            {
                r.headers_mut().insert("x-amz-request-id", id);
            }
            let status = result.as_ref().map_or(500, |r| r.status().as_u16());
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    method: method.clone(),
                    status,
                })
                .inc();
            metrics
                .request_seconds
                .get_or_create(&MethodLabel { method })
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// The admin port: `/metrics`, health, the admin API and the peer API.
#[derive(Clone)]
pub struct AdminFront {
    pub metrics: Arc<Metrics>,
    pub admin: Arc<crate::admin::AdminApi>,
    pub hub: Option<Arc<valley_replicate::Hub>>,
}

fn from_bytes(r: Response<bytes::Bytes>) -> Response<s3s::Body> {
    r.map(s3s::Body::from)
}

impl hyper::service::Service<Request<Incoming>> for AdminFront {
    type Response = Response<s3s::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let metrics = self.metrics.clone();
        let admin = self.admin.clone();
        let hub = self.hub.clone();
        Box::pin(async move {
            let path = req.uri().path();
            if path.starts_with(valley_replicate::wire::PREFIX) {
                return Ok(match hub {
                    Some(hub) => valley_replicate::receive::handle(hub, req)
                        .await
                        .map(s3s::Body::http_body_unsync),
                    None => text(StatusCode::NOT_FOUND, "this hub runs alone: it takes no peer calls\n"),
                });
            }
            if path.starts_with(crate::admin::PREFIX) {
                return Ok(from_bytes(admin.handle(req).await));
            }
            Ok(match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => {
                    if let Some(hub) = &hub {
                        metrics.observe_network(hub).await;
                    }
                    let mut res = Response::new(s3s::Body::from(metrics.encode()));
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    );
                    res
                }
                (&Method::GET | &Method::HEAD, HEALTH_PATH) => text(StatusCode::OK, "ok\n"),
                _ => text(StatusCode::NOT_FOUND, "not found\n"),
            })
        })
    }
}

/// Virtual-host-style addressing for `BUCKET.DOMAIN[:port]`; every other host (an IP address,
/// a bare domain) is path style. Unlike s3s's `MultiDomain`, an unknown host is never taken
/// for a bucket name, so `127.0.0.1:9000` keeps working.
pub struct VirtualHosts {
    pub domains: Vec<String>,
}

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        for domain in &self.domains {
            if let Some(bucket) = name
                .strip_suffix(domain.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                && !bucket.is_empty()
            {
                return Ok(VirtualHost::new(domain.as_str()).with_bucket(bucket));
            }
        }
        Ok(VirtualHost::new(host))
    }
}

/// Longest validity of a presigned URL, as S3 allows: seven days.
const PRESIGNED_EXPIRES_SECS_MAX: i64 = 604_800;

/// S3 refuses a presigned URL whose `X-Amz-Expires` is negative, malformed or over seven days
/// (s3s only checks that the URL has not expired).
fn presign_refusal(query: Option<&str>, request_id: &str) -> Option<Response<s3s::Body>> {
    let value = query?.split('&').find_map(|pair| pair.strip_prefix("X-Amz-Expires="))?;
    let message = match value.parse::<i64>() {
        Ok(secs) if (0..=PRESIGNED_EXPIRES_SECS_MAX).contains(&secs) => return None,
        Ok(secs) if secs < 0 => "X-Amz-Expires must be non-negative",
        Ok(_) => "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        Err(_) => "X-Amz-Expires should be a number",
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AuthorizationQueryParametersError</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    );
    let mut res = Response::new(s3s::Body::from(body));
    *res.status_mut() = StatusCode::FORBIDDEN;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    if let Ok(id) = http::HeaderValue::from_str(request_id) {
        res.headers_mut().insert("x-amz-request-id", id);
    }
    Some(res)
}

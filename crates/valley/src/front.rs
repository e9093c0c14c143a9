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

use valley_replicate::body_timeout::TimedBody;

use crate::metrics::{MethodLabel, Metrics, RequestLabels};
use crate::{aws_chunked, s3_checks};

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

/// SigV4 takes the request time from `x-amz-date`, or from `Date` when there is no
/// `x-amz-date` (botocore signs that way when a caller sets `Date`). s3s reads only
/// `x-amz-date`, so a header-signed request without one gets it, converted from `Date`. The
/// signature still covers the `Date` header exactly as sent (it is what `SignedHeaders` names),
/// and the converted time is what the client put in its string to sign; a `Date` that is not
/// an HTTP date is left for s3s to refuse.
fn date_as_amz_date(headers: &mut http::HeaderMap) {
    let header_signed = headers
        .get(http::header::AUTHORIZATION)
        .is_some_and(|a| a.as_bytes().starts_with(b"AWS4-HMAC-SHA256 "));
    if !header_signed || headers.contains_key("x-amz-date") {
        return;
    }
    let Some(t) = headers
        .get(http::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(parse_date_header)
    else {
        return;
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    let amz = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if let Ok(value) = http::HeaderValue::from_str(&amz) {
        headers.insert("x-amz-date", value);
    }
}

/// GetObjectAttributes answers with the ETag unquoted (unlike every other S3 response, and
/// clients compare it as such); s3s always quotes ETags, so the small XML body of a successful
/// answer is rewritten here.
async fn unquote_attribute_etag(response: Response<s3s::Body>) -> Response<s3s::Body> {
    use http_body_util::BodyExt;
    if !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        return Response::from_parts(parts, s3s::Body::empty());
    };
    let xml = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    let rewritten = unquote_etag_element(&xml);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, s3s::Body::from(rewritten))
}

/// `<ETag>"v"</ETag>` (quotes raw or as `&quot;`) → `<ETag>v</ETag>`, first element only.
fn unquote_etag_element(xml: &str) -> String {
    let (open, close) = ("<ETag>", "</ETag>");
    let (Some(start), Some(end)) = (xml.find(open), xml.find(close)) else {
        return xml.to_owned();
    };
    let inner_start = start + open.len();
    if end < inner_start {
        return xml.to_owned();
    }
    let inner = &xml[inner_start..end];
    let bare = ["\"", "&quot;", "&#34;"]
        .iter()
        .find_map(|q| inner.strip_prefix(q).and_then(|i| i.strip_suffix(q)))
        .unwrap_or(inner);
    format!("{}{bare}{}", &xml[..inner_start], &xml[end..])
}

/// A `Date` header: RFC 2822 (what Python's `formatdate` writes, `-0000` for UTC) or any of
/// HTTP's three date forms.
fn parse_date_header(value: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
        .ok()
        .or_else(|| httpdate::parse_http_date(value).ok().map(time::OffsetDateTime::from))
}

#[derive(Clone)]
pub struct S3Front {
    pub s3: S3Service,
    /// The connection's client, for the access check's condition keys.
    pub client: Option<valley_s3::ClientInfo>,
    pub metrics: Arc<Metrics>,
    /// Regions a SigV4 signature may be scoped to.
    pub regions: Arc<[String]>,
    pub cors: Arc<crate::cors_front::Cors>,
    /// Browser form uploads read into memory at once (`limits::FORM_UPLOADS_IN_FLIGHT_MAX`).
    pub forms: Arc<tokio::sync::Semaphore>,
}

/// How long a form upload waits for one of the others to finish before it is told to slow down.
const FORM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts a request in flight for as long as it is: dropped with the request's future, also
/// when the client goes away mid-request (the gauge would leak otherwise).
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.requests_in_flight.inc();
        Self(metrics)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests_in_flight.dec();
    }
}

impl hyper::service::Service<Request<Incoming>> for S3Front {
    type Response = Response<s3s::Body>;
    type Error = s3s::HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if req.uri().path() == HEALTH_PATH && matches!(*req.method(), Method::GET | Method::HEAD) {
            return Box::pin(async { Ok(text(StatusCode::OK, "ok\n")) });
        }
        let request_id = hex::encode_upper(rand::random::<[u8; 8]>());
        if *req.method() == Method::OPTIONS {
            let res = self.cors.preflight(req.uri(), req.headers(), &request_id);
            self.metrics
                .requests
                .get_or_create(&RequestLabels {
                    method: "OPTIONS".to_owned(),
                    status: res.status().as_u16(),
                })
                .inc();
            return Box::pin(async move { Ok(res) });
        }
        let cors = self.cors.for_request(req.method(), req.uri(), req.headers());
        if let Some(client) = self.client {
            req.extensions_mut().insert(client);
        }
        if let Some((status, code, message)) =
            s3_checks::refusal(req.method(), req.uri().query(), req.headers(), &self.regions)
        {
            return Box::pin(async move { Ok(s3_checks::error_xml(status, code, &message, &request_id)) });
        }
        let form = s3_checks::is_form_upload(req.method(), req.headers());
        date_as_amz_date(req.headers_mut());
        let delete_objects = s3_checks::is_delete_objects(req.method(), req.uri().query());
        let object_attributes = *req.method() == Method::GET
            && req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "attributes" || p.starts_with("attributes=")));
        let method = req.method().as_str().to_owned();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let s3 = self.s3.clone();
        let forms = self.forms.clone();
        Box::pin(async move {
            let in_flight = InFlight::new(metrics.clone());
            // s3s reads a form's file into memory: only so many at once.
            // (Boxed: the wait is rare, and every request's future would carry it otherwise.)
            let _form_slot = if form {
                match Box::pin(tokio::time::timeout(FORM_WAIT, forms.acquire_owned())).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        return Ok(s3_checks::error_xml(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "SlowDown",
                            "Too many form uploads in progress: please retry.",
                            &request_id,
                        ));
                    }
                }
            } else {
                None
            };
            let (parts, body) = req.into_parts();
            let body = TimedBody::new(body);
            let body_read = body.read_to_end();
            let body = if delete_objects {
                match s3_checks::checked_delete_objects_body(&parts.headers, body).await {
                    Ok(bytes) => s3s::Body::from(bytes),
                    Err((status, code, message)) => {
                        return Ok(s3_checks::error_xml(status, code, &message, &request_id));
                    }
                }
            } else if let Some(declared) = aws_chunked::declared_length(&parts.headers) {
                s3s::Body::http_body(aws_chunked::FramingChecked::new(body, declared))
            } else {
                s3s::Body::http_body(body)
            };
            let mut result = s3.call(Request::from_parts(parts, body)).await;
            if object_attributes && let Ok(r) = result {
                result = Ok(unquote_attribute_etag(r).await);
            }
            if let Ok(r) = &result
                && (r.status().is_client_error() || r.status().is_server_error())
                && let Ok(r) = result
            {
                // Errors only, and boxed: a successful request's future does not carry these.
                let r = Box::pin(s3_checks::unknown_operation_as_405(r, &request_id)).await;
                result = Ok(Box::pin(s3_checks::error_with_request_id(r, &request_id)).await);
            }
            drop(in_flight);
            if let Ok(r) = &mut result
                && !body_read.load(std::sync::atomic::Ordering::Relaxed)
            {
                r.headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            if let Ok(r) = &mut result
                && let Ok(id) = http::HeaderValue::from_str(&request_id)
            {
                r.headers_mut().insert("x-amz-request-id", id);
            }
            if let Ok(r) = &mut result {
                crate::cors_front::add(r.headers_mut(), cors);
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
    /// The hub the connection's verified client certificate names, if any.
    pub peer_hub: Option<String>,
    /// When set (`VALLEY_METRICS_TOKEN`), `/metrics` answers only `Authorization: Bearer <it>`:
    /// the metrics name buckets and peers.
    pub metrics_token: Option<Arc<str>>,
}

/// Whether a `/metrics` request may read the metrics.
fn metrics_allowed(token: Option<&str>, headers: &http::HeaderMap) -> bool {
    let Some(token) = token else { return true };
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
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
        let peer_hub = self.peer_hub.clone();
        let metrics_token = self.metrics_token.clone();
        Box::pin(async move {
            let path = req.uri().path();
            if path.starts_with(valley_replicate::wire::PREFIX) {
                return Ok(match hub {
                    Some(hub) => valley_replicate::receive::handle(hub, req, peer_hub.as_deref())
                        .await
                        .map(s3s::Body::http_body_unsync),
                    None => text(StatusCode::NOT_FOUND, "this hub runs alone: it takes no peer calls\n"),
                });
            }
            if path.starts_with(crate::admin::PREFIX) {
                return Ok(from_bytes(admin.handle(req).await));
            }
            Ok(match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") if !metrics_allowed(metrics_token.as_deref(), req.headers()) => {
                    let mut res = text(
                        StatusCode::UNAUTHORIZED,
                        "metrics need Authorization: Bearer <VALLEY_METRICS_TOKEN>\n",
                    );
                    res.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer realm=\"valley-metrics\""),
                    );
                    res
                }
                (&Method::GET, "/metrics") => {
                    if let Some(hub) = &hub {
                        metrics.observe_network(hub).await;
                        metrics.observe_tenant_traffic(hub, &admin.directory);
                    }
                    metrics.observe_tenants(&admin.directory, &admin.catalog).await;
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

/// The bucket a `Host` header names under one of `domains` (`BUCKET.DOMAIN[:PORT]`), and that
/// domain; `None` for a path-style host.
pub fn virtual_host_bucket<'a>(host: &'a str, domains: &'a [String]) -> Option<(&'a str, &'a str)> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    domains.iter().find_map(|domain| {
        let bucket = name.strip_suffix(domain.as_str())?.strip_suffix('.')?;
        (!bucket.is_empty()).then_some((bucket, domain.as_str()))
    })
}

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match virtual_host_bucket(host, &self.domains) {
            Some((bucket, domain)) => VirtualHost::new(domain).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_need_the_token_when_one_is_set() {
        let mut headers = http::HeaderMap::new();
        assert!(metrics_allowed(None, &headers));
        assert!(!metrics_allowed(Some("s3cret"), &headers));
        headers.insert(http::header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(metrics_allowed(Some("s3cret"), &headers));
        headers.insert(http::header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!metrics_allowed(Some("s3cret"), &headers));
    }

    #[test]
    fn attribute_etag_loses_its_quotes() {
        for quoted in ["<ETag>\"abc-2\"</ETag>", "<ETag>&quot;abc-2&quot;</ETag>"] {
            let xml = format!(
                "<?xml?><GetObjectAttributesResponse>{quoted}<ObjectSize>3</ObjectSize></GetObjectAttributesResponse>"
            );
            assert_eq!(
                unquote_etag_element(&xml),
                "<?xml?><GetObjectAttributesResponse><ETag>abc-2</ETag><ObjectSize>3</ObjectSize></GetObjectAttributesResponse>"
            );
        }
        let without = "<GetObjectAttributesResponse><ObjectSize>3</ObjectSize></GetObjectAttributesResponse>";
        assert_eq!(unquote_etag_element(without), without);
    }

    #[test]
    fn date_header_becomes_amz_date_only_for_header_signed_requests() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::DATE, "Sat, 28 Nov 2026 22:24:17 -0000".parse().unwrap());
        date_as_amz_date(&mut headers);
        assert!(!headers.contains_key("x-amz-date"), "unsigned: left alone");

        headers.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=k/20261128/us-east-1/s3/aws4_request"
                .parse()
                .unwrap(),
        );
        for (date, amz) in [
            ("Sat, 28 Nov 2026 22:24:17 -0000", "20261128T222417Z"),
            ("Sat, 28 Nov 2026 22:24:17 GMT", "20261128T222417Z"),
            ("Sat, 28 Nov 2026 23:24:17 +0100", "20261128T222417Z"),
            ("Saturday, 28-Nov-26 22:24:17 GMT", "20261128T222417Z"),
        ] {
            headers.remove("x-amz-date");
            headers.insert(http::header::DATE, date.parse().unwrap());
            date_as_amz_date(&mut headers);
            assert_eq!(
                headers.get("x-amz-date").map(|v| v.to_str().unwrap()),
                Some(amz),
                "{date}"
            );
        }

        headers.insert("x-amz-date", "20200101T000000Z".parse().unwrap());
        date_as_amz_date(&mut headers);
        assert_eq!(
            headers["x-amz-date"], "20200101T000000Z",
            "an x-amz-date is never replaced"
        );

        headers.remove("x-amz-date");
        headers.insert(http::header::DATE, "yesterday".parse().unwrap());
        date_as_amz_date(&mut headers);
        assert!(
            !headers.contains_key("x-amz-date"),
            "not a date: left for s3s to refuse"
        );
    }
}

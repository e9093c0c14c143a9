//! CORS at the S3 port: preflights (`OPTIONS`, which s3s does not route and browsers never
//! sign) are answered here from the bucket's configuration, and the answer to any other request
//! carrying an `Origin` gets the headers a matching rule allows. The request itself is
//! authorized as any other: CORS only tells a browser what it may show a page.

use std::sync::Arc;

use http::{HeaderMap, Method, Response, StatusCode};
use valley_access::PreflightRefusal;

use crate::s3_checks::error_xml;

pub struct Cors {
    pub directory: Arc<valley_tenants::Directory>,
    /// The domains of virtual-hosted buckets (`BUCKET.DOMAIN`), as s3s is given them.
    pub domains: Arc<[String]>,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Cors {
    /// The bucket a request names: by its host under a virtual-host domain, else the first
    /// segment of its path.
    fn bucket_of(&self, uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
        if let Some((bucket, _)) =
            header(headers, "host").and_then(|host| crate::front::virtual_host_bucket(host, &self.domains))
        {
            return Some(bucket.to_owned());
        }
        let first = uri.path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_owned())
    }

    /// The answer to a preflight: 200 with what the first matching rule allows; 400 when it is
    /// not a preflight (no `Origin` or `Access-Control-Request-Method`), 403 when no rule
    /// allows it or the bucket has no configuration.
    pub fn preflight(&self, uri: &http::Uri, headers: &HeaderMap, request_id: &str) -> Response<s3s::Body> {
        let origin = header(headers, "origin");
        let method = header(headers, "access-control-request-method");
        if origin.is_none() || method.is_none() {
            return error_xml(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
                request_id,
            );
        }
        let config = self
            .bucket_of(uri, headers)
            .and_then(|b| self.directory.bucket_cors(&b));
        let Some(config) = config else {
            return error_xml(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
                request_id,
            );
        };
        match config.preflight(origin, method, header(headers, "access-control-request-headers")) {
            Ok(allowed) => {
                let mut res = Response::new(s3s::Body::empty());
                add(res.headers_mut(), allowed);
                res
            }
            Err(PreflightRefusal::NotPreflight) => error_xml(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
                request_id,
            ),
            Err(PreflightRefusal::NotAllowed) => error_xml(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evaluation of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                request_id,
            ),
        }
    }

    /// The headers to add to the answer to a request from a page (one with `Origin`): what the
    /// bucket's first rule matching the origin and method (the one the browser said it will
    /// use, else the request's) allows. Computed before the request is served, so the headers
    /// reach its answer whatever it is (an error too, which a page must be able to read).
    pub fn for_request(&self, method: &Method, uri: &http::Uri, headers: &HeaderMap) -> Vec<(&'static str, String)> {
        let Some(origin) = header(headers, "origin") else {
            return Vec::new();
        };
        let Some(config) = self
            .bucket_of(uri, headers)
            .and_then(|b| self.directory.bucket_cors(&b))
        else {
            return Vec::new();
        };
        let method = header(headers, "access-control-request-method").unwrap_or(method.as_str());
        config.actual(origin, method)
    }
}

/// Adds `allowed` to `headers` (values that are not header text are left out).
pub fn add(headers: &mut HeaderMap, allowed: Vec<(&'static str, String)>) {
    for (name, value) in allowed {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

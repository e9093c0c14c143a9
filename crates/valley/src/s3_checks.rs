//! Refusals the S3 front makes before s3s sees a request: what S3 refuses and s3s lets through.
//! Each answers with S3's own error code and message, as XML.

use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use valley_types::limits;

/// Longest validity of a presigned URL, as S3 allows: seven days.
const PRESIGNED_EXPIRES_SECS_MAX: i64 = 604_800;
/// Largest DeleteObjects body read to check its digest (1,000 keys of 1,024 bytes, escaped).
const DELETE_OBJECTS_BODY_MAX: usize = valley_types::limits::XML_BODY_BYTES_MAX;

/// An S3 error response, for refusals made before s3s sees the request.
pub fn error_xml(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message><RequestId>{request_id}</RequestId></Error>",
        xml_escape(message)
    );
    let mut res = Response::new(s3s::Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    if let Ok(id) = http::HeaderValue::from_str(request_id) {
        res.headers_mut().insert("x-amz-request-id", id);
    }
    res
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A refusal: status, S3 error code, message.
pub type Refusal = (StatusCode, &'static str, String);

/// Every check on the request line and headers, first refusal wins.
pub fn refusal(method: &Method, query: Option<&str>, headers: &http::HeaderMap, regions: &[String]) -> Option<Refusal> {
    let query = Query::parse(query);
    signature_v2(&query, headers)
        .or_else(|| presign_expiry(&query))
        .or_else(|| credential_region(&query, headers, regions))
        .or_else(|| empty_md5(headers))
        .or_else(|| delete_objects_digest_missing(method, &query, headers))
        .or_else(|| xml_too_large(method, &query, headers))
        .or_else(|| form_too_large(method, headers))
}

/// A request's query as s3s reads it: names and values percent-decoded (`+` a space). The
/// checks read it so, or a name spelled `AWSAccessKey%49d` would pass a check s3s then reads
/// as `AWSAccessKeyId`.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Self(query.map_or_else(Vec::new, |q| {
            url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
        }))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Subresources whose request body is an XML (or JSON) document s3s reads whole.
const DOCUMENT_SUBRESOURCES: [&str; 24] = [
    "delete",
    "tagging",
    "versioning",
    "acl",
    "cors",
    "lifecycle",
    "policy",
    "website",
    "encryption",
    "logging",
    "notification",
    "replication",
    "requestPayment",
    "accelerate",
    "ownershipControls",
    "publicAccessBlock",
    "object-lock",
    "retention",
    "legal-hold",
    "intelligent-tiering",
    "inventory",
    "metrics",
    "analytics",
    "restore",
];

/// A document body over the limit is the client's error, said before a byte of it is read
/// (s3s answers 500 for some of them).
fn xml_too_large(method: &Method, query: &Query, headers: &http::HeaderMap) -> Option<Refusal> {
    if !matches!(*method, Method::PUT | Method::POST) {
        return None;
    }
    let length: u64 = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())?;
    if length <= valley_types::limits::XML_BODY_BYTES_MAX as u64 {
        return None;
    }
    let document = query
        .0
        .iter()
        .any(|(n, _)| DOCUMENT_SUBRESOURCES.contains(&n.as_str()) || (*method == Method::POST && n == "uploadId"));
    document.then(|| {
        (
            StatusCode::BAD_REQUEST,
            "MaxMessageLengthExceeded",
            format!(
                "Your request was too big: a request document may be at most {} bytes.",
                valley_types::limits::XML_BODY_BYTES_MAX
            ),
        )
    })
}

/// s3s answers a request it cannot route (an unknown method, `POST` on a key without a
/// subresource) with 501 NotImplemented; S3 says 405 MethodNotAllowed.
pub async fn unknown_operation_as_405(response: Response<s3s::Body>, request_id: &str) -> Response<s3s::Body> {
    if response.status() != StatusCode::NOT_IMPLEMENTED {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    if !bytes.windows(17).any(|w| w == b"Unknown operation") {
        return Response::from_parts(parts, s3s::Body::from(bytes));
    }
    error_xml(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
        request_id,
    )
}

/// Error bodies read to add their request id (s3s's are a few hundred bytes).
const ERROR_BODY_MAX: u64 = 64 * 1024;

/// S3's error documents carry the request's id, the one in `x-amz-request-id` (clients log it,
/// and support asks for it); s3s's carry none.
pub async fn error_with_request_id(response: Response<s3s::Body>, request_id: &str) -> Response<s3s::Body> {
    use http_body::Body as _;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let xml = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().ends_with(b"xml"));
    let small = response.body().size_hint().upper().is_some_and(|n| n <= ERROR_BODY_MAX);
    if !xml || !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let body = match text.rfind("</Error>") {
        Some(end) if !text.contains("<RequestId>") => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            format!(
                "{}<RequestId>{}</RequestId>{}",
                &text[..end],
                xml_escape(request_id),
                &text[end..]
            )
            .into()
        }
        _ => bytes,
    };
    Response::from_parts(parts, s3s::Body::from(body))
}

/// SigV2 is refused, as S3 refuses it in every region opened since 2014 and for every bucket
/// since 2020: its signatures carry no region and s3s checks no date or expiry on them, so a
/// captured request could be replayed for ever. (A browser form signed with SigV2 is accepted:
/// its signature covers a policy document whose expiration s3s enforces.)
///
/// s3s takes a query carrying `Signature` for SigV2 before it looks for SigV4's
/// `X-Amz-Signature`, so a query with either SigV2 name is refused whatever else it carries.
fn signature_v2(query: &Query, headers: &http::HeaderMap) -> Option<Refusal> {
    let header_v2 = headers
        .get(http::header::AUTHORIZATION)
        .is_some_and(|a| a.as_bytes().starts_with(b"AWS ") || a.as_bytes().starts_with(b"AWS\t"));
    let query_v2 = query.has("AWSAccessKeyId") || query.has("Signature");
    (header_v2 || query_v2).then(|| {
        (
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.".to_owned(),
        )
    })
}

/// S3 refuses a presigned URL whose `X-Amz-Expires` is negative, malformed or over seven days
/// (s3s only checks that the URL has not expired).
fn presign_expiry(query: &Query) -> Option<Refusal> {
    let value = query.get("X-Amz-Expires")?;
    let message = match value.parse::<i64>() {
        Ok(secs) if (0..=PRESIGNED_EXPIRES_SECS_MAX).contains(&secs) => return None,
        Ok(secs) if secs < 0 => "X-Amz-Expires must be non-negative",
        Ok(_) => "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        Err(_) => "X-Amz-Expires should be a number",
    };
    Some((
        StatusCode::FORBIDDEN,
        "AuthorizationQueryParametersError",
        message.to_owned(),
    ))
}

/// A SigV4 signature is scoped to a region: one of this hub's (`us-east-1`, which every SDK
/// defaults to, or `--region`). s3s takes any region, even an empty one.
fn credential_region(query: &Query, headers: &http::HeaderMap, regions: &[String]) -> Option<Refusal> {
    let expecting = regions.last().map_or("us-east-1", String::as_str);
    if let Some(auth) = headers.get(http::header::AUTHORIZATION).and_then(|a| a.to_str().ok())
        && let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256")
    {
        let scope = rest
            .split([',', ' '])
            .find_map(|part| part.trim().strip_prefix("Credential="))?;
        let region = scope.split('/').nth(2).unwrap_or("");
        if !regions.iter().any(|r| r == region) {
            return Some((
                StatusCode::BAD_REQUEST,
                "AuthorizationHeaderMalformed",
                format!(
                    "The authorization header is malformed; the region '{region}' is wrong; expecting '{expecting}'"
                ),
            ));
        }
        return None;
    }
    let credential = query.get("X-Amz-Credential")?;
    let region = credential.split('/').nth(2).unwrap_or("");
    if regions.iter().any(|r| r == region) {
        return None;
    }
    Some((
        StatusCode::BAD_REQUEST,
        "AuthorizationQueryParametersError",
        format!(
            "Error parsing the X-Amz-Credential parameter; the region '{region}' is wrong; expecting '{expecting}'"
        ),
    ))
}

/// An empty `Content-MD5` is an invalid digest (s3s passes it on as no header at all, and the
/// upload would be taken unchecked).
fn empty_md5(headers: &http::HeaderMap) -> Option<Refusal> {
    let value = headers.get("content-md5")?;
    value.as_bytes().trim_ascii().is_empty().then(|| {
        (
            StatusCode::BAD_REQUEST,
            "InvalidDigest",
            "The Content-MD5 you specified was invalid.".to_owned(),
        )
    })
}

const CHECKSUM_HEADERS: [&str; 5] = [
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-checksum-crc64nvme",
];

/// Whether this is a browser form upload (POST Object: a `multipart/form-data` POST).
pub fn is_form_upload(method: &Method, headers: &http::HeaderMap) -> bool {
    *method == Method::POST
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// A form upload declaring more than a form may carry is refused before a byte of it is read
/// (one without a length is cut off by s3s at the same limits as it is read).
fn form_too_large(method: &Method, headers: &http::HeaderMap) -> Option<Refusal> {
    if !is_form_upload(method, headers) {
        return None;
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())?;
    let limit = limits::FORM_FILE_BYTES_MAX + limits::FORM_FIELDS_BYTES_MAX as u64;
    (declared > limit).then(|| {
        (
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            format!(
                "Your proposed upload exceeds the maximum allowed size: a form upload may carry at most {} bytes (use PUT or a multipart upload)",
                limits::FORM_FILE_BYTES_MAX
            ),
        )
    })
}

/// Whether this is a DeleteObjects call (`POST /bucket?delete`).
pub fn is_delete_objects(method: &Method, query: Option<&str>) -> bool {
    *method == Method::POST && query.is_some_and(|q| Query::parse(Some(q)).has("delete"))
}

/// S3 requires DeleteObjects to carry a digest of its body: a `Content-MD5` or a flexible
/// checksum header (it deletes up to 1,000 keys; a body damaged in transit must not).
fn delete_objects_digest_missing(method: &Method, query: &Query, headers: &http::HeaderMap) -> Option<Refusal> {
    if *method != Method::POST || !query.has("delete") {
        return None;
    }
    let has_digest = headers.contains_key("content-md5") || CHECKSUM_HEADERS.iter().any(|h| headers.contains_key(*h));
    (!has_digest).then(|| {
        (
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Missing required header for this request: Content-MD5 or x-amz-checksum-*".to_owned(),
        )
    })
}

/// Reads a DeleteObjects body and checks it against the digests its headers declare (s3s
/// checks none on XML bodies); answers the body to hand on, or the refusal.
pub async fn checked_delete_objects_body<B>(headers: &http::HeaderMap, body: B) -> Result<bytes::Bytes, Refusal>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Display,
{
    use s3s::crypto::Checksum as _;
    let mut bytes = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                format!("Reading the request body failed: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
            if bytes.len() > DELETE_OBJECTS_BODY_MAX {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "MaxMessageLengthExceeded",
                    format!(
                        "Your request was too big: a request document may be at most {DELETE_OBJECTS_BODY_MAX} bytes."
                    ),
                ));
            }
        }
    }
    if let Some(md5) = headers.get("content-md5").and_then(|v| v.to_str().ok()) {
        let mut hasher = s3s::crypto::Md5::new();
        hasher.update(&bytes);
        let digest = hasher.finalize();
        if valley_s3::body::base64_decode(md5.trim()).as_deref() != Some(&digest[..]) {
            return Err((
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.".to_owned(),
            ));
        }
    }
    let mut hasher = s3s::checksum::ChecksumHasher::default();
    let declared: Vec<(&str, String)> = CHECKSUM_HEADERS
        .iter()
        .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?.trim().to_owned())))
        .collect();
    for (name, _) in &declared {
        match *name {
            "x-amz-checksum-crc32" => hasher.crc32 = Some(Default::default()),
            "x-amz-checksum-crc32c" => hasher.crc32c = Some(Default::default()),
            "x-amz-checksum-sha1" => hasher.sha1 = Some(Default::default()),
            "x-amz-checksum-sha256" => hasher.sha256 = Some(Default::default()),
            _ => hasher.crc64nvme = Some(Default::default()),
        }
    }
    hasher.update(&bytes);
    let computed = hasher.finalize();
    for (name, sent) in declared {
        let got = match name {
            "x-amz-checksum-crc32" => &computed.checksum_crc32,
            "x-amz-checksum-crc32c" => &computed.checksum_crc32c,
            "x-amz-checksum-sha1" => &computed.checksum_sha1,
            "x-amz-checksum-sha256" => &computed.checksum_sha256,
            _ => &computed.checksum_crc64nvme,
        };
        if got.as_deref() != Some(sent.as_str()) {
            return Err((
                StatusCode::BAD_REQUEST,
                "BadDigest",
                format!("The {name} you specified did not match the calculated checksum."),
            ));
        }
    }
    Ok(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const REGIONS: [&str; 2] = ["us-east-1", "cn-north"];

    fn regions() -> Vec<String> {
        REGIONS.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn signature_v2_is_refused_in_headers_and_queries() {
        let h = headers(&[("authorization", "AWS AKID:c2ln")]);
        assert_eq!(refusal(&Method::GET, None, &h, &regions()).unwrap().1, "InvalidRequest");
        let q = "AWSAccessKeyId=AKID&Expires=1999999999&Signature=abc";
        assert_eq!(
            refusal(&Method::GET, Some(q), &http::HeaderMap::new(), &regions())
                .unwrap()
                .1,
            "InvalidRequest"
        );
        // Spelled as s3s decodes it, or carrying a SigV4 name beside it (s3s checks SigV2 first).
        for q in [
            "AWSAccessKey%49d=AKID&Expires=1999999999&Signature=abc",
            "AWSAccessKeyId=AKID&Expires=1999999999&Sign%61ture=abc",
            "AWSAccessKeyId=AKID&Expires=1999999999&Signature=abc&X-Amz-Signature=00",
        ] {
            let r = refusal(&Method::GET, Some(q), &http::HeaderMap::new(), &regions());
            assert_eq!(r.map(|r| r.1), Some("InvalidRequest"), "{q}");
        }
        let v4 = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
        )]);
        assert!(refusal(&Method::GET, None, &v4, &regions()).is_none());
    }

    #[test]
    fn a_signature_for_another_region_is_refused() {
        for (region, refused) in [
            ("us-east-1", false),
            ("cn-north", false),
            ("eu-west-1", true),
            ("", true),
        ] {
            let h = headers(&[(
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AKID/20261202/{region}/s3/aws4_request,SignedHeaders=host,Signature=00"
                ),
            )]);
            let r = refusal(&Method::GET, None, &h, &regions());
            assert_eq!(r.is_some(), refused, "{region:?}");
            if refused {
                assert_eq!(r.unwrap().1, "AuthorizationHeaderMalformed");
            }
            let q = format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261202%2F{region}%2Fs3%2Faws4_request&X-Amz-Signature=00"
            );
            let r = refusal(&Method::GET, Some(&q), &http::HeaderMap::new(), &regions());
            assert_eq!(r.is_some(), refused, "presigned {region:?}");
            let spelled = q.replace("X-Amz-Credential", "X-Amz-Cr%65dential");
            let r = refusal(&Method::GET, Some(&spelled), &http::HeaderMap::new(), &regions());
            assert_eq!(r.is_some(), refused, "presigned, name percent-encoded, {region:?}");
        }
    }

    #[test]
    fn a_document_over_the_limit_is_refused_before_it_is_read() {
        let big = (valley_types::limits::XML_BODY_BYTES_MAX + 1).to_string();
        let h = headers(&[("content-length", &big), ("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")]);
        for (method, query) in [
            (Method::POST, "delete"),
            (Method::PUT, "tagging"),
            (Method::POST, "uploadId=x"),
        ] {
            let r = refusal(&method, Some(query), &h, &regions()).expect(query);
            assert_eq!(r.1, "MaxMessageLengthExceeded");
        }
        // An object (or a part) of any size is not a document.
        assert!(refusal(&Method::PUT, None, &h, &regions()).is_none());
        assert!(refusal(&Method::PUT, Some("partNumber=1&uploadId=x"), &h, &regions()).is_none());
    }

    #[test]
    fn a_form_upload_declaring_more_than_a_form_may_carry_is_refused_unread() {
        let form = headers(&[("content-type", "multipart/form-data; boundary=x")]);
        assert!(is_form_upload(&Method::POST, &form));
        assert!(!is_form_upload(&Method::PUT, &form));
        assert!(!is_form_upload(
            &Method::POST,
            &headers(&[("content-type", "application/xml")])
        ));
        let limit = limits::FORM_FILE_BYTES_MAX + limits::FORM_FIELDS_BYTES_MAX as u64;
        let form_of = |length: &str| {
            headers(&[
                ("content-type", "multipart/form-data; boundary=x"),
                ("content-length", length),
            ])
        };
        assert!(refusal(&Method::POST, None, &form_of(&limit.to_string()), &regions()).is_none());
        let over = refusal(&Method::POST, None, &form_of(&(limit + 1).to_string()), &regions()).unwrap();
        assert_eq!((over.0, over.1), (StatusCode::BAD_REQUEST, "EntityTooLarge"));
        // Only forms: a PUT of that length streams.
        assert!(refusal(&Method::PUT, None, &form_of(&(limit + 1).to_string()), &regions()).is_none());
        // Without a length, s3s cuts it off as it reads.
        assert!(refusal(&Method::POST, None, &form, &regions()).is_none());
    }

    #[tokio::test]
    async fn error_documents_carry_the_request_id() {
        let answer = |status: StatusCode, body: &'static str| {
            let mut r = Response::new(s3s::Body::from(body.to_owned()));
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml"),
            );
            r
        };
        let text = |r: Response<s3s::Body>| async move {
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        };
        let error = answer(StatusCode::NOT_FOUND, "<Error><Code>NoSuchKey</Code></Error>");
        assert_eq!(
            text(error_with_request_id(error, "ABC").await).await,
            "<Error><Code>NoSuchKey</Code><RequestId>ABC</RequestId></Error>"
        );
        let ours = "<Error><Code>X</Code><RequestId>OLD</RequestId></Error>";
        assert_eq!(
            text(error_with_request_id(answer(StatusCode::FORBIDDEN, ours), "ABC").await).await,
            ours
        );
        let listing = "<ListBucketResult></ListBucketResult>";
        assert_eq!(
            text(error_with_request_id(answer(StatusCode::OK, listing), "ABC").await).await,
            listing
        );
    }

    #[test]
    fn delete_objects_needs_a_digest() {
        let none = http::HeaderMap::new();
        assert_eq!(
            refusal(&Method::POST, Some("delete"), &none, &regions()).unwrap().1,
            "InvalidRequest"
        );
        let md5 = headers(&[("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==")]);
        assert!(refusal(&Method::POST, Some("delete"), &md5, &regions()).is_none());
        assert!(refusal(&Method::POST, Some("delet%65"), &none, &regions()).is_some());
        assert!(is_delete_objects(&Method::POST, Some("delet%65=")));
        let crc = headers(&[("x-amz-checksum-crc32", "AAAAAA==")]);
        assert!(refusal(&Method::POST, Some("delete="), &crc, &regions()).is_none());
        assert!(refusal(&Method::POST, Some("uploads"), &none, &regions()).is_none());
    }

    #[tokio::test]
    async fn a_delete_objects_body_must_match_its_digest() {
        let body = b"<Delete><Object><Key>a</Key></Object></Delete>";
        let md5 = {
            use base64::Engine;
            use s3s::crypto::Checksum as _;
            let mut h = s3s::crypto::Md5::new();
            h.update(body);
            base64::engine::general_purpose::STANDARD.encode(h.finalize())
        };
        let good = headers(&[("content-md5", &md5)]);
        let full = |b: &'static [u8]| http_body_util::Full::new(bytes::Bytes::from_static(b));
        assert_eq!(checked_delete_objects_body(&good, full(body)).await.unwrap(), &body[..]);
        let forged = checked_delete_objects_body(&good, full(b"<Delete><Object><Key>b</Key></Object></Delete>")).await;
        assert_eq!(forged.unwrap_err().1, "BadDigest");
        let crc = headers(&[("x-amz-checksum-crc32", "AAAAAA==")]);
        assert_eq!(
            checked_delete_objects_body(&crc, full(body)).await.unwrap_err().1,
            "BadDigest"
        );
    }
}

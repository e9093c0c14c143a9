//! Conditional requests, as S3 evaluates them (RFC 9110 §13.2.2 order):
//! If-Match, then If-Unmodified-Since (only without If-Match), then If-None-Match, then
//! If-Modified-Since (only without If-None-Match). Times compare at one-second resolution, the
//! resolution of HTTP dates.

use s3s::dto::{ETagCondition, Timestamp};
use s3s::{S3Error, s3_error};
use valley_store::StoreError;
use valley_store::catalog::Precondition;

use crate::convert::unix_secs_of;

#[derive(Debug, Default, Clone)]
pub struct Conditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    NotModified,
    PreconditionFailed,
}

fn matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

impl Conditions {
    #[must_use]
    pub fn evaluate(&self, etag: &str, last_modified_unix_ns: u64) -> Verdict {
        let modified_secs = i64::try_from(last_modified_unix_ns / 1_000_000_000).unwrap_or(i64::MAX);
        match &self.if_match {
            Some(c) if !matches(c, etag) => return Verdict::PreconditionFailed,
            Some(_) => {}
            None => {
                if let Some(since) = &self.if_unmodified_since
                    && modified_secs > unix_secs_of(since)
                {
                    return Verdict::PreconditionFailed;
                }
            }
        }
        match &self.if_none_match {
            Some(c) if matches(c, etag) => return Verdict::NotModified,
            Some(_) => {}
            None => {
                if let Some(since) = &self.if_modified_since
                    && modified_secs <= unix_secs_of(since)
                {
                    return Verdict::NotModified;
                }
            }
        }
        Verdict::Proceed
    }

    /// For GET and HEAD: 304 or 412 as S3 answers them.
    pub fn check_read(&self, etag: &str, last_modified_unix_ns: u64) -> Result<(), S3Error> {
        match self.evaluate(etag, last_modified_unix_ns) {
            Verdict::Proceed => Ok(()),
            Verdict::NotModified => {
                // A 304 still names the representation it stands for.
                let mut err = s3_error!(NotModified);
                let mut headers = http::HeaderMap::new();
                if let Ok(v) = http::HeaderValue::from_str(&format!("\"{etag}\"")) {
                    headers.insert(http::header::ETAG, v);
                }
                if let Some(date) =
                    crate::convert::format_http_date(&crate::convert::timestamp_of_unix_ns(last_modified_unix_ns))
                    && let Ok(v) = http::HeaderValue::from_str(&date)
                {
                    headers.insert(http::header::LAST_MODIFIED, v);
                }
                err.set_headers(headers);
                Err(err)
            }
            Verdict::PreconditionFailed => Err(s3_error!(
                PreconditionFailed,
                "At least one of the preconditions you specified did not hold."
            )),
        }
    }

    /// For copy sources: every failed condition is a 412.
    pub fn check_copy_source(&self, etag: &str, last_modified_unix_ns: u64) -> Result<(), S3Error> {
        match self.evaluate(etag, last_modified_unix_ns) {
            Verdict::Proceed => Ok(()),
            _ => Err(s3_error!(
                PreconditionFailed,
                "At least one of the copy-source preconditions you specified did not hold."
            )),
        }
    }
}

/// Conditional writes (PutObject, CompleteMultipartUpload): `If-None-Match: *` refuses to
/// overwrite; `If-Match` requires the current ETag. Checked inside the write transaction, so
/// two racing conditional writers cannot both succeed.
pub fn write_precondition(
    if_match: Option<ETagCondition>,
    if_none_match: Option<ETagCondition>,
) -> Option<Precondition> {
    if if_match.is_none() && if_none_match.is_none() {
        return None;
    }
    Some(Box::new(move |current| {
        if let Some(c) = &if_none_match
            && let Some(v) = current
            && matches(c, &v.etag)
        {
            return Err(StoreError::PreconditionFailed(
                "the object already exists (If-None-Match)".into(),
            ));
        }
        if let Some(c) = &if_match {
            match current {
                None => return Err(StoreError::NoSuchKey("(If-Match)".into())),
                Some(v) if !matches(c, &v.etag) => {
                    return Err(StoreError::PreconditionFailed(
                        "the ETag does not match (If-Match)".into(),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;

    const SEC: u64 = 1_000_000_000;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from(time::OffsetDateTime::from_unix_timestamp(secs).unwrap())
    }

    #[test]
    fn if_match_wins_over_if_unmodified_since() {
        let c = Conditions {
            if_match: Some(ETagCondition::ETag(ETag::Strong("abc".into()))),
            if_unmodified_since: Some(ts(10)),
            ..Default::default()
        };
        assert_eq!(c.evaluate("abc", 100 * SEC), Verdict::Proceed);
        assert_eq!(c.evaluate("xyz", 1), Verdict::PreconditionFailed);
    }

    #[test]
    fn if_none_match_wins_over_if_modified_since() {
        let c = Conditions {
            if_none_match: Some(ETagCondition::ETag(ETag::Strong("abc".into()))),
            if_modified_since: Some(ts(10)),
            ..Default::default()
        };
        assert_eq!(c.evaluate("abc", 100 * SEC), Verdict::NotModified);
        assert_eq!(c.evaluate("xyz", 5 * SEC), Verdict::Proceed);
    }

    #[test]
    fn dates_compare_at_second_resolution() {
        let c = Conditions {
            if_modified_since: Some(ts(10)),
            ..Default::default()
        };
        assert_eq!(c.evaluate("e", 10 * SEC + 999_999_999), Verdict::NotModified);
        assert_eq!(c.evaluate("e", 11 * SEC), Verdict::Proceed);
        let c = Conditions {
            if_unmodified_since: Some(ts(10)),
            ..Default::default()
        };
        assert_eq!(c.evaluate("e", 10 * SEC + 5), Verdict::Proceed);
        assert_eq!(c.evaluate("e", 11 * SEC), Verdict::PreconditionFailed);
    }
}

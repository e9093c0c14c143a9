//! Object and bucket tags: parsed from the `x-amz-tagging` header or a Tagging document,
//! checked against S3's limits.

use s3s::dto::{Tag, Tagging};
use s3s::{S3Result, s3_error};
use valley_types::limits::{TAG_KEY_CHARS_MAX, TAG_VALUE_CHARS_MAX};

/// Parses `k1=v1&k2=v2` (URL-encoded) as sent in `x-amz-tagging`.
pub fn parse_header(header: Option<&str>) -> S3Result<Vec<(String, String)>> {
    let Some(header) = header.filter(|h| !h.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for pair in header.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((decode(k)?, decode(v)?));
    }
    validate(pairs, valley_types::limits::OBJECT_TAGS_MAX)
}

fn decode(s: &str) -> S3Result<String> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            s3_error!(
                InvalidArgument,
                "The x-amz-tagging header is not valid URL-encoded UTF-8."
            )
        })
}

pub fn from_tagging(tagging: Tagging, max: usize) -> S3Result<Vec<(String, String)>> {
    let pairs = tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    validate(pairs, max)
}

/// A version's tags as S3 lists them: by key (S3 keeps a tag set as a map, whatever order it
/// was written in).
pub fn to_tag_set(pairs: &[(String, String)]) -> Vec<Tag> {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .into_iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

fn validate(pairs: Vec<(String, String)>, max: usize) -> S3Result<Vec<(String, String)>> {
    if pairs.len() > max {
        return Err(s3_error!(InvalidTag, "Object tags cannot be greater than {max}"));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in &pairs {
        if k.is_empty() || k.chars().count() > TAG_KEY_CHARS_MAX {
            return Err(s3_error!(InvalidTag, "The TagKey you have provided is invalid"));
        }
        if v.chars().count() > TAG_VALUE_CHARS_MAX {
            return Err(s3_error!(InvalidTag, "The TagValue you have provided is invalid"));
        }
        if !seen.insert(k.as_str()) {
            return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tags_are_url_decoded() {
        let tags = parse_header(Some("a=1&b%20c=d%2Be&e=")).unwrap();
        assert_eq!(
            tags,
            vec![
                ("a".into(), "1".into()),
                ("b c".into(), "d+e".into()),
                ("e".into(), String::new())
            ]
        );
    }

    #[test]
    fn eleven_object_tags_are_refused_ten_accepted() {
        let ten: Vec<String> = (0..10).map(|i| format!("k{i}=v")).collect();
        assert!(parse_header(Some(&ten.join("&"))).is_ok());
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert!(parse_header(Some(&eleven.join("&"))).is_err());
    }

    #[test]
    fn duplicate_and_oversized_tags_are_refused() {
        assert!(parse_header(Some("a=1&a=2")).is_err());
        let long_key = "k".repeat(TAG_KEY_CHARS_MAX + 1);
        assert!(parse_header(Some(&format!("{long_key}=v"))).is_err());
        let ok_key = "k".repeat(TAG_KEY_CHARS_MAX);
        assert!(parse_header(Some(&format!("{ok_key}=v"))).is_ok());
    }
}

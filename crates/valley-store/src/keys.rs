//! Byte layouts of the metadata tables' keys.
//!
//! Object keys are UTF-8 without NUL (the S3 layer refuses NUL), so `\0` separates fields and
//! sorts before every key byte: entries of one bucket are contiguous and ordered by key bytes,
//! which is S3's listing order. Versions sort newest first through an inverted timestamp.

/// `bucket \0`: the start of a bucket's entries.
#[must_use]
pub fn bucket_prefix(bucket: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1);
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k
}

/// `bucket \1`: just past the end of a bucket's entries.
#[must_use]
pub fn bucket_end(bucket: &str) -> Vec<u8> {
    let mut k = bucket_prefix(bucket);
    *k.last_mut().unwrap_or(&mut 0) = 1;
    k
}

/// `bucket \0 key \0`: the start of one key's versions.
#[must_use]
pub fn object_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = bucket_prefix(bucket);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k
}

/// `bucket \0 key \1`: just past one key's versions, and the first entry of any greater key.
#[must_use]
pub fn object_end(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = object_prefix(bucket, key);
    *k.last_mut().unwrap_or(&mut 0) = 1;
    k
}

/// `bucket \0 prefix \xff`: past every key that starts with `prefix` (no UTF-8 byte is 0xff).
#[must_use]
pub fn past_prefix(bucket: &str, prefix: &str) -> Vec<u8> {
    let mut k = bucket_prefix(bucket);
    k.extend_from_slice(prefix.as_bytes());
    k.push(0xff);
    k
}

/// `bucket \0 key \0 !hlc`: one version.
#[must_use]
pub fn version_key(bucket: &str, key: &str, hlc: u64) -> Vec<u8> {
    let mut k = object_prefix(bucket, key);
    k.extend_from_slice(&(!hlc).to_be_bytes());
    k
}

/// Splits a versions-table key of `bucket` into the object key and the version's timestamp.
#[must_use]
pub fn parse_version_key<'a>(bucket: &str, raw: &'a [u8]) -> Option<(&'a str, u64)> {
    let rest = raw.strip_prefix(bucket.as_bytes())?.strip_prefix(&[0])?;
    let (key, suffix) = rest.split_at(rest.len().checked_sub(9)?);
    let (sep, inverted) = suffix.split_first()?;
    if *sep != 0 {
        return None;
    }
    let inverted: [u8; 8] = inverted.try_into().ok()?;
    Some((std::str::from_utf8(key).ok()?, !u64::from_be_bytes(inverted)))
}

/// The version id Valley gives a version written with versioning enabled: its timestamp in
/// hex, so that the id locates the record directly.
#[must_use]
pub fn version_id_of(hlc: u64) -> String {
    format!("{hlc:016x}")
}

/// The timestamp a version id stands for, if it is one of Valley's.
#[must_use]
pub fn hlc_of_version_id(version_id: &str) -> Option<u64> {
    if version_id.len() != 16 {
        return None;
    }
    u64::from_str_radix(version_id, 16).ok()
}

/// `bucket \0 key \0 upload_id`: an open multipart upload.
#[must_use]
pub fn upload_key(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = object_prefix(bucket, key);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

/// Splits an uploads-table key of `bucket` into the object key and the upload id.
#[must_use]
pub fn parse_upload_key<'a>(bucket: &str, raw: &'a [u8]) -> Option<(&'a str, &'a str)> {
    let rest = raw.strip_prefix(bucket.as_bytes())?.strip_prefix(&[0])?;
    let sep = rest.iter().rposition(|b| *b == 0)?;
    Some((
        std::str::from_utf8(&rest[..sep]).ok()?,
        std::str::from_utf8(&rest[sep + 1..]).ok()?,
    ))
}

/// `upload_id \0`: the start of an upload's parts.
#[must_use]
pub fn parts_prefix(upload_id: &str) -> Vec<u8> {
    let mut k = upload_id.as_bytes().to_vec();
    k.push(0);
    k
}

/// `upload_id \0 part_number`: one part.
#[must_use]
pub fn part_key(upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut k = parts_prefix(upload_id);
    k.extend_from_slice(&part_number.to_be_bytes());
    k
}

#[must_use]
pub fn parse_part_number(raw: &[u8]) -> Option<u32> {
    let tail: [u8; 4] = raw.get(raw.len().checked_sub(4)?..)?.try_into().ok()?;
    Some(u32::from_be_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sort_by_key_bytes_then_newest_first() {
        let mut keys = vec![
            version_key("b", "a/b", 5),
            version_key("b", "a", 1),
            version_key("b", "a", 9),
            version_key("b", "a\u{1}", 3),
            version_key("b", "é", 3),
            version_key("b", "z", 3),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_version_key("b", k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![("a", 9), ("a", 1), ("a\u{1}", 3), ("a/b", 5), ("z", 3), ("é", 3)]
        );
    }

    #[test]
    fn object_end_is_past_every_version_and_before_greater_keys() {
        assert!(version_key("b", "a", 0) < object_end("b", "a"));
        assert!(version_key("b", "a", u64::MAX) < object_end("b", "a"));
        assert!(object_end("b", "a") < version_key("b", "a\u{1}", 0));
        assert!(past_prefix("b", "a/") > version_key("b", "a/\u{10ffff}", 0));
        assert!(bucket_end("b") > version_key("b", "\u{10ffff}", 0));
    }

    #[test]
    fn upload_keys_round_trip() {
        let k = upload_key("bk", "dir/file", "u123");
        assert_eq!(parse_upload_key("bk", &k), Some(("dir/file", "u123")));
    }
}

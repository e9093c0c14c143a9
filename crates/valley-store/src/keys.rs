//! Byte layouts of the metadata tables' keys.
//!
//! Object keys are UTF-8 without NUL (the S3 layer refuses NUL), so `\0` separates fields and
//! sorts before every key byte: entries of one bucket are contiguous and ordered by key bytes,
//! which is S3's listing order. Versions sort newest first through an inverted [`Stamp`].

/// Orders the versions of a key across hubs: the HLC timestamp, then a tag of the origin hub
/// (so two hubs writing at the same nanosecond still produce distinct, ordered versions).
/// Last-writer-wins compares stamps; every hub computes the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub hlc: u64,
    pub origin_tag: u32,
}

/// A stable 32-bit tag of a hub id (FNV-1a): part of every version's [`Stamp`].
#[must_use]
pub fn origin_tag(origin: &str) -> u32 {
    origin
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

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

/// `bucket \0 key \0 !hlc !origin_tag`: one version.
#[must_use]
pub fn version_key(bucket: &str, key: &str, stamp: Stamp) -> Vec<u8> {
    let mut k = object_prefix(bucket, key);
    k.extend_from_slice(&(!stamp.hlc).to_be_bytes());
    k.extend_from_slice(&(!stamp.origin_tag).to_be_bytes());
    k
}

/// Splits a versions-table key of `bucket` into the object key and the version's stamp.
#[must_use]
pub fn parse_version_key<'a>(bucket: &str, raw: &'a [u8]) -> Option<(&'a str, Stamp)> {
    let rest = raw.strip_prefix(bucket.as_bytes())?.strip_prefix(&[0])?;
    let (key, suffix) = rest.split_at(rest.len().checked_sub(13)?);
    let (sep, inverted) = suffix.split_first()?;
    if *sep != 0 {
        return None;
    }
    let hlc: [u8; 8] = inverted[..8].try_into().ok()?;
    let tag: [u8; 4] = inverted[8..].try_into().ok()?;
    let stamp = Stamp {
        hlc: !u64::from_be_bytes(hlc),
        origin_tag: !u32::from_be_bytes(tag),
    };
    Some((std::str::from_utf8(key).ok()?, stamp))
}

/// The version id Valley gives a version written with versioning enabled: its stamp in hex,
/// so that the id locates the record directly and is the same at every hub.
#[must_use]
pub fn version_id_of(stamp: Stamp) -> String {
    format!("{:016x}{:08x}", stamp.hlc, stamp.origin_tag)
}

/// The stamp a version id stands for, if it is one of Valley's.
#[must_use]
pub fn stamp_of_version_id(version_id: &str) -> Option<Stamp> {
    if version_id.len() != 24 || !version_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Stamp {
        hlc: u64::from_str_radix(&version_id[..16], 16).ok()?,
        origin_tag: u32::from_str_radix(&version_id[16..], 16).ok()?,
    })
}

impl Stamp {
    #[must_use]
    pub fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.hlc.to_be_bytes());
        out[8..].copy_from_slice(&self.origin_tag.to_be_bytes());
        out
    }

    #[must_use]
    pub fn from_bytes(raw: &[u8]) -> Option<Self> {
        Some(Stamp {
            hlc: u64::from_be_bytes(raw.get(..8)?.try_into().ok()?),
            origin_tag: u32::from_be_bytes(raw.get(8..12)?.try_into().ok()?),
        })
    }
}

/// `bucket \0 key`: a key's tombstone.
#[must_use]
pub fn tombstone_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = bucket_prefix(bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `bucket \0 key \0 \xff stamp`: the tombstone of one deleted version. Sorts apart from the
/// key's null-version tombstone (`bucket \0 key`) and from every other key's.
#[must_use]
pub fn version_tombstone_key(bucket: &str, key: &str, stamp: Stamp) -> Vec<u8> {
    let mut k = object_prefix(bucket, key);
    k.push(0xff);
    k.extend_from_slice(&stamp.to_bytes());
    k
}

/// `bucket \0 key \0 \xfe`: the stamp of the newest version of the key known to exist at
/// another hub (placed there, not here): a read of the latest version here must look there.
#[must_use]
pub fn newer_hint_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = object_prefix(bucket, key);
    k.push(0xfe);
    k
}

/// `bucket \0 key \0 stamp \0 index`: one chunk of a replica being received in chunks.
#[must_use]
pub fn staged_chunk_key(bucket: &str, key: &str, stamp: Stamp, index: u32) -> Vec<u8> {
    let mut k = staged_prefix(bucket, key, stamp);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// `bucket \0 key \0 stamp \0`: the start of one replica's staged chunks.
#[must_use]
pub fn staged_prefix(bucket: &str, key: &str, stamp: Stamp) -> Vec<u8> {
    let mut k = object_prefix(bucket, key);
    k.extend_from_slice(&stamp.to_bytes());
    k.push(0);
    k
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
        let s = |hlc| Stamp { hlc, origin_tag: 7 };
        let mut keys = [
            version_key("b", "a/b", s(5)),
            version_key("b", "a", s(1)),
            version_key("b", "a", s(9)),
            version_key("b", "a", Stamp { hlc: 9, origin_tag: 8 }),
            version_key("b", "a\u{1}", s(3)),
            version_key("b", "é", s(3)),
            version_key("b", "z", s(3)),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_version_key("b", k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![
                ("a", Stamp { hlc: 9, origin_tag: 8 }),
                ("a", s(9)),
                ("a", s(1)),
                ("a\u{1}", s(3)),
                ("a/b", s(5)),
                ("z", s(3)),
                ("é", s(3))
            ]
        );
        let id = version_id_of(Stamp {
            hlc: 0x18ec,
            origin_tag: 0xdead_beef,
        });
        assert_eq!(
            stamp_of_version_id(&id),
            Some(Stamp {
                hlc: 0x18ec,
                origin_tag: 0xdead_beef
            })
        );
        assert_eq!(stamp_of_version_id("null"), None);
    }

    #[test]
    fn object_end_is_past_every_version_and_before_greater_keys() {
        let s = |hlc| Stamp { hlc, origin_tag: 0 };
        assert!(version_key("b", "a", s(0)) < object_end("b", "a"));
        assert!(version_key("b", "a", s(u64::MAX)) < object_end("b", "a"));
        assert!(object_end("b", "a") < version_key("b", "a\u{1}", s(0)));
        assert!(past_prefix("b", "a/") > version_key("b", "a/\u{10ffff}", s(0)));
        assert!(bucket_end("b") > version_key("b", "\u{10ffff}", s(0)));
    }

    #[test]
    fn upload_keys_round_trip() {
        let k = upload_key("bk", "dir/file", "u123");
        assert_eq!(parse_upload_key("bk", &k), Some(("dir/file", "u123")));
    }
}

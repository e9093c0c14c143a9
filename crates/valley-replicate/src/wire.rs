//! The peer protocol's paths and bodies, shared by client and server.
//!
//! | call | meaning |
//! |---|---|
//! | `GET  /_valley/peer/v1/hello` | who are you, which topology (hash) |
//! | `PUT  /_valley/peer/v1/object?bucket=B&key=K` | a version: `x-valley-version` header, bytes as body |
//! | `POST /_valley/peer/v1/delete` | a delete ([`DeleteMessage`]) |
//! | `POST /_valley/peer/v1/control` | a control-plane change |
//! | `GET  /_valley/peer/v1/inventory` | objects and bytes held per bucket |
//!
//! Every call carries the caller's hub id, time and HMAC signature (see [`crate::auth`]) and its
//! topology hash; a hub refuses a peer whose topology differs (409) or whose data it may not
//! hold (403) — the receiver checks residency itself rather than trusting the sender.

use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "/_valley/peer/v1/";
pub const HEADER_VERSION: &str = "x-valley-version";

const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[must_use]
pub fn object_path(bucket: &str, key: &str) -> String {
    format!(
        "{PREFIX}object?bucket={}&key={}",
        utf8_percent_encode(bucket, QUERY_VALUE),
        utf8_percent_encode(key, QUERY_VALUE)
    )
}

/// Reads `name` from a query string.
#[must_use]
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })?
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub hub: String,
    pub topology: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteMessage {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub hlc: u64,
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BucketHoldings {
    pub bucket: String,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Inventory {
    pub hub: String,
    pub buckets: Vec<BucketHoldings>,
}

/// Recomputes an S3 ETag while bytes stream past: plain MD5, or for a multipart object the MD5
/// of its parts' MD5s with `-N`. Replication checks every transfer against the ETag the origin
/// recorded, so a flipped bit anywhere on the way is caught end to end.
pub struct EtagCheck {
    part_sizes: Vec<u64>,
    part_index: usize,
    in_part: u64,
    current: Md5,
    digests: Vec<u8>,
}

impl EtagCheck {
    #[must_use]
    pub fn new(part_sizes: &[u64]) -> Self {
        Self {
            part_sizes: part_sizes.to_vec(),
            part_index: 0,
            in_part: 0,
            current: Md5::new(),
            digests: Vec::new(),
        }
    }

    pub fn update(&mut self, mut chunk: &[u8]) {
        if self.part_sizes.is_empty() {
            self.current.update(chunk);
            return;
        }
        while !chunk.is_empty() {
            let part_size = self.part_sizes.get(self.part_index).copied().unwrap_or(u64::MAX);
            let room = usize::try_from(part_size - self.in_part).unwrap_or(usize::MAX);
            let take = room.min(chunk.len());
            self.current.update(&chunk[..take]);
            self.in_part += take as u64;
            chunk = &chunk[take..];
            if self.in_part == part_size {
                let done = std::mem::replace(&mut self.current, Md5::new());
                self.digests.extend_from_slice(&done.finalize());
                self.part_index += 1;
                self.in_part = 0;
            }
        }
    }

    #[must_use]
    pub fn finish(self) -> String {
        if self.part_sizes.is_empty() {
            return hex::encode(self.current.finalize());
        }
        let mut digests = self.digests;
        if self.in_part > 0 {
            digests.extend_from_slice(&self.current.finalize());
        }
        format!("{}-{}", hex::encode(Md5::digest(&digests)), self.part_sizes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_matches_s3s_rule_whatever_the_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let parts = [4000u64, 4000, 2000];
        let mut expected = Vec::new();
        let mut at = 0usize;
        for p in parts {
            expected.extend_from_slice(&Md5::digest(&data[at..at + p as usize]));
            at += p as usize;
        }
        let want = format!("{}-3", hex::encode(Md5::digest(&expected)));
        for chunk in [1usize, 7, 999, 4000, 10_000] {
            let mut check = EtagCheck::new(&parts);
            for c in data.chunks(chunk) {
                check.update(c);
            }
            assert_eq!(check.finish(), want, "chunk {chunk}");
        }
        let mut single = EtagCheck::new(&[]);
        single.update(&data);
        assert_eq!(single.finish(), hex::encode(Md5::digest(&data)));
    }

    #[test]
    fn query_values_round_trip() {
        let path = object_path("b", "dir/ä b&c=d%");
        let query = path.split_once('?').unwrap().1;
        assert_eq!(query_param(query, "key").as_deref(), Some("dir/ä b&c=d%"));
        assert_eq!(query_param(query, "bucket").as_deref(), Some("b"));
    }
}

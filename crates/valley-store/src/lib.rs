//! Valley's storage layer.
//!
//! Two traits sit at the seam to the disk, each with an embedded and an in-memory
//! implementation, and one conformance suite (`tests/conformance.rs`) runs against all of them:
//!
//! - [`MetaStore`]: an ordered, transactional key-value store of small records. The embedded
//!   implementation is [`RedbMeta`] (redb: ACID, fsync on commit, pure Rust), with group commit
//!   so that concurrent writers share one fsync.
//! - [`BlobStore`]: immutable byte blobs. The embedded implementation is [`FsBlobs`]: one file
//!   per blob, written to a temporary file, fsync'd, renamed into place, directory fsync'd.
//!
//! [`Catalog`] is the bucket/object model written once over those traits: buckets, object
//! versions (with S3 versioning), multipart uploads, listing. The metadata commit is the single
//! point at which an object becomes visible; blobs not referenced by any committed record are
//! orphans and are removed by [`Catalog::collect_orphans`] at start-up.

pub mod blob;
pub mod blob_fs;
pub mod blob_mem;
pub mod catalog;
pub mod codec;
pub mod digest;
pub mod error;
pub mod keys;
pub mod list;
pub mod meta;
pub mod meta_mem;
pub mod meta_redb;
pub mod record;
pub mod replica;
pub(crate) mod usage;

pub use blob::{BlobId, BlobStore, BlobWriter, ByteStream};
pub use blob_fs::FsBlobs;
pub use blob_mem::MemBlobs;
pub use catalog::{Catalog, RemoteDelete, ReplicaOutcome, StampedOutcome, VersionHook};
pub use error::{StoreError, StoreResult};
pub use meta::{MetaStore, ReadTxn, Table, WriteJob, WriteTxn};
pub use meta_mem::MemMeta;
pub use meta_redb::RedbMeta;
pub use replica::{StagedChunk, VersionSummary};

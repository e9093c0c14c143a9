//! The blob seam: immutable byte blobs, written once through a [`BlobWriter`] and then read
//! in ranges. A blob becomes durable at [`BlobWriter::finish`]; it becomes *visible* only when a
//! metadata record naming it commits.

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

/// A blob's name: 32 lowercase hex digits, random.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlobId(pub String);

impl BlobId {
    #[must_use]
    pub fn random() -> Self {
        BlobId(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// Whether `s` has the shape of a blob id (so a stray file is never taken for one).
    #[must_use]
    pub fn is_well_formed(s: &str) -> bool {
        s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stream of a blob's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Receives a new blob's bytes.
#[async_trait::async_trait]
pub trait BlobWriter: Send {
    /// Appends `chunk`. It is taken by value so that a writer can keep it until it writes a
    /// batch, and hand it to the kernel without copying it first.
    async fn write(&mut self, chunk: bytes::Bytes) -> io::Result<()>;
    /// Makes the blob durable under its id. Until then a crash leaves no trace but a temporary
    /// file, removed at the next start.
    async fn finish(self: Box<Self>) -> io::Result<BlobId>;
    /// Drops the partial blob.
    async fn abort(self: Box<Self>);
}

/// Stores immutable blobs.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn create(&self) -> io::Result<Box<dyn BlobWriter>>;
    /// `len` bytes of blob `id` from `offset`.
    async fn read(&self, id: &BlobId, offset: u64, len: u64) -> io::Result<ByteStream>;
    /// Removes a blob; removing a missing blob is not an error.
    async fn delete(&self, id: &BlobId) -> io::Result<()>;
    /// Every stored blob, for orphan collection.
    async fn list(&self) -> io::Result<Vec<BlobId>>;
}

//! The in-memory [`BlobStore`], for tests.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::blob::{BlobId, BlobStore, BlobWriter, ByteStream};

#[derive(Default, Clone)]
pub struct MemBlobs {
    blobs: Arc<Mutex<HashMap<BlobId, Bytes>>>,
}

impl MemBlobs {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned() -> io::Error {
    io::Error::other("lock poisoned")
}

struct MemBlobWriter {
    buf: Vec<u8>,
    blobs: Arc<Mutex<HashMap<BlobId, Bytes>>>,
}

#[async_trait::async_trait]
impl BlobWriter for MemBlobWriter {
    async fn write(&mut self, chunk: bytes::Bytes) -> io::Result<()> {
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> io::Result<BlobId> {
        let id = BlobId::random();
        self.blobs
            .lock()
            .map_err(|_| poisoned())?
            .insert(id.clone(), Bytes::from(self.buf));
        Ok(id)
    }

    async fn abort(self: Box<Self>) {}
}

#[async_trait::async_trait]
impl BlobStore for MemBlobs {
    async fn create(&self) -> io::Result<Box<dyn BlobWriter>> {
        Ok(Box::new(MemBlobWriter {
            buf: Vec::new(),
            blobs: self.blobs.clone(),
        }))
    }

    async fn read(&self, id: &BlobId, offset: u64, len: u64) -> io::Result<ByteStream> {
        let blob = self
            .blobs
            .lock()
            .map_err(|_| poisoned())?
            .get(id)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no blob {id}")))?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start
            .checked_add(usize::try_from(len).map_err(io::Error::other)?)
            .filter(|end| *end <= blob.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, format!("blob {id} is shorter than asked")))?;
        let chunk = blob.slice(start..end);
        Ok(Box::pin(futures::stream::iter([Ok(chunk)])))
    }

    async fn delete(&self, id: &BlobId) -> io::Result<()> {
        self.blobs.lock().map_err(|_| poisoned())?.remove(id);
        Ok(())
    }

    async fn list(&self) -> io::Result<Vec<BlobId>> {
        Ok(self.blobs.lock().map_err(|_| poisoned())?.keys().cloned().collect())
    }
}

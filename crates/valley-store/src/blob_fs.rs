//! The embedded [`BlobStore`]: one file per blob under `DIR/blobs/<2 hex>/<id>`.
//!
//! A blob is written to `DIR/tmp/<id>`, fsync'd, renamed into place and its directory fsync'd,
//! so a finished blob survives power loss and a torn one never carries a blob's name.
//! `DIR/tmp` is emptied at open: anything there was never finished.

use std::io;
use std::path::{Path, PathBuf};

use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::blob::{BlobId, BlobStore, BlobWriter, ByteStream};

/// Bytes buffered before each write to the file.
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;
/// Size of each chunk a read yields.
const READ_CHUNK_BYTES: usize = 256 * 1024;

pub struct FsBlobs {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl FsBlobs {
    /// Opens the blob directory under `root`, creating it, and removes unfinished blobs.
    pub fn open(root: &Path) -> io::Result<Self> {
        let blobs = root.join("blobs");
        let tmp = root.join("tmp");
        for dir in [&blobs, &tmp] {
            std::fs::create_dir_all(dir)?;
        }
        for shard in 0..=255u8 {
            std::fs::create_dir_all(blobs.join(format!("{shard:02x}")))?;
        }
        for entry in std::fs::read_dir(&tmp)? {
            let entry = entry?;
            tracing::info!(path = %entry.path().display(), "removing unfinished blob");
            std::fs::remove_file(entry.path())?;
        }
        sync_dir(root)?;
        sync_dir(&blobs)?;
        Ok(Self { blobs, tmp })
    }

    fn path_of(&self, id: &BlobId) -> io::Result<PathBuf> {
        if !BlobId::is_well_formed(&id.0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("malformed blob id {:?}", id.0),
            ));
        }
        Ok(self.blobs.join(&id.0[..2]).join(&id.0))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

struct FsBlobWriter {
    id: BlobId,
    tmp_path: PathBuf,
    final_path: PathBuf,
    file: BufWriter<fs::File>,
}

#[async_trait::async_trait]
impl BlobWriter for FsBlobWriter {
    async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk).await
    }

    async fn finish(mut self: Box<Self>) -> io::Result<BlobId> {
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        fs::rename(&self.tmp_path, &self.final_path).await?;
        let dir = self.final_path.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::task::spawn_blocking(move || sync_dir(&dir))
            .await
            .map_err(io::Error::other)??;
        Ok(self.id)
    }

    async fn abort(self: Box<Self>) {
        drop(self.file);
        let _ = fs::remove_file(&self.tmp_path).await;
    }
}

#[async_trait::async_trait]
impl BlobStore for FsBlobs {
    async fn create(&self) -> io::Result<Box<dyn BlobWriter>> {
        let id = BlobId::random();
        let tmp_path = self.tmp.join(&id.0);
        let final_path = self.path_of(&id)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .await?;
        Ok(Box::new(FsBlobWriter {
            id,
            tmp_path,
            final_path,
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
        }))
    }

    async fn read(&self, id: &BlobId, offset: u64, len: u64) -> io::Result<ByteStream> {
        let mut file = fs::File::open(self.path_of(id)?).await?;
        let size = file.metadata().await?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("blob {id} is {size} bytes; asked for {len} from {offset}"),
            ));
        }
        file.seek(io::SeekFrom::Start(offset)).await?;
        let reader = file.take(len);
        Ok(Box::pin(tokio_util_stream(reader)))
    }

    async fn delete(&self, id: &BlobId) -> io::Result<()> {
        match fs::remove_file(self.path_of(id)?).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn list(&self) -> io::Result<Vec<BlobId>> {
        let mut ids = Vec::new();
        let mut shards = fs::read_dir(&self.blobs).await?;
        while let Some(shard) = shards.next_entry().await? {
            if !shard.file_type().await?.is_dir() {
                continue;
            }
            let mut files = fs::read_dir(shard.path()).await?;
            while let Some(file) = files.next_entry().await? {
                if let Some(name) = file.file_name().to_str()
                    && BlobId::is_well_formed(name)
                {
                    ids.push(BlobId(name.to_owned()));
                }
            }
        }
        Ok(ids)
    }
}

/// Turns a reader into a stream of chunks of at most [`READ_CHUNK_BYTES`].
fn tokio_util_stream<R>(reader: R) -> impl futures::Stream<Item = io::Result<bytes::Bytes>> + Send + Sync
where
    R: tokio::io::AsyncRead + Unpin + Send + Sync + 'static,
{
    futures::stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        let mut buf = bytes::BytesMut::with_capacity(READ_CHUNK_BYTES);
        loop {
            match reader.read_buf(&mut buf).await {
                Ok(0) if buf.is_empty() => return None,
                Ok(0) => return Some((Ok(buf.freeze()), None)),
                Ok(_) if buf.len() < READ_CHUNK_BYTES && buf.capacity() > buf.len() => {}
                Ok(_) => return Some((Ok(buf.freeze()), Some(reader))),
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
}

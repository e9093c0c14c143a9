//! The embedded [`BlobStore`]: one file per blob under `DIR/blobs/<2 hex>/<id>`.
//!
//! A blob is written to `DIR/tmp/<id>`, fsync'd, renamed into place and its directory fsync'd,
//! so a finished blob survives power loss and a torn one never carries a blob's name.
//! `DIR/tmp` is emptied at open: anything there was never finished.

use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::blob::{BlobId, BlobStore, BlobWriter, ByteStream};

/// Bytes gathered before each write to the file.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;
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

/// Gathers the chunks it is given (by reference count, not by copy) and writes each batch of
/// about [`WRITE_BATCH_BYTES`] with one vectored write on the blocking pool, while the next batch
/// gathers. Large PUTs are CPU-bound on a small machine (MD5 is half of it), so the two copies a
/// buffered async file makes before the kernel's own (into a `BufWriter`, then into tokio's file
/// buffer) were worth removing.
struct FsBlobWriter {
    id: BlobId,
    tmp_path: PathBuf,
    final_path: PathBuf,
    /// `None` while a batch is being written, and for good after a failed write.
    file: Option<std::fs::File>,
    /// The batch being written; it hands the file back.
    in_flight: Option<tokio::task::JoinHandle<(std::fs::File, io::Result<()>)>>,
    batch: Vec<Bytes>,
    batch_bytes: usize,
    /// Renamed into place: the temporary file is gone, and must not be removed on drop.
    finished: bool,
}

/// A writer dropped unfinished (its request's future was dropped: the client went away
/// mid-body) removes its temporary file at once, instead of leaving it until the next start.
impl Drop for FsBlobWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

impl FsBlobWriter {
    /// Waits for the batch in flight, if any, and takes the file back.
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(write) = self.in_flight.take() {
            let (file, result) = write.await.map_err(io::Error::other)?;
            result?;
            self.file = Some(file);
        }
        Ok(())
    }

    fn take_file(&mut self) -> io::Result<std::fs::File> {
        self.file
            .take()
            .ok_or_else(|| io::Error::other("an earlier write to this blob failed"))
    }
}

/// Writes every byte of `chunks`, in order, with as few system calls as the kernel allows.
fn write_all_chunks(file: &mut std::fs::File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl BlobWriter for FsBlobWriter {
    async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.batch_bytes += chunk.len();
        self.batch.push(chunk);
        if self.batch_bytes >= WRITE_BATCH_BYTES {
            self.settle().await?;
            let mut file = self.take_file()?;
            let batch = std::mem::take(&mut self.batch);
            self.batch_bytes = 0;
            self.in_flight = Some(tokio::task::spawn_blocking(move || {
                let result = write_all_chunks(&mut file, &batch);
                (file, result)
            }));
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> io::Result<BlobId> {
        self.settle().await?;
        let mut file = self.take_file()?;
        let batch = std::mem::take(&mut self.batch);
        let (tmp_path, final_path) = (self.tmp_path.clone(), self.final_path.clone());
        tokio::task::spawn_blocking(move || {
            write_all_chunks(&mut file, &batch)?;
            file.sync_all()?;
            std::fs::rename(&tmp_path, &final_path)?;
            sync_dir(final_path.parent().unwrap_or(Path::new(".")))
        })
        .await
        .map_err(io::Error::other)??;
        self.finished = true;
        Ok(self.id.clone())
    }

    async fn abort(mut self: Box<Self>) {
        let _ = self.settle().await;
        drop(self.file.take());
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
            .await?
            .into_std()
            .await;
        Ok(Box::new(FsBlobWriter {
            id,
            tmp_path,
            final_path,
            file: Some(file),
            in_flight: None,
            batch: Vec::new(),
            batch_bytes: 0,
            finished: false,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("tmp")).map_or(0, Iterator::count)
    }

    #[tokio::test]
    async fn a_writer_dropped_unfinished_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::open(dir.path()).unwrap();
        let mut writer = blobs.create().await.unwrap();
        writer.write(Bytes::from(vec![7u8; 3 << 20])).await.unwrap();
        assert_eq!(tmp_files(dir.path()), 1);
        drop(writer);
        assert_eq!(tmp_files(dir.path()), 0, "the dropped writer's file is gone");

        let mut writer = blobs.create().await.unwrap();
        writer.write(Bytes::from_static(b"kept")).await.unwrap();
        let id = writer.finish().await.unwrap();
        assert_eq!(tmp_files(dir.path()), 0);
        assert!(blobs.path_of(&id).unwrap().exists(), "a finished blob stays");
    }
}

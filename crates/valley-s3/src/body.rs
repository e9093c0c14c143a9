//! Taking in a request body: streamed to a blob (or kept inline when small) while hashing MD5
//! for the ETag and any flexible checksum, then checked against what the client declared.
//! Memory use is bounded by one chunk plus the blob writer's buffer, whatever the body's size.

use futures::{Stream, StreamExt};
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum, Md5};
use s3s::dto::{ChecksumAlgorithm, StreamingBlob};
use s3s::{S3Error, S3Result, s3_error};
use valley_store::record::{BlobRef, Checksums, ObjectData, Sealing};
use valley_store::{BlobStore, BlobWriter};
use valley_types::limits::INLINE_OBJECT_BYTES_MAX;

use crate::convert::internal;

/// The checksums a client declared for a body: the algorithm it asked for, and the values it
/// sent in headers (or, for aws-chunked bodies, in trailers read after the body).
#[derive(Debug, Default, Clone)]
pub struct Declared {
    pub algorithm: Option<ChecksumAlgorithm>,
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub crc64nvme: Option<String>,
    pub content_md5: Option<String>,
}

impl Declared {
    /// Adds values the client sent as trailers of an aws-chunked body.
    pub fn add_trailers(&mut self, trailers: Option<s3s::TrailingHeaders>) -> S3Result<()> {
        let Some(trailers) = trailers.and_then(|t| t.take()) else {
            return Ok(());
        };
        let read = |name: &str| -> S3Result<Option<String>> {
            trailers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map(str::to_owned)
                        .map_err(|_| s3_error!(InvalidArgument, "Malformed {name} trailer"))
                })
                .transpose()
        };
        self.crc32 = read("x-amz-checksum-crc32")?.or(self.crc32.take());
        self.crc32c = read("x-amz-checksum-crc32c")?.or(self.crc32c.take());
        self.sha1 = read("x-amz-checksum-sha1")?.or(self.sha1.take());
        self.sha256 = read("x-amz-checksum-sha256")?.or(self.sha256.take());
        self.crc64nvme = read("x-amz-checksum-crc64nvme")?.or(self.crc64nvme.take());
        Ok(())
    }

    fn hasher(&self) -> S3Result<ChecksumHasher> {
        let mut h = ChecksumHasher::default();
        if self.crc32.is_some() {
            h.crc32 = Some(Default::default());
        }
        if self.crc32c.is_some() {
            h.crc32c = Some(Default::default());
        }
        if self.sha1.is_some() {
            h.sha1 = Some(Default::default());
        }
        if self.sha256.is_some() {
            h.sha256 = Some(Default::default());
        }
        if self.crc64nvme.is_some() {
            h.crc64nvme = Some(Default::default());
        }
        if let Some(alg) = &self.algorithm {
            match alg.as_str() {
                ChecksumAlgorithm::CRC32 => h.crc32 = Some(Default::default()),
                ChecksumAlgorithm::CRC32C => h.crc32c = Some(Default::default()),
                ChecksumAlgorithm::SHA1 => h.sha1 = Some(Default::default()),
                ChecksumAlgorithm::SHA256 => h.sha256 = Some(Default::default()),
                ChecksumAlgorithm::CRC64NVME => h.crc64nvme = Some(Default::default()),
                other => return Err(s3_error!(InvalidArgument, "Unsupported checksum algorithm {other:?}")),
            }
        }
        Ok(h)
    }
}

/// A body taken in: where its bytes are, and its digests (of the plaintext; a sealed body's
/// stored bytes are described by `sealing`).
pub struct Ingested {
    pub data: ObjectData,
    pub size: u64,
    pub md5_hex: String,
    pub checksums: Checksums,
    pub sealing: Option<Sealing>,
}

enum Sink {
    Buffer(Vec<u8>),
    Blob(Box<dyn BlobWriter>),
}

/// Where the body's bytes go: sealed first when the write is encrypted, then kept inline while
/// small, else streamed to a blob.
struct Output {
    sink: Sink,
    /// Bytes stored so far (ciphertext and tags when sealed).
    stored: u64,
    seal: Option<crate::sse::Sealer>,
}

impl Output {
    async fn write(&mut self, chunk: bytes::Bytes, blobs: &dyn BlobStore) -> S3Result<()> {
        match &mut self.seal {
            None => self.store(chunk, blobs).await,
            Some(sealer) => {
                for sealed in sealer.incremental.push(&chunk) {
                    self.store(sealed, blobs).await?;
                }
                Ok(())
            }
        }
    }

    async fn store(&mut self, chunk: bytes::Bytes, blobs: &dyn BlobStore) -> S3Result<()> {
        self.stored += chunk.len() as u64;
        if let Some(sealer) = &mut self.seal {
            sealer.stored.update(&chunk);
        }
        match &mut self.sink {
            Sink::Buffer(buf) if self.stored <= INLINE_OBJECT_BYTES_MAX => {
                buf.extend_from_slice(&chunk);
            }
            Sink::Buffer(buf) => {
                let mut writer = blobs.create().await.map_err(internal)?;
                writer
                    .write(bytes::Bytes::from(std::mem::take(buf)))
                    .await
                    .map_err(internal)?;
                writer.write(chunk).await.map_err(internal)?;
                self.sink = Sink::Blob(writer);
            }
            Sink::Blob(writer) => writer.write(chunk).await.map_err(internal)?,
        }
        Ok(())
    }

    /// Seals and stores the last chunk; the version's sealing record.
    async fn finish(&mut self, blobs: &dyn BlobStore) -> S3Result<Option<Sealing>> {
        let Some(sealer) = self.seal.take() else {
            return Ok(None);
        };
        let crate::sse::Sealer {
            incremental,
            record,
            mut stored,
        } = sealer;
        let last = incremental.finish();
        stored.update(&last);
        // `seal` is taken: `store` does not hash the last chunk a second time.
        self.store(last, blobs).await?;
        Ok(Some(record.sealing(self.stored, stored.finish())))
    }
}

/// Streams `body` into the store. `inline_ok` allows keeping a small body in the metadata
/// record; `size_max` is the largest body accepted (EntityTooLarge past it).
pub async fn ingest(
    blobs: &dyn BlobStore,
    body: Option<StreamingBlob>,
    declared: &mut Declared,
    trailers: Option<s3s::TrailingHeaders>,
    inline_ok: bool,
    size_max: u64,
    seal: Option<crate::sse::Sealer>,
) -> S3Result<Ingested> {
    let mut hasher = declared.hasher()?;
    // A sealed part's ETag is its stored digest: its plaintext's MD5 only checks a Content-MD5.
    let plain_md5_needed = seal.as_ref().is_none_or(|s| !s.stored.is_etag()) || declared.content_md5.is_some();
    let mut md5 = plain_md5_needed.then(Md5::new);
    let mut size = 0u64;
    let sink = if inline_ok {
        Sink::Buffer(Vec::new())
    } else {
        Sink::Blob(blobs.create().await.map_err(internal)?)
    };
    let mut out = Output { sink, stored: 0, seal };
    let outcome = match pump(body, &mut out, &mut hasher, &mut md5, &mut size, blobs, size_max).await {
        Ok(()) => out.finish(blobs).await,
        Err(e) => Err(e),
    };
    let sealing = match outcome {
        Ok(sealing) => sealing,
        Err(e) => {
            if let Sink::Blob(w) = out.sink {
                w.abort().await;
            }
            return Err(e);
        }
    };
    let md5_digest = md5.map(Md5::finalize);
    let computed = hasher.finalize();
    let data = match out.sink {
        Sink::Buffer(bytes) => ObjectData::Inline(bytes),
        Sink::Blob(w) => ObjectData::Blobs(vec![BlobRef {
            id: w.finish().await.map_err(internal)?,
            size: out.stored,
        }]),
    };
    let ingested = Ingested {
        checksums: Checksums {
            crc32: computed.checksum_crc32,
            crc32c: computed.checksum_crc32c,
            sha1: computed.checksum_sha1,
            sha256: computed.checksum_sha256,
            crc64nvme: computed.checksum_crc64nvme,
            composite: false,
        },
        data,
        size,
        md5_hex: md5_digest.as_ref().map(hex::encode).unwrap_or_default(),
        sealing,
    };
    declared.add_trailers(trailers)?;
    if let Err(e) = verify(declared, &ingested, md5_digest.as_ref().map(|d| &d[..])) {
        discard(blobs, &ingested.data).await;
        return Err(e);
    }
    Ok(ingested)
}

async fn pump(
    body: Option<StreamingBlob>,
    out: &mut Output,
    hasher: &mut ChecksumHasher,
    md5: &mut Option<Md5>,
    size: &mut u64,
    blobs: &dyn BlobStore,
    size_max: u64,
) -> S3Result<()> {
    let Some(mut body) = body else { return Ok(()) };
    while let Some(chunk) = next_chunk(&mut body).await? {
        *size += chunk.len() as u64;
        if *size > size_max {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size of {size_max} bytes."
            ));
        }
        hasher.update(&chunk);
        if let Some(md5) = md5 {
            md5.update(&chunk);
        }
        out.write(chunk, blobs).await?;
    }
    Ok(())
}

async fn next_chunk<S, E>(body: &mut S) -> S3Result<Option<bytes::Bytes>>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    match body.next().await {
        None => Ok(None),
        Some(Ok(chunk)) => Ok(Some(chunk)),
        // s3s reports a bad aws-chunked chunk signature only through its error's text.
        Some(Err(e)) if e.to_string().contains("SignatureMismatch") => Err(s3_error!(
            SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided (chunk signature)."
        )),
        // The front cuts off bodies that stall or crawl; its error text starts with the code.
        Some(Err(e)) if e.to_string().contains("RequestTimeout:") => Err(s3_error!(
            RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period."
        )),
        Some(Err(e)) => Err(s3_error!(IncompleteBody, "Reading the request body failed: {e}")),
    }
}

fn verify(declared: &Declared, got: &Ingested, md5_digest: Option<&[u8]>) -> Result<(), S3Error> {
    if let Some(content_md5) = &declared.content_md5 {
        let decoded = base64_decode(content_md5)
            .filter(|d| d.len() == 16)
            .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?;
        if Some(decoded.as_slice()) != md5_digest {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
    }
    let pairs = [
        ("CRC32", &declared.crc32, &got.checksums.crc32),
        ("CRC32C", &declared.crc32c, &got.checksums.crc32c),
        ("SHA1", &declared.sha1, &got.checksums.sha1),
        ("SHA256", &declared.sha256, &got.checksums.sha256),
        ("CRC64NVME", &declared.crc64nvme, &got.checksums.crc64nvme),
    ];
    for (name, sent, computed) in pairs {
        if let Some(sent) = sent
            && Some(sent) != computed.as_ref()
        {
            return Err(s3_error!(
                BadDigest,
                "The {name} you specified did not match the calculated checksum."
            ));
        }
    }
    Ok(())
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Removes the blobs of data that will never be committed.
pub async fn discard(blobs: &dyn BlobStore, data: &ObjectData) {
    for blob in data.blobs() {
        let _ = blobs.delete(&blob.id).await;
    }
}

/// Copies a byte stream into a new blob (or inline), computing MD5 and the given checksum.
pub async fn ingest_stream(
    blobs: &dyn BlobStore,
    stream: valley_store::ByteStream,
    algorithm: Option<ChecksumAlgorithm>,
    inline_ok: bool,
    seal: Option<crate::sse::Sealer>,
) -> S3Result<Ingested> {
    let wrapped = StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream));
    let mut declared = Declared {
        algorithm,
        ..Declared::default()
    };
    ingest(blobs, Some(wrapped), &mut declared, None, inline_ok, u64::MAX, seal).await
}

/// The Content-Encoding to store: the client's, without `aws-chunked`, which only describes
/// how the request body was framed on the wire (S3 drops it too).
pub fn stored_content_encoding(raw: Option<String>) -> Option<String> {
    let raw = raw?;
    if !raw.to_ascii_lowercase().contains("aws-chunked") {
        return Some(raw);
    }
    let kept: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

#[cfg(test)]
mod tests {
    use super::stored_content_encoding;

    #[test]
    fn aws_chunked_is_not_stored_as_a_content_encoding() {
        assert_eq!(stored_content_encoding(Some("aws-chunked".into())), None);
        assert_eq!(
            stored_content_encoding(Some("gzip,aws-chunked".into())).as_deref(),
            Some("gzip")
        );
        assert_eq!(
            stored_content_encoding(Some("aws-chunked, br".into())).as_deref(),
            Some("br")
        );
        assert_eq!(stored_content_encoding(Some("gzip".into())).as_deref(), Some("gzip"));
        assert_eq!(
            stored_content_encoding(Some("deflate, gzip".into())).as_deref(),
            Some("deflate, gzip")
        );
        assert_eq!(
            stored_content_encoding(Some("deflate, gzip, aws-chunked".into())).as_deref(),
            Some("deflate, gzip")
        );
        assert_eq!(stored_content_encoding(None), None);
    }
}

//! Sealing and opening as byte streams, so an object of any size passes through in chunks of
//! bounded memory.

use std::io;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::chunk::{CHUNK_PLAIN, ChunkLayout, SegmentSealer, TAG_LEN};
use crate::error::CryptoError;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

fn to_io(e: CryptoError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Seals a body pushed to it piece by piece: a full chunk is held back until more bytes follow
/// it, so the last one is sealed as the last whatever the body's length (not known before).
#[derive(Debug)]
pub struct IncrementalSealer {
    sealer: SegmentSealer,
    buf: BytesMut,
    index: u64,
}

impl IncrementalSealer {
    #[must_use]
    pub fn new(sealer: SegmentSealer) -> Self {
        Self {
            sealer,
            buf: BytesMut::new(),
            index: 0,
        }
    }

    fn seal_next(&mut self, last: bool) -> Bytes {
        let take = if last { self.buf.len() } else { CHUNK_PLAIN as usize };
        let mut chunk = Vec::with_capacity(take + TAG_LEN as usize);
        chunk.extend_from_slice(&self.buf.split_to(take));
        self.sealer
            .seal(self.index, last, &mut chunk)
            .expect("chunks are cut to size here");
        self.index += 1;
        Bytes::from(chunk)
    }

    /// Takes `plain` in; returns the chunks it completed, sealed.
    pub fn push(&mut self, plain: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(plain);
        let mut out = Vec::new();
        while self.buf.len() as u64 > CHUNK_PLAIN {
            out.push(self.seal_next(false));
        }
        out
    }

    /// The last chunk, sealed as the last.
    pub fn finish(mut self) -> Bytes {
        self.seal_next(true)
    }
}

struct Sealing {
    input: ByteStream,
    sealer: Option<IncrementalSealer>,
    ready: std::collections::VecDeque<Bytes>,
}

/// `plain` as its sealed chunks ([`IncrementalSealer`] over a stream).
pub fn seal(plain: ByteStream, sealer: SegmentSealer) -> ByteStream {
    let state = Sealing {
        input: plain,
        sealer: Some(IncrementalSealer::new(sealer)),
        ready: std::collections::VecDeque::new(),
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(chunk) = s.ready.pop_front() {
                return Some((Ok(chunk), s));
            }
            let sealer = s.sealer.as_mut()?;
            match s.input.next().await {
                Some(Ok(bytes)) => s.ready.extend(sealer.push(&bytes)),
                Some(Err(e)) => {
                    s.sealer = None;
                    return Some((Err(e), s));
                }
                None => {
                    let last = s.sealer.take().expect("present").finish();
                    return Some((Ok(last), s));
                }
            }
        }
    }))
}

struct Opening {
    input: ByteStream,
    sealer: SegmentSealer,
    layout: ChunkLayout,
    buf: BytesMut,
    index: u64,
    skip: u64,
    left: u64,
}

/// The plaintext bytes `start..end` of a segment, from `sealed`: the stored bytes of the span
/// [`crate::ChunkLayout::sealed_span`] gives for that range. A chunk that fails its check ends
/// the stream in an error: a reader gets the true bytes or none.
pub fn open(sealed: ByteStream, sealer: SegmentSealer, layout: ChunkLayout, start: u64, end: u64) -> ByteStream {
    let end = end.min(layout.plain_len());
    let (first, _) = layout.sealed_span(start, end);
    let state = Opening {
        input: sealed,
        sealer,
        layout,
        buf: BytesMut::new(),
        index: first,
        skip: start - first * CHUNK_PLAIN,
        left: end.saturating_sub(start),
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        if s.left == 0 {
            return None;
        }
        loop {
            let Some(plain_len) = s.layout.chunk_plain_len(s.index) else {
                s.left = 0;
                return Some((Err(to_io(CryptoError::Integrity { what: "a segment" })), s));
            };
            let want = plain_len + TAG_LEN;
            if s.buf.len() as u64 >= want {
                let mut chunk = s.buf.split_to(want as usize);
                let index = s.index;
                s.index += 1;
                return match s.sealer.open(s.layout, index, &mut chunk) {
                    Ok(plain) => {
                        let from = (s.skip as usize).min(plain.len());
                        let to = plain.len().min(from + usize::try_from(s.left).unwrap_or(usize::MAX));
                        let out = Bytes::copy_from_slice(&plain[from..to]);
                        s.skip = 0;
                        s.left -= out.len() as u64;
                        Some((Ok(out), s))
                    }
                    Err(e) => {
                        s.left = 0;
                        Some((Err(to_io(e)), s))
                    }
                };
            }
            match s.input.next().await {
                Some(Ok(bytes)) => s.buf.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    s.left = 0;
                    return Some((Err(e), s));
                }
                None => {
                    s.left = 0;
                    return Some((Err(to_io(CryptoError::Integrity { what: "a segment" })), s));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::CHUNK_SEALED;
    use crate::envelope::DataKey;
    use futures::TryStreamExt;

    fn pieces(data: Vec<u8>, piece: usize) -> ByteStream {
        let parts: Vec<Result<Bytes, io::Error>> = data
            .chunks(piece.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(parts))
    }

    async fn collect(s: ByteStream) -> io::Result<Vec<u8>> {
        let parts: Vec<Bytes> = s.try_collect().await?;
        Ok(parts.concat())
    }

    #[tokio::test]
    async fn streams_seal_and_open_any_range_in_any_pieces() {
        let key = DataKey::generate();
        let len = CHUNK_PLAIN as usize * 3 + 1234;
        let plain: Vec<u8> = (0..len).map(|i| (i % 249) as u8).collect();
        let sealer = || SegmentSealer::new(&key, b"b/k/v", 0);
        let layout = ChunkLayout::new(len as u64);
        let sealed = collect(seal(pieces(plain.clone(), 1000), sealer())).await.unwrap();
        assert_eq!(sealed, sealer().seal_all(&plain));
        for (start, end) in [
            (0, len),
            (5, 6),
            (CHUNK_PLAIN as usize - 1, CHUNK_PLAIN as usize + 1),
            (len - 3, len),
        ] {
            let (_, span) = layout.sealed_span(start as u64, end as u64);
            let part = sealed[span.start as usize..span.end as usize].to_vec();
            let got = collect(open(pieces(part, 777), sealer(), layout, start as u64, end as u64))
                .await
                .unwrap();
            assert_eq!(got, &plain[start..end], "{start}..{end}");
        }
        // Bodies of exactly one and two full chunks, and an empty one, end in a last chunk.
        for n in [0, CHUNK_PLAIN as usize, 2 * CHUNK_PLAIN as usize] {
            let body = vec![5u8; n];
            let sealed = collect(seal(pieces(body.clone(), 4096), sealer())).await.unwrap();
            assert_eq!(sealer().open_all(n as u64, &sealed).unwrap(), body);
        }
    }

    #[tokio::test]
    async fn a_bad_chunk_or_a_missing_one_is_an_error() {
        let key = DataKey::generate();
        let sealer = || SegmentSealer::new(&key, b"b/k/v", 0);
        assert_eq!(
            collect(seal(pieces(Vec::new(), 10), sealer())).await.unwrap().len(),
            TAG_LEN as usize
        );
        let n = CHUNK_PLAIN * 2;
        let layout = ChunkLayout::new(n);
        let mut sealed = collect(seal(pieces(vec![9; n as usize], 4096), sealer()))
            .await
            .unwrap();
        sealed[CHUNK_SEALED as usize + 3] ^= 1;
        let got = open(pieces(sealed.clone(), 4096), sealer(), layout, 0, n);
        let items: Vec<io::Result<Bytes>> = got.collect().await;
        assert_eq!(items.len(), 2, "the first chunk, then the error");
        assert!(items[0].is_ok() && items[1].is_err());
        // Cut short: the last chunk is missing.
        let cut = sealed[..CHUNK_SEALED as usize].to_vec();
        assert!(collect(open(pieces(cut, 4096), sealer(), layout, 0, n)).await.is_err());
    }
}

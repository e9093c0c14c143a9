//! Sealing and opening as byte streams, so an object of any size passes through in chunks of
//! bounded memory.

use std::io;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::chunk::{CHUNK_PLAIN, SegmentSealer, TAG_LEN};
use crate::error::CryptoError;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

fn to_io(e: CryptoError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

struct Sealing {
    input: ByteStream,
    sealer: SegmentSealer,
    buf: BytesMut,
    index: u64,
    done: bool,
}

/// `plain` (exactly the sealer's segment length) as its sealed chunks. A stream that ends
/// short or runs long ends in an error, never in a sealed segment of another length.
pub fn seal(plain: ByteStream, sealer: SegmentSealer) -> ByteStream {
    let state = Sealing {
        input: plain,
        sealer,
        buf: BytesMut::new(),
        index: 0,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let layout = s.sealer.layout();
        loop {
            let want = layout.chunk_plain_len(s.index);
            let Some(want) = want else {
                // Every chunk sealed: anything more is a body longer than declared.
                s.done = true;
                return match s.input.next().await {
                    Some(Ok(extra)) if !extra.is_empty() || !s.buf.is_empty() => Some((
                        Err(to_io(CryptoError::Malformed {
                            what: "body",
                            detail: "longer than its declared length".into(),
                        })),
                        s,
                    )),
                    Some(Err(e)) => Some((Err(e), s)),
                    _ if !s.buf.is_empty() => Some((
                        Err(to_io(CryptoError::Malformed {
                            what: "body",
                            detail: "longer than its declared length".into(),
                        })),
                        s,
                    )),
                    _ => None,
                };
            };
            if s.buf.len() as u64 >= want {
                let mut chunk = s.buf.split_to(want as usize).to_vec();
                chunk.reserve(TAG_LEN as usize);
                let index = s.index;
                s.index += 1;
                return match s.sealer.seal(index, &mut chunk) {
                    Ok(()) => Some((Ok(Bytes::from(chunk)), s)),
                    Err(e) => {
                        s.done = true;
                        Some((Err(to_io(e)), s))
                    }
                };
            }
            match s.input.next().await {
                Some(Ok(bytes)) => s.buf.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
                None => {
                    s.done = true;
                    return Some((
                        Err(to_io(CryptoError::Malformed {
                            what: "body",
                            detail: format!(
                                "ended after {} of its declared {} bytes",
                                s.index * CHUNK_PLAIN + s.buf.len() as u64,
                                layout.plain_len()
                            ),
                        })),
                        s,
                    ));
                }
            }
        }
    }))
}

struct Opening {
    input: ByteStream,
    sealer: SegmentSealer,
    buf: BytesMut,
    index: u64,
    skip: u64,
    left: u64,
}

/// The plaintext bytes `start..end` of a segment, from `sealed`: the stored bytes of the span
/// [`crate::ChunkLayout::sealed_span`] gives for that range. A chunk that fails its check ends
/// the stream in an error: a reader gets the true bytes or none.
pub fn open(sealed: ByteStream, sealer: SegmentSealer, start: u64, end: u64) -> ByteStream {
    let layout = sealer.layout();
    let end = end.min(layout.plain_len());
    let (first, _) = layout.sealed_span(start, end);
    let state = Opening {
        input: sealed,
        sealer,
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
            let Some(plain_len) = s.sealer.layout().chunk_plain_len(s.index) else {
                s.left = 0;
                return Some((Err(to_io(CryptoError::Integrity { what: "a segment" })), s));
            };
            let want = plain_len + TAG_LEN;
            if s.buf.len() as u64 >= want {
                let mut chunk = s.buf.split_to(want as usize);
                let index = s.index;
                s.index += 1;
                return match s.sealer.open(index, &mut chunk) {
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
        let sealer = || SegmentSealer::new(&key, b"b/k/v", 0, len as u64);
        let sealed = collect(seal(pieces(plain.clone(), 1000), sealer())).await.unwrap();
        assert_eq!(sealed, sealer().seal_all(&plain).unwrap());
        for (start, end) in [
            (0, len),
            (5, 6),
            (CHUNK_PLAIN as usize - 1, CHUNK_PLAIN as usize + 1),
            (len - 3, len),
        ] {
            let (_, span) = sealer().layout().sealed_span(start as u64, end as u64);
            let part = sealed[span.start as usize..span.end as usize].to_vec();
            let got = collect(open(pieces(part, 777), sealer(), start as u64, end as u64))
                .await
                .unwrap();
            assert_eq!(got, &plain[start..end], "{start}..{end}");
        }
    }

    #[tokio::test]
    async fn a_body_of_the_wrong_length_or_a_bad_chunk_is_an_error() {
        let key = DataKey::generate();
        let sealer = |n: u64| SegmentSealer::new(&key, b"b/k/v", 0, n);
        assert!(
            collect(seal(pieces(vec![1; 100], 10), sealer(101))).await.is_err(),
            "short"
        );
        assert!(
            collect(seal(pieces(vec![1; 100], 10), sealer(99))).await.is_err(),
            "long"
        );
        assert!(collect(seal(pieces(Vec::new(), 10), sealer(0))).await.unwrap().len() == TAG_LEN as usize);
        let n = CHUNK_PLAIN * 2;
        let mut sealed = collect(seal(pieces(vec![9; n as usize], 4096), sealer(n)))
            .await
            .unwrap();
        sealed[CHUNK_SEALED as usize + 3] ^= 1;
        let got = open(pieces(sealed.clone(), 4096), sealer(n), 0, n);
        let items: Vec<io::Result<Bytes>> = got.collect().await;
        assert_eq!(items.len(), 2, "the first chunk, then the error");
        assert!(items[0].is_ok() && items[1].is_err());
        // Cut short: the last chunk is missing.
        let cut = sealed[..CHUNK_SEALED as usize].to_vec();
        assert!(collect(open(pieces(cut, 4096), sealer(n), 0, n)).await.is_err());
    }
}

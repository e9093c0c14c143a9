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

    /// The next chunk sealed in place, and its tag: the two stored one after the other.
    fn seal_next(&mut self, last: bool) -> [Bytes; 2] {
        let take = if last { self.buf.len() } else { CHUNK_PLAIN as usize };
        let mut chunk = self.buf.split_to(take);
        let tag = self
            .sealer
            .seal_detached(self.index, last, &mut chunk)
            .expect("chunks are cut to size here");
        self.index += 1;
        [chunk.freeze(), Bytes::copy_from_slice(&tag)]
    }

    /// Takes `plain` in; returns the stored bytes of the chunks it completed (each chunk's
    /// ciphertext, then its tag).
    pub fn push(&mut self, plain: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(plain);
        let mut out = Vec::new();
        while self.buf.len() as u64 > CHUNK_PLAIN {
            out.extend(self.seal_next(false));
        }
        out
    }

    /// The last chunk, sealed as the last (with its tag).
    pub fn finish(mut self) -> Bytes {
        let [chunk, tag] = self.seal_next(true);
        let mut out = BytesMut::with_capacity(chunk.len() + tag.len());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&tag);
        out.freeze()
    }
}

/// The part of one segment a read wants: its opener, its layout, and the plaintext range
/// `start..end` within it.
pub struct SegmentRead {
    pub sealer: SegmentSealer,
    pub layout: ChunkLayout,
    pub start: u64,
    pub end: u64,
}

struct Opening {
    input: ByteStream,
    current: Option<SegmentRead>,
    rest: std::collections::VecDeque<SegmentRead>,
    /// Stored bytes taken in and not yet opened: the chunk being gathered first.
    buf: BytesMut,
    /// The rest of the last input read once `buf` was topped up to a whole chunk: becomes
    /// `buf` when that chunk is opened (so most input is opened where it was read, uncopied).
    next: Option<BytesMut>,
    index: u64,
    skip: u64,
    left: u64,
}

impl Opening {
    /// Moves to the next segment wanted; `false` when there is none.
    fn next_segment(&mut self) -> bool {
        let Some(seg) = self.rest.pop_front() else {
            self.current = None;
            return false;
        };
        let end = seg.end.min(seg.layout.plain_len());
        let (first, _) = seg.layout.sealed_span(seg.start, end);
        self.index = first;
        self.skip = seg.start - first * CHUNK_PLAIN;
        self.left = end.saturating_sub(seg.start);
        self.current = Some(seg);
        true
    }
}

/// The plaintext bytes `start..end` of a segment, from `sealed`: the stored bytes of the span
/// [`crate::ChunkLayout::sealed_span`] gives for that range. A chunk that fails its check ends
/// the stream in an error: a reader gets the true bytes or none.
pub fn open(sealed: ByteStream, sealer: SegmentSealer, layout: ChunkLayout, start: u64, end: u64) -> ByteStream {
    open_segments(
        sealed,
        vec![SegmentRead {
            sealer,
            layout,
            start,
            end,
        }],
    )
}

/// The plaintext of consecutive segments (the parts of a multipart object), from the stored
/// bytes of their spans laid end to end: each segment's span ends where the next one's begins
/// when the read goes on into it (it ends at its segment's end).
pub fn open_segments(sealed: ByteStream, segments: Vec<SegmentRead>) -> ByteStream {
    let mut state = Opening {
        input: sealed,
        current: None,
        rest: segments.into(),
        buf: BytesMut::new(),
        next: None,
        index: 0,
        skip: 0,
        left: 0,
    };
    state.next_segment();
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            while s.left == 0 {
                if !s.next_segment() {
                    return None;
                }
            }
            let seg = s.current.as_ref().expect("a segment is being read");
            let Some(plain_len) = seg.layout.chunk_plain_len(s.index) else {
                s.rest.clear();
                s.left = 0;
                return Some((Err(to_io(CryptoError::Integrity { what: "a segment" })), s));
            };
            let want = plain_len + TAG_LEN;
            if s.buf.is_empty()
                && let Some(next) = s.next.take()
            {
                s.buf = next;
            }
            if s.buf.len() as u64 >= want {
                let mut chunk = s.buf.split_to(want as usize);
                let index = s.index;
                s.index += 1;
                return match seg.sealer.open(seg.layout, index, &mut chunk).map(|plain| plain.len()) {
                    Ok(plain_len) => {
                        // Opened in place: the plaintext is the chunk's prefix, handed on
                        // without a copy.
                        let from = (s.skip as usize).min(plain_len);
                        let to = plain_len.min(from + usize::try_from(s.left).unwrap_or(usize::MAX));
                        chunk.truncate(to);
                        let out = chunk.freeze().slice(from..);
                        s.skip = 0;
                        s.left -= out.len() as u64;
                        Some((Ok(out), s))
                    }
                    Err(e) => {
                        s.rest.clear();
                        s.left = 0;
                        Some((Err(to_io(e)), s))
                    }
                };
            }
            match s.input.next().await {
                Some(Ok(bytes)) => {
                    // Read buffers come uniquely owned: taken over, not copied.
                    let mut incoming = BytesMut::from(bytes);
                    let need = usize::try_from(want).unwrap_or(usize::MAX) - s.buf.len();
                    if s.buf.is_empty() {
                        s.buf = incoming;
                    } else if incoming.len() <= need {
                        s.buf.extend_from_slice(&incoming);
                    } else {
                        s.buf.extend_from_slice(&incoming[..need]);
                        bytes::Buf::advance(&mut incoming, need);
                        s.next = Some(incoming);
                    }
                }
                Some(Err(e)) => {
                    s.rest.clear();
                    s.left = 0;
                    return Some((Err(e), s));
                }
                None => {
                    s.rest.clear();
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

    /// `plain`, pushed in `piece`-byte pieces through an [`IncrementalSealer`].
    async fn seal(plain: ByteStream, sealer: SegmentSealer) -> ByteStream {
        let mut incremental = IncrementalSealer::new(sealer);
        let mut out = Vec::new();
        let pieces: Vec<Bytes> = plain.map(|p| p.expect("test input")).collect().await;
        for piece in pieces {
            out.extend(incremental.push(&piece).into_iter().map(Ok));
        }
        out.push(Ok(incremental.finish()));
        Box::pin(futures::stream::iter(out))
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
        let sealed = collect(seal(pieces(plain.clone(), 1000), sealer()).await)
            .await
            .unwrap();
        assert_eq!(sealed, sealer().seal_all(&plain));
        for (start, end) in [
            (0, len),
            (5, 6),
            (CHUNK_PLAIN as usize - 1, CHUNK_PLAIN as usize + 1),
            (len - 3, len),
        ] {
            let (_, span) = layout.sealed_span(start as u64, end as u64);
            let part = sealed[span.start as usize..span.end as usize].to_vec();
            // Reads smaller than a chunk, and larger ones that end mid-chunk.
            for piece in [777, 100_003] {
                let got = collect(open(
                    pieces(part.clone(), piece),
                    sealer(),
                    layout,
                    start as u64,
                    end as u64,
                ))
                .await
                .unwrap();
                assert_eq!(got, &plain[start..end], "{start}..{end} in pieces of {piece}");
            }
        }
        // Bodies of exactly one and two full chunks, and an empty one, end in a last chunk.
        for n in [0, CHUNK_PLAIN as usize, 2 * CHUNK_PLAIN as usize] {
            let body = vec![5u8; n];
            let sealed = collect(seal(pieces(body.clone(), 4096), sealer()).await).await.unwrap();
            assert_eq!(sealer().open_all(n as u64, &sealed).unwrap(), body);
        }
    }

    #[tokio::test]
    async fn consecutive_segments_open_as_one_range() {
        let key = DataKey::generate();
        let parts: Vec<Vec<u8>> = vec![
            vec![1; CHUNK_PLAIN as usize + 7],
            vec![2; 100],
            vec![3; 2 * CHUNK_PLAIN as usize],
        ];
        let numbers = [1u32, 3, 4];
        let sealed: Vec<Vec<u8>> = parts
            .iter()
            .zip(numbers)
            .map(|(p, n)| SegmentSealer::new(&key, b"b/k/v", n).seal_all(p))
            .collect();
        let whole: Vec<u8> = parts.concat();
        let (mut plain_at, mut stored_at) = (0u64, 0u64);
        let bounds: Vec<(u64, u64, u64, u64)> = parts
            .iter()
            .zip(&sealed)
            .map(|(p, s)| {
                let b = (
                    plain_at,
                    plain_at + p.len() as u64,
                    stored_at,
                    stored_at + s.len() as u64,
                );
                plain_at += p.len() as u64;
                stored_at += s.len() as u64;
                b
            })
            .collect();
        let stored_all: Vec<u8> = sealed.concat();
        for (start, end) in [
            (0, whole.len() as u64),
            (CHUNK_PLAIN, CHUNK_PLAIN + 150),
            (5, 6),
            (CHUNK_PLAIN + 50, whole.len() as u64 - 1),
        ] {
            let mut segments = Vec::new();
            let (mut from, mut to) = (u64::MAX, 0);
            for (i, &(p0, p1, s0, _)) in bounds.iter().enumerate() {
                if p1 <= start || p0 >= end {
                    continue;
                }
                let layout = ChunkLayout::new(p1 - p0);
                let (a, b) = (start.max(p0) - p0, end.min(p1) - p0);
                let (_, span) = layout.sealed_span(a, b);
                from = from.min(s0 + span.start);
                to = to.max(s0 + span.end);
                segments.push(SegmentRead {
                    sealer: SegmentSealer::new(&key, b"b/k/v", numbers[i]),
                    layout,
                    start: a,
                    end: b,
                });
            }
            let got = collect(open_segments(
                pieces(stored_all[from as usize..to as usize].to_vec(), 999),
                segments,
            ))
            .await
            .unwrap();
            assert_eq!(got, &whole[start as usize..end as usize], "{start}..{end}");
        }
    }

    #[tokio::test]
    async fn a_bad_chunk_or_a_missing_one_is_an_error() {
        let key = DataKey::generate();
        let sealer = || SegmentSealer::new(&key, b"b/k/v", 0);
        assert_eq!(
            collect(seal(pieces(Vec::new(), 10), sealer()).await)
                .await
                .unwrap()
                .len(),
            TAG_LEN as usize
        );
        let n = CHUNK_PLAIN * 2;
        let layout = ChunkLayout::new(n);
        let mut sealed = collect(seal(pieces(vec![9; n as usize], 4096), sealer()).await)
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

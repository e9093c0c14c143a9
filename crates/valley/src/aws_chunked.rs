//! The framing checks s3s leaves out of aws-chunked uploads (`x-amz-content-sha256:
//! STREAMING-…`): the chunks must add up to `x-amz-decoded-content-length`, and the body must
//! end with its zero-length final chunk. Without them a body cut short at a chunk boundary is
//! stored as if complete, and one longer than declared is stored whole.
//!
//! This reads only the framing of the raw body (chunk-size lines; data is counted, not
//! copied); s3s still decodes the body and checks every chunk's signature.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Longest chunk-size line (`hex;chunk-signature=<64 hex>\r\n` is under 100 bytes).
const SIZE_LINE_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum FramingError<E> {
    #[error("IncompleteBody: the aws-chunked body ended before its final zero-length chunk")]
    NoFinalChunk,
    #[error("IncompleteBody: the aws-chunked body carries {got} bytes, x-amz-decoded-content-length says {declared}")]
    Length { got: u64, declared: u64 },
    #[error("IncompleteBody: malformed aws-chunked chunk-size line")]
    Malformed,
    #[error(transparent)]
    Inner(E),
}

/// Whether a request's body is aws-chunked, and its declared decoded length (`None` when it is
/// not aws-chunked; a missing or bad length is left for s3s to refuse).
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    let streaming = headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"));
    if !streaming {
        return None;
    }
    headers
        .get("x-amz-decoded-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

enum State {
    SizeLine(Vec<u8>),
    Data(u64),
    /// The CRLF after a chunk's data (checked by s3s).
    DataEnd(u8),
    /// After the final chunk: trailers, if any.
    Done,
}

pub struct FramingChecked<B> {
    inner: B,
    declared: u64,
    decoded: u64,
    state: State,
    failed: bool,
}

impl<B> FramingChecked<B> {
    pub fn new(inner: B, declared: u64) -> Self {
        Self {
            inner,
            declared,
            decoded: 0,
            state: State::SizeLine(Vec::new()),
            failed: false,
        }
    }

    fn scan<E>(&mut self, mut data: &[u8]) -> Result<(), FramingError<E>> {
        while !data.is_empty() {
            match &mut self.state {
                State::SizeLine(line) => {
                    let (taken, end) = match memchr(b'\n', data) {
                        Some(i) => (&data[..=i], true),
                        None => (data, false),
                    };
                    line.extend_from_slice(taken);
                    data = &data[taken.len()..];
                    if line.len() > SIZE_LINE_MAX {
                        return Err(FramingError::Malformed);
                    }
                    if end {
                        let digits: &[u8] = line
                            .split(|b| *b == b';' || *b == b'\r' || *b == b'\n')
                            .next()
                            .unwrap_or(&[]);
                        let size = std::str::from_utf8(digits)
                            .ok()
                            .and_then(|d| u64::from_str_radix(d.trim(), 16).ok())
                            .ok_or(FramingError::Malformed)?;
                        self.decoded = self.decoded.saturating_add(size);
                        if self.decoded > self.declared {
                            return Err(FramingError::Length {
                                got: self.decoded,
                                declared: self.declared,
                            });
                        }
                        self.state = if size == 0 { State::Done } else { State::Data(size) };
                    }
                }
                State::Data(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[usize::try_from(n).unwrap_or(data.len())..];
                    if *left == 0 {
                        self.state = State::DataEnd(2);
                    }
                }
                State::DataEnd(left) => {
                    let n = usize::from(*left).min(data.len());
                    *left -= u8::try_from(n).unwrap_or(*left);
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::SizeLine(Vec::new());
                    }
                }
                State::Done => return Ok(()),
            }
        }
        Ok(())
    }

    fn at_end<E>(&self) -> Result<(), FramingError<E>> {
        if !matches!(self.state, State::Done) {
            return Err(FramingError::NoFinalChunk);
        }
        if self.decoded != self.declared {
            return Err(FramingError::Length {
                got: self.decoded,
                declared: self.declared,
            });
        }
        Ok(())
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

impl<B> Body for FramingChecked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = FramingError<B::Error>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let outcome: Result<(), Self::Error> = match polled {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Err(e))) => Err(FramingError::Inner(e)),
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref().map(|d| this.scan(d)) {
                Some(Err(e)) => Err(e),
                _ => return Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None) => match this.at_end() {
                Ok(()) => return Poll::Ready(None),
                Err(e) => Err(e),
            },
        };
        this.failed = true;
        Poll::Ready(outcome.err().map(Err))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream() && matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn chunked(sizes: &[usize], final_chunk: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for size in sizes {
            out.extend_from_slice(format!("{size:x};chunk-signature={}\r\n", "0".repeat(64)).as_bytes());
            out.extend(std::iter::repeat_n(b'x', *size));
            out.extend_from_slice(b"\r\n");
        }
        if final_chunk {
            out.extend_from_slice(format!("0;chunk-signature={}\r\n\r\n", "0".repeat(64)).as_bytes());
        }
        out
    }

    /// The body delivered in pieces of `piece` bytes, as a socket might.
    async fn run(raw: Vec<u8>, declared: u64, piece: usize) -> Result<usize, String> {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = raw
            .chunks(piece)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
        FramingChecked::new(body, declared)
            .collect()
            .await
            .map(|c| c.to_bytes().len())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_whole_body_passes_in_any_pieces() {
        for piece in [1, 7, 100, 70_000] {
            let raw = chunked(&[65_536, 65_536, 100], true);
            let len = raw.len();
            assert_eq!(run(raw, 131_172, piece).await, Ok(len), "pieces of {piece}");
        }
        let unsigned_trailer = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n".to_vec();
        assert!(run(unsigned_trailer, 5, 3).await.is_ok());
    }

    #[tokio::test]
    async fn a_body_cut_at_a_chunk_boundary_is_refused() {
        let raw = chunked(&[65_536], false);
        let err = run(raw, 200_000, 4096).await.unwrap_err();
        assert!(err.contains("final zero-length chunk"), "{err}");
    }

    #[tokio::test]
    async fn a_body_longer_or_shorter_than_declared_is_refused() {
        let err = run(chunked(&[65_536, 4_464], true), 100, 1000).await.unwrap_err();
        assert!(err.contains("says 100"), "{err}");
        let err = run(chunked(&[50], true), 100, 1000).await.unwrap_err();
        assert!(err.contains("carries 50 bytes"), "{err}");
        let err = run(b"zz;chunk-signature=0\r\n".to_vec(), 100, 1000).await.unwrap_err();
        assert!(err.contains("malformed"), "{err}");
    }
}

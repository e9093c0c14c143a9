//! Request bodies that cannot hold a connection forever: a body that sends nothing for
//! [`STALL`], or that after [`GRACE`] averages under [`RATE_MIN`] bytes a second, ends in an
//! error. Without it a client that declares 5 GiB and sends 1,000 bytes keeps its connection,
//! its request slot and its temporary file for as long as it likes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Longest wait for the next byte of a body.
pub const STALL: Duration = Duration::from_secs(30);
/// Time before the average-rate floor applies (slow starts, TCP ramp-up).
pub const GRACE: Duration = Duration::from_secs(30);
/// Slowest average rate a body may arrive at after [`GRACE`]: 4 KiB/s (32 kbit/s).
pub const RATE_MIN: u64 = 4 * 1024;

/// Why a body was cut off. Its text starts with S3's error code, `RequestTimeout`, so the S3
/// layer can answer with it.
#[derive(Debug, thiserror::Error)]
pub enum BodyError<E> {
    #[error("RequestTimeout: no byte of the request body arrived for {}s", STALL.as_secs())]
    Stalled,
    #[error(
        "RequestTimeout: the request body arrived at {rate} bytes/s, under the {RATE_MIN} bytes/s this server requires"
    )]
    TooSlow { rate: u64 },
    #[error(transparent)]
    Inner(E),
}

pub struct TimedBody<B> {
    inner: B,
    started: Instant,
    last_progress: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
    /// Set once the body has been read to its end (see [`TimedBody::read_to_end`]).
    ended: Arc<AtomicBool>,
}

impl<B: Body> TimedBody<B> {
    pub fn new(inner: B) -> Self {
        let started = Instant::now();
        let ended = Arc::new(AtomicBool::new(inner.is_end_stream()));
        Self {
            inner,
            started,
            last_progress: started,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(started + STALL)),
            ended,
        }
    }

    /// A flag set once the body has been read to its end. A server that answers before reading
    /// the body (an error, or a refused `Expect: 100-continue`) must close the connection: the
    /// client may or may not send the body, and the next request could be read from its bytes.
    #[must_use]
    pub fn read_to_end(&self) -> Arc<AtomicBool> {
        self.ended.clone()
    }
}

impl<B> TimedBody<B> {
    /// When the body is cut off if nothing more arrives: a stall from now, or the moment the
    /// bytes received so far fall under the average-rate floor, whichever is first.
    fn deadline(&self, now: Instant) -> Instant {
        let by_rate = self.started + GRACE.max(Duration::from_secs(self.received / RATE_MIN));
        (now + STALL).min(by_rate.max(now))
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError<B::Error>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                let now = Instant::now();
                this.last_progress = now;
                let deadline = this.deadline(now);
                this.timer.as_mut().reset(deadline);
                if this.inner.is_end_stream() {
                    // A reader that stops at the declared length has read it all.
                    this.ended.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Inner(e)))),
            Poll::Ready(None) => {
                this.ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    if this.last_progress.elapsed() >= STALL {
                        return Poll::Ready(Some(Err(BodyError::Stalled)));
                    }
                    let rate = this.received / this.started.elapsed().as_secs().max(1);
                    return Poll::Ready(Some(Err(BodyError::TooSlow { rate })));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that sends `chunk` bytes every `every`, `count` times.
    fn trickle(chunk: usize, every: Duration, count: usize) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let stream = futures::stream::unfold(0usize, move |sent| async move {
            if sent == count {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![0u8; chunk]))),
                sent + 1,
            ))
        });
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_sending_is_cut_off() {
        let body = TimedBody::new(trickle(1000, STALL * 2, 1));
        let err = body.collect().await.expect_err("cut off");
        assert!(matches!(err, BodyError::Stalled), "{err}");
        assert!(err.to_string().starts_with("RequestTimeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_under_the_rate_floor_is_cut_off_after_the_grace() {
        // 100 bytes a second: never a stall, always too slow.
        let body = TimedBody::new(trickle(100, Duration::from_secs(1), 1000));
        let started = Instant::now();
        let err = body.collect().await.expect_err("cut off");
        assert!(matches!(err, BodyError::TooSlow { .. }), "{err}");
        assert!(started.elapsed() >= GRACE && started.elapsed() < GRACE * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_arrives_whole() {
        // 64 KiB a second for a minute: above the floor throughout.
        let body = TimedBody::new(trickle(64 * 1024, Duration::from_secs(1), 60));
        let got = body.collect().await.expect("whole").to_bytes();
        assert_eq!(got.len(), 60 * 64 * 1024);
    }
}

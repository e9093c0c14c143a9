//! One proxied connection: two directions, each a reader feeding a delay line and a writer
//! draining it, plus the three ways the connection can be cut (planned bytes, planned time,
//! command).
//!
//! All four halves run as futures in the connection's own task, borrowing the two sockets,
//! so that when a cut wins the race the sockets are still ours to reset.

use std::future::pending;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::bucket::burst_bytes;
use crate::dice::{self, Direction, StreamDice};
use crate::limits::{CHUNK_BYTES_MAX, CONNECT_TIMEOUT, DELAY_LINE_BYTES_MAX, DELAY_LINE_CHUNKS_MAX};
use crate::proxy::{Shared, reset};
use crate::shaper::{Piece, Shaper};
use crate::stats::bump;

/// Why a direction stopped early.
enum PumpEnd {
    /// The connection's byte budget ran out: a planned cut.
    Cut,
    Io(io::Error),
}

enum Outcome {
    Finished,
    Cut(&'static str),
    Failed(io::Error),
}

/// Bytes that may still be delivered, both directions together, before a planned cut.
struct ByteBudget {
    limit: Option<u64>,
    used: AtomicU64,
}

impl ByteBudget {
    /// Claims up to `want` bytes and returns how many may go; fewer means cut after them.
    fn claim(&self, want: usize) -> usize {
        let Some(limit) = self.limit else { return want };
        let mut granted = 0;
        let _ = self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            granted = (limit.saturating_sub(used)).min(want as u64);
            Some(used + granted)
        });
        granted as usize
    }
}

/// Keeps `connections_open` right however the task ends, aborts included.
struct OpenGuard<'a>(&'a AtomicU64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut client: TcpStream,
    id: u64,
    mut cut: watch::Receiver<u64>,
    _slot: OwnedSemaphorePermit,
) {
    let accepted_at = Instant::now();
    let counters = &shared.counters;
    bump(&counters.connections_total, 1);
    bump(&counters.connections_open, 1);
    let _open = OpenGuard(&counters.connections_open);

    let mut target = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.target)).await {
        Ok(Ok(target)) => target,
        Ok(Err(e)) => {
            tracing::warn!(connection = id, target = %shared.target, error = %e, "cannot reach target");
            bump(&counters.connect_failures, 1);
            return reset(client);
        }
        Err(_) => {
            tracing::warn!(connection = id, target = %shared.target, "timed out reaching target");
            bump(&counters.connect_failures, 1);
            return reset(client);
        }
    };
    // Nagle would add its own delay on top of the emulated one; the proxy must add only that.
    for stream in [&client, &target] {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(connection = id, error = %e, "cannot set nodelay");
        }
    }

    let plan = dice::cut_plan(shared.seed, id, &shared.faults());
    tracing::debug!(connection = id, ?plan, "proxying");
    let budget = ByteBudget {
        limit: plan.and_then(|p| p.after_bytes),
        used: AtomicU64::new(0),
    };
    let deadline = plan.and_then(|p| p.after).map(|after| accepted_at + after);

    let outcome = {
        let (client_read, client_write) = client.split();
        let (target_read, target_write) = target.split();
        let up = pump(client_read, target_write, Direction::Upstream, &shared, id, &budget);
        let down = pump(target_read, client_write, Direction::Downstream, &shared, id, &budget);
        let timed = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => pending().await,
            }
        };
        let commanded = async {
            if cut.changed().await.is_err() {
                pending::<()>().await;
            }
        };
        tokio::select! {
            result = async { tokio::try_join!(up, down) } => match result {
                Ok(_) => Outcome::Finished,
                Err(PumpEnd::Cut) => Outcome::Cut("byte budget"),
                Err(PumpEnd::Io(e)) => Outcome::Failed(e),
            },
            () = timed => Outcome::Cut("timer"),
            () = commanded => Outcome::Cut("command"),
        }
    };

    match outcome {
        Outcome::Finished => tracing::debug!(connection = id, "closed"),
        Outcome::Cut(why) => {
            bump(&counters.cuts, 1);
            tracing::info!(connection = id, why, "cut");
            reset(client);
            reset(target);
        }
        Outcome::Failed(e) => {
            // One side failed; pass it on as the reset a real path would deliver.
            tracing::debug!(connection = id, error = %e, "failed");
            reset(client);
            reset(target);
        }
    }
}

/// Moves one direction's bytes from `from` to `to` through its delay line and bandwidth cap,
/// then passes on the end of stream as a half-close.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    shared: &Shared,
    id: u64,
    budget: &ByteBudget,
) -> Result<(), PumpEnd>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Piece, OwnedSemaphorePermit)>(DELAY_LINE_CHUNKS_MAX);
    let window = Arc::new(Semaphore::new(DELAY_LINE_BYTES_MAX));
    let counters = &shared.counters;

    let reader = async move {
        let mut shaper = Shaper::new(StreamDice::new(shared.seed, id, direction));
        let mut pieces = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK_BYTES_MAX];
            let n = from.read(&mut chunk).await.map_err(PumpEnd::Io)?;
            if n == 0 {
                // Dropping `tx` here lets the writer drain the line and pass the EOF on.
                return Ok(());
            }
            chunk.truncate(n);
            let shaped = shaper.shape(chunk, Instant::now(), &shared.faults(), &mut pieces);
            bump(&counters.stalls, shaped.stalls);
            bump(&counters.corruptions, shaped.corruptions);
            for piece in pieces.drain(..) {
                // Pieces are at most CHUNK_BYTES_MAX, far under u32::MAX and the window.
                let permit = window
                    .clone()
                    .acquire_many_owned(piece.data.len() as u32)
                    .await
                    .expect("the window semaphore is never closed");
                if tx.send((piece, permit)).await.is_err() {
                    // The writer stopped, and says why.
                    return Ok(());
                }
            }
        }
    };

    let writer = async {
        while let Some((piece, _permit)) = rx.recv().await {
            tokio::time::sleep_until(piece.release_at.into()).await;
            let mut rest = &piece.data[..];
            while !rest.is_empty() {
                let rate = shared.faults().bandwidth_bytes_per_sec;
                let step = if rate == 0 {
                    rest.len()
                } else {
                    rest.len().min(burst_bytes(rate))
                };
                let wait = shared.take_bandwidth(direction, step, rate);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let allowed = budget.claim(step);
                to.write_all(&rest[..allowed]).await.map_err(PumpEnd::Io)?;
                bump(counters.bytes(direction), allowed as u64);
                if allowed < step {
                    return Err(PumpEnd::Cut);
                }
                rest = &rest[step..];
            }
        }
        to.shutdown().await.map_err(PumpEnd::Io)
    };

    tokio::try_join!(reader, writer).map(|_| ())
}

//! The running proxy: its configuration, the state its connections share, the accept loop,
//! and [`FaultProxy`], the handle through which a test or the binary controls it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{ProxyError, ProxyResult};
use crate::faults::{FaultUpdate, Faults};
use crate::limits::CONNECTIONS_MAX;
use crate::stats::{Counters, Stats, bump};
use crate::{connection, control};

/// Pause after a failed accept (say, out of file descriptors) so the loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What to proxy, where, and how badly.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect; port 0 picks a free one (see [`FaultProxy::local_addr`]).
    pub listen: SocketAddr,
    /// Where each connection is forwarded.
    pub target: SocketAddr,
    /// Where the JSON-lines control protocol listens, if anywhere.
    pub control: Option<SocketAddr>,
    /// Drives every fault decision; the same seed replays the same decisions.
    pub seed: u64,
    /// Faults at start; change them later with [`FaultProxy::set`] or the control protocol.
    pub faults: Faults,
}

impl Config {
    /// A fault-free proxy from `listen` to `target`, seed 0, no control listener.
    pub fn new(listen: SocketAddr, target: SocketAddr) -> Self {
        Self {
            listen,
            target,
            control: None,
            seed: 0,
            faults: Faults::default(),
        }
    }

    /// Refuses non-loopback addresses and invalid faults.
    pub fn validate(&self) -> ProxyResult<()> {
        check_loopback("listen", self.listen)?;
        check_loopback("target", self.target)?;
        if let Some(control) = self.control {
            check_loopback("control", control)?;
        }
        self.faults.validate()
    }
}

fn check_loopback(what: &'static str, addr: SocketAddr) -> ProxyResult<()> {
    if addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(ProxyError::NotLoopback { what, addr })
    }
}

/// State every connection and the control server share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub seed: u64,
    pub target: SocketAddr,
    pub faults: watch::Sender<Faults>,
    pub partitioned: AtomicBool,
    /// Bumped to cut every open connection; each one watches it.
    pub cut_epoch: watch::Sender<u64>,
    pub counters: Counters,
    /// Number of the next connection, in accept order: part of its decisions' seed.
    pub next_connection: AtomicU64,
    /// The bandwidth cap of each direction, shared by every connection: the cap is the
    /// link's capacity, so parallel connections divide it rather than multiply it.
    pub upstream_cap: std::sync::Mutex<crate::bucket::TokenBucket>,
    pub downstream_cap: std::sync::Mutex<crate::bucket::TokenBucket>,
}

impl Shared {
    /// Takes `bytes` from the cap of `direction` and says how long to wait before sending.
    pub fn take_bandwidth(&self, direction: crate::dice::Direction, bytes: usize, rate: u64) -> std::time::Duration {
        let cap = match direction {
            crate::dice::Direction::Upstream => &self.upstream_cap,
            crate::dice::Direction::Downstream => &self.downstream_cap,
        };
        match cap.lock() {
            Ok(mut bucket) => bucket.take(bytes, rate, std::time::Instant::now()),
            Err(_) => std::time::Duration::ZERO,
        }
    }

    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    pub fn set(&self, faults: Faults) -> ProxyResult<()> {
        faults.validate()?;
        tracing::info!(?faults, "faults set");
        self.faults.send_replace(faults);
        Ok(())
    }

    pub fn update(&self, update: &FaultUpdate) -> ProxyResult<Faults> {
        let next = update.apply_to(&self.faults());
        self.set(next)?;
        Ok(next)
    }

    pub fn partition(&self) {
        // The flag goes first: a connection accepted after the bump is refused by it, and
        // one accepted before is watching the epoch already (see the accept loop).
        self.partitioned.store(true, Ordering::SeqCst);
        tracing::info!("partitioned");
        self.cut_all();
    }

    pub fn heal(&self) {
        self.partitioned.store(false, Ordering::SeqCst);
        tracing::info!("healed");
    }

    pub fn is_partitioned(&self) -> bool {
        self.partitioned.load(Ordering::SeqCst)
    }

    pub fn cut_all(&self) {
        self.cut_epoch.send_modify(|epoch| *epoch += 1);
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }
}

/// A running proxy. Dropping it stops the proxy and closes every connection it holds.
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    control_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl FaultProxy {
    /// Validates `config`, binds its listeners and starts proxying. Must be called within a
    /// Tokio runtime, which runs the proxy's tasks.
    pub async fn start(config: Config) -> ProxyResult<Self> {
        config.validate()?;
        let listener = bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let control_listener = match config.control {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let control_addr = control_listener.as_ref().map(TcpListener::local_addr).transpose()?;

        let shared = Arc::new(Shared {
            seed: config.seed,
            target: config.target,
            faults: watch::Sender::new(config.faults),
            partitioned: AtomicBool::new(false),
            cut_epoch: watch::Sender::new(0),
            counters: Counters::default(),
            next_connection: AtomicU64::new(0),
            upstream_cap: std::sync::Mutex::new(crate::bucket::TokenBucket::new(std::time::Instant::now())),
            downstream_cap: std::sync::Mutex::new(crate::bucket::TokenBucket::new(std::time::Instant::now())),
        });
        let mut tasks = vec![tokio::spawn(accept_loop(listener, shared.clone()))];
        if let Some(listener) = control_listener {
            tasks.push(tokio::spawn(control::serve(listener, shared.clone())));
        }
        tracing::info!(%local_addr, target = %config.target, ?control_addr, seed = config.seed, "fault proxy started");
        Ok(Self {
            shared,
            local_addr,
            control_addr,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The control protocol's address, if it listens.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults. Open connections pick them up from their next chunk on; a
    /// connection's cut plan is drawn once, at accept, under the faults of that moment.
    pub fn set(&self, faults: Faults) -> ProxyResult<()> {
        self.shared.set(faults)
    }

    /// Applies a partial change to the faults and returns the result.
    pub fn update(&self, update: &FaultUpdate) -> ProxyResult<Faults> {
        self.shared.update(update)
    }

    /// Cuts every open connection and resets new ones until [`heal`](Self::heal).
    pub fn partition(&self) {
        self.shared.partition()
    }

    /// Ends a partition: new connections are proxied again.
    pub fn heal(&self) {
        self.shared.heal()
    }

    pub fn is_partitioned(&self) -> bool {
        self.shared.is_partitioned()
    }

    /// Cuts (resets both sides of) every open connection; new ones are unaffected.
    pub fn cut_all(&self) {
        self.shared.cut_all()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind(addr: SocketAddr) -> ProxyResult<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

/// Closes `stream` with a reset rather than an orderly FIN, as a cut link looks to TCP.
pub(crate) fn reset(stream: TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "cannot set zero linger; closing normally");
    }
}

/// Accepts connections and runs each as a task in a set, so that aborting this loop (when
/// the [`FaultProxy`] is dropped) aborts them all.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                        continue;
                    }
                };
                // Watch for cuts before checking the partition flag; see `Shared::partition`.
                let cut = shared.cut_epoch.subscribe();
                if shared.is_partitioned() {
                    tracing::debug!(%peer, "partitioned: resetting new connection");
                    bump(&shared.counters.connections_refused, 1);
                    reset(stream);
                    continue;
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, limit = CONNECTIONS_MAX, "connection limit reached: resetting");
                    bump(&shared.counters.connections_refused, 1);
                    reset(stream);
                    continue;
                };
                let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
                connections.spawn(connection::serve(shared.clone(), stream, id, cut, slot));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

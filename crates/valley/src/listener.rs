//! Accepting connections without letting a stranger hold them: a cap on open connections per
//! listener and per client address, a short timeout from accept until the first request and
//! an idle timeout between requests (both counted from the last byte either way), backoff when
//! accepting fails (at the open-file limit accept fails at once, again and again), optional
//! TLS, and HTTP/1 only (HTTP/2 would need its own set of limits; S3 clients speak HTTP/1.1).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::metrics::{ConnectionLabel, Metrics};

/// Longest wait for a client's request headers once they have started (slowloris defence).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most headers in one request.
const REQUEST_HEADERS_MAX: usize = 128;
/// Longest wait for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest and shortest pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Shortest time between two log lines about failing accepts.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open on the listener at once.
    pub connections_max: usize,
    /// Most connections open from one client address at once.
    pub per_client_max: usize,
    /// Longest silence from accept until the first request starts.
    pub first_request_timeout: Duration,
    /// Longest silence between requests on a kept-alive connection.
    pub idle_timeout: Duration,
}

/// What the service of a connection is told about it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The hub a verified client certificate names, if the client presented one.
    pub peer_hub: Option<String>,
    /// The client's address.
    pub ip: Option<std::net::IpAddr>,
    /// Whether the connection is TLS.
    pub secure: bool,
}

/// One listening socket with its limits.
pub struct Listener {
    name: &'static str,
    tcp: TcpListener,
    tls: Option<valley_tls::ServerTls>,
    limits: Limits,
    open: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    metrics: Arc<Metrics>,
}

/// An accepted connection, holding its places under both caps until it is dropped.
pub struct Admitted {
    socket: TcpStream,
    _slot: OwnedSemaphorePermit,
    _client: ClientSlot,
}

struct ClientSlot {
    ip: IpAddr,
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = table.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

impl Listener {
    pub fn new(
        name: &'static str,
        tcp: TcpListener,
        tls: Option<valley_tls::ServerTls>,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            name,
            tcp,
            tls,
            limits,
            open: Arc::new(Semaphore::new(limits.connections_max)),
            per_client: Arc::new(Mutex::new(HashMap::new())),
            metrics,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    fn label(&self, reason: &'static str) -> ConnectionLabel {
        ConnectionLabel {
            listener: self.name.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// The next connection within the caps. Connections over a cap are closed at once and
    /// counted; failing accepts back off, and are logged at most once per interval.
    pub async fn accept(&self) -> Admitted {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let mut last_log: Option<Instant> = None;
        let mut failed_since_log = 0u64;
        loop {
            let (socket, remote) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    failed_since_log += 1;
                    self.metrics
                        .connections_refused
                        .get_or_create(&self.label("accept-error"))
                        .inc();
                    if last_log.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_INTERVAL) {
                        warn!(listener = self.name, error = %e, failed = failed_since_log, "accepting connections fails; backing off");
                        last_log = Some(Instant::now());
                        failed_since_log = 0;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            backoff = ACCEPT_BACKOFF_MIN;
            let Ok(slot) = self.open.clone().try_acquire_owned() else {
                self.metrics
                    .connections_refused
                    .get_or_create(&self.label("listener-full"))
                    .inc();
                continue;
            };
            let ip = remote.ip();
            {
                let mut table = self
                    .per_client
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let n = table.entry(ip).or_insert(0);
                if *n >= self.limits.per_client_max {
                    drop(table);
                    self.metrics
                        .connections_refused
                        .get_or_create(&self.label("client-full"))
                        .inc();
                    continue;
                }
                *n += 1;
            }
            return Admitted {
                socket,
                _slot: slot,
                _client: ClientSlot {
                    ip,
                    table: self.per_client.clone(),
                },
            };
        }
    }

    /// Serves one admitted connection on a task of its own: TLS handshake, then HTTP/1 with
    /// `make(info)` as its service, closed when silent for longer than the limits allow.
    pub fn serve<S, F>(&self, admitted: Admitted, watcher: hyper_util::server::graceful::Watcher, make: F)
    where
        F: FnOnce(ConnectionInfo) -> S + Send + 'static,
        S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<s3s::Body>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limits = self.limits;
        let acceptor = self.tls.as_ref().map(valley_tls::ServerTls::acceptor);
        let gauge = self.metrics.connections_open.get_or_create(&self.label("open")).clone();
        let handshake_failed = self
            .metrics
            .connections_refused
            .get_or_create(&self.label("tls-handshake"))
            .clone();
        tokio::spawn(async move {
            gauge.inc();
            let Admitted {
                socket,
                _slot,
                _client: client_slot,
            } = admitted;
            let _ = socket.set_nodelay(true);
            let ip = socket.peer_addr().ok().map(|a| a.ip());
            let activity = Arc::new(Activity::new());
            let watched = Watched {
                inner: socket,
                activity: activity.clone(),
            };
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_headers(REQUEST_HEADERS_MAX);
            match acceptor {
                None => {
                    let _client_slot = client_slot;
                    let service = Tracked {
                        inner: make(ConnectionInfo {
                            peer_hub: None,
                            ip,
                            secure: false,
                        }),
                        activity: activity.clone(),
                    };
                    let conn = watcher.watch(http.serve_connection(TokioIo::new(watched), service));
                    run_until_idle(conn, &activity, limits).await;
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(watched)).await;
                    let Ok(Ok(tls)) = handshake else {
                        handshake_failed.inc();
                        gauge.dec();
                        return;
                    };
                    let peer_hub = valley_tls::peer_hub(tls.get_ref().1);
                    if peer_hub.is_some() {
                        // A hub proved by its certificate counts against the listener's cap
                        // only: the per-address cap is for strangers (hubs may share one).
                        drop(client_slot);
                    }
                    let service = Tracked {
                        inner: make(ConnectionInfo {
                            peer_hub,
                            ip,
                            secure: true,
                        }),
                        activity: activity.clone(),
                    };
                    let conn = watcher.watch(http.serve_connection(TokioIo::new(tls), service));
                    run_until_idle(conn, &activity, limits).await;
                }
            }
            gauge.dec();
        });
    }
}

/// Runs a connection until it ends, or until it has been silent (no byte either way, no
/// request being served) for longer than the limits allow; then it is dropped, which closes it.
async fn run_until_idle<C: Future>(conn: C, activity: &Activity, limits: Limits) {
    let mut conn = std::pin::pin!(conn);
    loop {
        let allowed = if activity.requests.load(Ordering::Relaxed) == 0 {
            limits.first_request_timeout
        } else {
            limits.idle_timeout
        };
        let silent = activity.silent_for();
        let wait = if activity.in_flight.load(Ordering::Relaxed) > 0 {
            // A request being served is bounded by its body's timeouts, not by silence here.
            limits.idle_timeout
        } else if silent >= allowed {
            return;
        } else {
            allowed - silent
        };
        tokio::select! {
            _ = &mut conn => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// What the idle watch of one connection reads.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last byte read or written.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A socket that records when bytes last moved.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection's service that counts the requests it is serving.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

struct Serving(Arc<Activity>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl<S> hyper::service::Service<http::Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<http::Request<Incoming>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        self.activity.requests.fetch_add(1, Ordering::Relaxed);
        let serving = Serving(self.activity.clone());
        let future = self.inner.call(req);
        Box::pin(async move {
            let result = future.await;
            drop(serving);
            result
        })
    }
}

/// Raises this process's open-file limit to its hard limit (each connection is a file), and
/// answers the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

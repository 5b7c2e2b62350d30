//! The accept loop: hyper's HTTP/1 connection builder with the limits `axum::serve` lacks.
//!
//! - `http.header_read_timeout`: a client has this long to send a request's headers, and to
//!   start the next one on a kept-alive connection (slowloris connections are cut here);
//! - `http.idle_timeout`: a connection whose response does not move for this long (a client
//!   that stopped reading) is closed;
//! - `http.max_connections`: at the cap, a new connection closes the longest-idle one (no
//!   request in flight), or is answered 503 and closed when every connection is busy; so idle
//!   or half-open connections can never lock a normal client out.
//!
//! Every limit hit is counted in `diskwatch_http_limit_hits_total{limit}` and logged once per
//! burst. The peer address reaches handlers as [`ConnectInfo`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::config::HttpConfig;
use super::limits::Burst;
use crate::agent::Agent;
use crate::metrics::LimitLabel;

/// Largest request head hyper buffers; every route is a GET with a short URL.
const MAX_HEAD: usize = 64 * 1024;
/// Pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long the 503 of a refused connection may take to write.
const REFUSE_WRITE: Duration = Duration::from_secs(1);
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\n\
Connection: close\r\nContent-Length: 82\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"http.max_connections reached\"}}";

/// The connection limits, from `[http]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl From<&HttpConfig> for Limits {
    fn from(c: &HttpConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            header_read_timeout: c.header_read_timeout,
            idle_timeout: c.idle_timeout,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets requests in flight finish and waits
/// for every connection to close (SSE streams end on their own cancellation).
pub async fn serve(listener: TcpListener, app: Router, agent: Arc<Agent>, limits: Limits, shutdown: CancellationToken) {
    raise_fd_limit();
    let server = Arc::new(Server {
        app,
        limits,
        agent,
        epoch: Instant::now(),
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        bursts: Bursts::default(),
    });
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => server.clone().admit(stream, peer, &tracker, &shutdown),
                Err(e) => {
                    server.hit("accept_errors", &server.bursts.accept, || e.to_string());
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

struct Server {
    app: Router,
    limits: Limits,
    agent: Arc<Agent>,
    /// Time origin of the millisecond stamps in [`ConnState`].
    epoch: Instant,
    conns: Mutex<HashMap<u64, Conn>>,
    next_id: AtomicU64,
    bursts: Bursts,
}

struct Bursts {
    accept: Burst,
    refused: Burst,
    evicted: Burst,
    header: Burst,
    idle: Burst,
}

impl Default for Bursts {
    fn default() -> Self {
        Self {
            accept: Burst::new("HTTP accept failed"),
            refused: Burst::new("HTTP connection refused: http.max_connections reached and none is idle"),
            evicted: Burst::new("idle HTTP connection closed to make room: http.max_connections reached"),
            header: Burst::new("HTTP connection closed: request headers not received within http.header_read_timeout"),
            idle: Burst::new("HTTP connection closed: response stalled longer than http.idle_timeout"),
        }
    }
}

struct Conn {
    state: Arc<ConnState>,
    close: CancellationToken,
}

/// What the connection's watchdog and the eviction look at.
#[derive(Default)]
struct ConnState {
    /// Requests whose response has not been fully sent (an SSE stream counts until it ends).
    in_flight: AtomicUsize,
    /// Milliseconds since the epoch when the connection was accepted or last finished a response.
    last_done_ms: AtomicU64,
    /// Milliseconds since the epoch (plus one) since a write has been waiting; 0 when none is.
    write_blocked_ms: AtomicU64,
}

impl Server {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn hit(&self, limit: &'static str, burst: &Burst, detail: impl FnOnce() -> String) {
        self.agent.metrics.http_limits.get_or_create(&LimitLabel { limit: limit.into() }).inc();
        burst.hit(detail);
    }

    fn admit(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
    ) {
        // Small SSE frames must leave at once: Nagle plus delayed ACKs would hold them for up to 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let state = Arc::new(ConnState::default());
        state.last_done_ms.store(self.now_ms(), Ordering::Relaxed);
        let close = CancellationToken::new();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            if conns.len() >= self.limits.max_connections {
                let idlest = conns
                    .iter()
                    .filter(|(_, c)| c.state.in_flight.load(Ordering::Relaxed) == 0)
                    .min_by_key(|(_, c)| c.state.last_done_ms.load(Ordering::Relaxed))
                    .map(|(id, _)| *id);
                match idlest.and_then(|id| conns.remove(&id)) {
                    Some(evicted) => {
                        evicted.close.cancel();
                        self.hit("evicted", &self.bursts.evicted, || format!("for {peer}"));
                    }
                    None => {
                        drop(conns);
                        self.hit("connections", &self.bursts.refused, || format!("peer {peer}"));
                        tracker.spawn(refuse(stream));
                        return;
                    }
                }
            }
            conns.insert(id, Conn { state: state.clone(), close: close.clone() });
            self.agent.metrics.http_connections.set(conns.len() as i64);
        }
        tracker.spawn(self.connection(id, stream, peer, state, close, shutdown.clone()));
    }

    async fn connection(
        self: Arc<Self>,
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        state: Arc<ConnState>,
        close: CancellationToken,
        shutdown: CancellationToken,
    ) {
        let io = TokioIo::new(WatchedStream { inner: stream, state: state.clone(), server: self.clone() });
        let service = {
            let server = self.clone();
            let state = state.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let active = Active::new(server.clone(), state.clone());
                let mut app = server.app.clone();
                async move {
                    let response = tower_service::Service::call(&mut app, request).await?;
                    // The guard lives in the body: the request counts as in flight until its
                    // last byte is sent or the body (an SSE stream) is dropped.
                    Ok::<_, Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _keep = &active;
                            frame
                        }))
                    }))
                }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(MAX_HEAD)
            .keep_alive(true);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            let deadline = self.watch_deadline(&state);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        if e.is_timeout() {
                            self.hit("header_read_timeout", &self.bursts.header, || format!("peer {peer}"));
                        } else {
                            debug!(%peer, error = %e, "HTTP connection ended with an error");
                        }
                    }
                    break;
                }
                _ = close.cancelled() => break,
                _ = shutdown.cancelled(), if !draining => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.stalled(&state) {
                        self.hit("idle_timeout", &self.bursts.idle, || format!("peer {peer}"));
                        break;
                    }
                }
            }
        }
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.remove(&id);
        self.agent.metrics.http_connections.set(conns.len() as i64);
    }

    /// When to look at the connection again.
    fn watch_deadline(&self, state: &ConnState) -> Instant {
        let idle = self.limits.idle_timeout;
        let at_ms = |ms: u64| self.epoch + Duration::from_millis(ms) + idle;
        let blocked = state.write_blocked_ms.load(Ordering::Relaxed);
        if state.in_flight.load(Ordering::Relaxed) == 0 {
            at_ms(state.last_done_ms.load(Ordering::Relaxed))
        } else if blocked != 0 {
            at_ms(blocked - 1)
        } else {
            Instant::now() + (idle / 4).max(Duration::from_millis(250))
        }
    }

    /// Idle with no request for `idle_timeout`, or a response blocked that long.
    fn stalled(&self, state: &ConnState) -> bool {
        let now = self.now_ms();
        let idle = self.limits.idle_timeout.as_millis() as u64;
        let blocked = state.write_blocked_ms.load(Ordering::Relaxed);
        if state.in_flight.load(Ordering::Relaxed) == 0 {
            now.saturating_sub(state.last_done_ms.load(Ordering::Relaxed)) >= idle
        } else {
            blocked != 0 && now.saturating_sub(blocked - 1) >= idle
        }
    }
}

/// Answers a connection beyond the cap with a 503 (best effort, bounded) and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSE_WRITE, stream.write_all(REFUSAL)).await;
}

/// A request in flight on a connection.
struct Active {
    server: Arc<Server>,
    state: Arc<ConnState>,
}

impl Active {
    fn new(server: Arc<Server>, state: Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { server, state }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.state.last_done_ms.store(self.server.now_ms(), Ordering::Relaxed);
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting since when a write has been waiting for the client to read.
struct WatchedStream {
    inner: TcpStream,
    state: Arc<ConnState>,
    server: Arc<Server>,
}

impl WatchedStream {
    fn note<T>(&self, poll: Poll<T>) -> Poll<T> {
        match poll {
            Poll::Pending => {
                if self.state.write_blocked_ms.load(Ordering::Relaxed) == 0 {
                    self.state.write_blocked_ms.store(self.server.now_ms() + 1, Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => self.state.write_blocked_ms.store(0, Ordering::Relaxed),
        }
        poll
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raises the soft limit of open files to the hard one: each connection is a descriptor, and
/// the default soft limit (1024) is below what `max_connections` plus the agent's own files need.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => debug!(error = %e, "cannot raise the open-files limit"),
        },
        Ok(_) => {}
        Err(e) => debug!(error = %e, "cannot read the open-files limit"),
    }
}

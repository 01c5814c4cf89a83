//! The HTTP server's own accept loop: HTTP/1.1 connections served by hyper with a
//! header-read timeout, an idle keep-alive timeout and a cap on open connections, and a
//! graceful shutdown that waits for the connections to finish.
//!
//! A connection is *busy* from the moment a request head is parsed until its response
//! body is finished (a log tail stays busy while it streams). A connection that is not busy
//! must complete a request head within the header timeout of its first byte (or of its
//! accept), and is closed once it has had nothing to do for the idle timeout. At the cap,
//! a new connection closes the connection that has been idle the longest (a slow client
//! still sending its head counts as idle), so slow or silent clients cannot keep others
//! out; if every connection is busy the new one is closed at once. A request body must
//! arrive whole within the body timeout of its head, so a trickled body cannot keep a
//! connection busy for ever either.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The limits on client connections (server flags).
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, closes the
/// connections with nothing in flight, lets the busy ones finish their responses and waits
/// for them.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let server = Arc::new(Server {
        limits,
        epoch: Instant::now(),
        open: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        stopping: CancellationToken::new(),
    });
    let tracker = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // Said once per burst, not once per refused connection.
    let mut warned_full = false;
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or a connection reset before it was
                    // accepted: wait a little so that a full table does not spin the loop.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(conn) = server.admit() else {
            if !warned_full {
                tracing::warn!(
                    max_connections = server.limits.max_connections,
                    "every connection is busy; closing new connections until one is free"
                );
                warned_full = true;
            }
            drop(stream);
            continue;
        };
        warned_full = false;
        let _ = stream.set_nodelay(true);
        tracker.spawn(server.clone().run(conn, stream, remote, app.clone()));
    }
    drop(listener);
    server.stopping.cancel();
    tracker.close();
    tracker.wait().await;
}

struct Server {
    limits: Limits,
    /// Times are kept as milliseconds since this instant, in atomics.
    epoch: Instant,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    stopping: CancellationToken,
}

/// What the server knows of one connection.
struct Conn {
    id: u64,
    /// Requests whose response body is not finished.
    busy: AtomicU32,
    /// When the connection last stopped being busy (or was accepted), ms since the epoch.
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived on a connection that is not busy, ms
    /// since the epoch plus one; 0 when none is arriving.
    head_since: AtomicU64,
    /// Woken when a head starts arriving or the connection stops being busy.
    changed: Notify,
    /// Cancelled to close the connection (idle the longest, at the cap).
    evict: CancellationToken,
}

impl Server {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Registers a new connection, closing the one idle the longest when at the cap;
    /// `None` when every open connection is busy.
    fn admit(&self) -> Option<Arc<Conn>> {
        let now = self.now_ms();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.limits.max_connections {
            let victim = open
                .values()
                .filter(|c| c.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|c| c.idle_since.load(Ordering::Acquire))
                .map(|c| c.id)?;
            if let Some(c) = open.remove(&victim) {
                c.evict.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            busy: AtomicU32::new(0),
            idle_since: AtomicU64::new(now),
            // A new connection must send its first head within the header timeout.
            head_since: AtomicU64::new(now + 1),
            changed: Notify::new(),
            evict: CancellationToken::new(),
        });
        open.insert(id, conn.clone());
        Some(conn)
    }

    fn forget(&self, conn: &Conn) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conn.id);
    }

    /// When `conn` is to be closed if nothing changes; `None` while it is busy.
    fn deadline(&self, conn: &Conn) -> Option<Instant> {
        if conn.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        match conn.head_since.load(Ordering::Acquire) {
            0 => Some(self.at(conn.idle_since.load(Ordering::Acquire)) + self.limits.idle_timeout),
            since => Some(self.at(since - 1) + self.limits.header_timeout),
        }
    }

    /// Serves one connection until it ends, times out, is evicted or the server stops.
    async fn run(self: Arc<Self>, conn: Arc<Conn>, stream: TcpStream, remote: SocketAddr, app: Router) {
        let io = TokioIo::new(Watched {
            inner: stream,
            conn: conn.clone(),
            server: self.clone(),
        });
        let service = {
            let conn = conn.clone();
            let server = self.clone();
            let body_timeout = self.limits.body_timeout;
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut req = req.map(|b| Body::new(Deadline::new(b, body_timeout)));
                req.extensions_mut().insert(ConnectInfo(remote));
                let busy = Busy::start(conn.clone(), server.clone());
                let app = app.clone();
                async move {
                    let response = match app.oneshot(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    // The connection stays busy until the body is finished (or dropped).
                    Ok::<_, Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _ = &busy;
                            frame
                        }))
                    }))
                }
            })
        };
        let http = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        let mut http = std::pin::pin!(http);
        let mut stopping = false;
        loop {
            let deadline = self.deadline(&conn);
            let changed = conn.changed.notified();
            tokio::select! {
                result = http.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, "connection ended: {e}");
                    }
                    break;
                }
                () = conn.evict.cancelled() => {
                    tracing::debug!(%remote, "closed the connection idle the longest: at the connection cap");
                    break;
                }
                () = self.stopping.cancelled(), if !stopping => {
                    stopping = true;
                    if conn.busy.load(Ordering::Acquire) == 0 {
                        // Nothing in flight (idle, or a head still arriving): close now.
                        break;
                    }
                    // Busy: close once its response is sent.
                    http.as_mut().graceful_shutdown();
                }
                () = changed => {}
                () = sleep_until(deadline) => {
                    // Checked again: a request may have started meanwhile.
                    if self.deadline(&conn).is_some_and(|d| d <= Instant::now()) {
                        tracing::debug!(%remote, "closed a connection: header or idle timeout");
                        break;
                    }
                }
            }
        }
        self.forget(&conn);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One request in flight on a connection, from its parsed head to the end of its response.
struct Busy {
    conn: Arc<Conn>,
    server: Arc<Server>,
}

impl Busy {
    fn start(conn: Arc<Conn>, server: Arc<Server>) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        conn.head_since.store(0, Ordering::Release);
        Busy { conn, server }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.server.now_ms(), Ordering::Release);
        if self.conn.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn.changed.notify_one();
        }
    }
}

/// The connection's socket, noting when a request head starts arriving.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
    server: Arc<Server>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.busy.load(Ordering::Acquire) == 0
            && self.conn.head_since.load(Ordering::Acquire) == 0
        {
            self.conn
                .head_since
                .store(self.server.now_ms() + 1, Ordering::Release);
            self.conn.changed.notify_one();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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

/// A request body that fails with a `TimedOut` I/O error once it has taken longer than its
/// timeout to arrive (the API answers 408).
struct Deadline {
    inner: Incoming,
    timeout: Duration,
    at: Instant,
    /// Made the first time the body waits for the client.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration) -> Deadline {
        Deadline {
            inner,
            timeout,
            at: Instant::now() + timeout,
            sleep: None,
        }
    }
}

impl hyper::body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let at = this.at;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if sleep.as_mut().poll(cx).is_ready() {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the request body did not arrive within {} s",
                            this.timeout.as_secs()
                        ),
                    );
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

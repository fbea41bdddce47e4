//! Serving the router over TLS with bounded connections: a TLS handshake
//! timeout, a header-read timeout (slowloris; in hyper it also bounds the
//! wait for the next request on a kept-alive HTTP/1 connection), a timeout
//! for the first request of a connection, an idle timeout on the raw
//! socket, a cap on open connections (those beyond it are closed at once),
//! and a cap on concurrent HTTP/2 streams per connection.

use std::future::{Future, Ready};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long in-flight requests get once shutdown starts.
const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// A TLS handshake must complete within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection bounds (`server.*` settings; defaults in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
            http2_max_concurrent_streams: 100,
        }
    }
}

/// Serves `router` over TLS on an already bound listener until `shutdown`
/// completes; in-flight requests get a grace period.
pub async fn serve_tls(
    router: Router,
    listener: std::net::TcpListener,
    tls: rustls::ServerConfig,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let handle = axum_server::Handle::new();
    let for_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        for_shutdown.graceful_shutdown(Some(GRACE_PERIOD));
    });
    listener.set_nonblocking(true)?;
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(Arc::new(tls)))
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .acceptor(Bounded {
            permits: Arc::new(Semaphore::new(connections.max_connections.max(1))),
            idle: connections.idle_timeout,
        });
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle)
        .first_request_timeout(connections.header_read_timeout)
        .accept_error_handler(|peer, error| {
            tracing::debug!(peer = ?peer, error = %error, "connection not accepted");
        });
    server
        .http_builder()
        .http1()
        .header_read_timeout(connections.header_read_timeout);
    server
        .http_builder()
        .http2()
        .max_concurrent_streams(connections.http2_max_concurrent_streams);
    server
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

/// Admits a connection while fewer than `max_connections` are open, and
/// wraps it so that it closes after `idle` without traffic.
#[derive(Clone)]
struct Bounded {
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl<S> Accept<TcpStream, S> for Bounded {
    type Stream = Guarded<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                std::future::ready(Ok((Guarded::new(stream, permit, self.idle), service)))
            }
            Err(_) => {
                metrics::counter!("notarium_connections_refused_total").increment(1);
                // Dropping the stream closes it.
                std::future::ready(Err(io::Error::other("connection limit reached")))
            }
        }
    }
}

/// A connection holding its slot, closed after `idle` without bytes in
/// either direction. The timer is checked whenever the connection waits.
struct Guarded<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Guarded<T> {
    fn new(inner: T, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        Self {
            inner,
            _permit: permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn active(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// `Pending` while the connection may stay open, else the error.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.idle_expired(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.active();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.idle_expired(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_and_traffic_keeps_it_open() {
        let (mut client, server) = pair().await;
        let permits = Arc::new(Semaphore::new(1));
        let permit = permits.clone().try_acquire_owned().unwrap();
        let mut guarded = Guarded::new(server, permit, Duration::from_millis(200));
        // Traffic within the idle time keeps it open.
        client.write_all(b"a").await.unwrap();
        let mut byte = [0u8; 1];
        guarded.read_exact(&mut byte).await.unwrap();
        // Then silence: the read fails once the idle time has passed.
        let error = guarded.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(guarded);
        // The slot is free again.
        assert_eq!(permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_refused() {
        let bounded = Bounded {
            permits: Arc::new(Semaphore::new(1)),
            idle: Duration::from_secs(60),
        };
        let (_c1, s1) = pair().await;
        let (_c2, s2) = pair().await;
        let first = Accept::<TcpStream, ()>::accept(&bounded, s1, ()).await;
        assert!(first.is_ok());
        assert!(
            Accept::<TcpStream, ()>::accept(&bounded, s2, ())
                .await
                .is_err()
        );
        drop(first);
        let (_c3, s3) = pair().await;
        assert!(
            Accept::<TcpStream, ()>::accept(&bounded, s3, ())
                .await
                .is_ok()
        );
    }
}

//! TCP connections that a handler can cut, for the dropped-connection fault.
//!
//! Each accepted stream carries a [`ConnectionHandle`] that handlers receive through axum's
//! `ConnectInfo`. Dropping the connection marks the handle, and from then on every read and
//! write on the stream fails. Hyper then abandons the connection without sending a byte, and
//! the socket closes with `SO_LINGER` 0, which sends a TCP reset.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Handle to cut one connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionHandle {
    dropped: Arc<AtomicBool>,
}

impl ConnectionHandle {
    /// Makes all further I/O on the connection fail.
    pub(crate) fn drop_connection(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }
}

/// A TCP stream whose I/O fails once its handle is dropped.
#[derive(Debug)]
pub(crate) struct CuttableStream {
    stream: TcpStream,
    handle: ConnectionHandle,
}

impl CuttableStream {
    /// Returns the error for I/O after the cut, after arranging a reset on close.
    fn cut(&self) -> io::Error {
        // A reset rather than an orderly close makes the client fail at once, whatever it
        // was doing, instead of reading an end of stream.
        let _ = self.stream.set_zero_linger();
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped by a sandbox fault",
        )
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.handle.is_dropped() {
            return Poll::Ready(Err(self.cut()));
        }
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.handle.is_dropped() {
            return Poll::Ready(Err(self.cut()));
        }
        Pin::new(&mut self.stream).poll_write(context, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.handle.is_dropped() {
            return Poll::Ready(Err(self.cut()));
        }
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.handle.is_dropped() {
            return Poll::Ready(Err(self.cut()));
        }
        Pin::new(&mut self.stream).poll_shutdown(context)
    }
}

/// Listener that wraps each accepted stream in a [`CuttableStream`].
#[derive(Debug)]
pub(crate) struct SandboxListener {
    listener: TcpListener,
}

impl SandboxListener {
    pub(crate) fn new(listener: TcpListener) -> Self {
        SandboxListener { listener }
    }
}

impl Listener for SandboxListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => {
                    // Small responses should not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    let stream = CuttableStream {
                        stream,
                        handle: ConnectionHandle::default(),
                    };
                    return (stream, address);
                }
                Err(error) if is_per_connection_error(&error) => {}
                Err(error) => {
                    // Running out of file descriptors clears up as connections close.
                    tracing::error!(%error, "sandbox failed to accept a connection; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl Connected<IncomingStream<'_, SandboxListener>> for ConnectionHandle {
    fn connect_info(stream: IncomingStream<'_, SandboxListener>) -> Self {
        stream.io().handle.clone()
    }
}

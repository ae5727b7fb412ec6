//! The socket under every connection, metered so that a WebSocket that
//! has not authenticated cannot make the gateway buffer more than the
//! pre-auth frame limit: the WebSocket layer only learns a message's size
//! as it reads it, so the bytes are counted where they enter.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a connection may read before it completes a message.
#[derive(Debug)]
pub struct ReadBudget {
    /// usize::MAX: no limit.
    limit: AtomicUsize,
    read: AtomicUsize,
}

impl Default for ReadBudget {
    fn default() -> Self {
        ReadBudget {
            limit: AtomicUsize::new(usize::MAX),
            read: AtomicUsize::new(0),
        }
    }
}

impl ReadBudget {
    /// From now on, at most `limit` bytes may arrive between two messages.
    pub fn limit_to(&self, limit: usize) {
        self.read.store(0, Ordering::Relaxed);
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn unlimit(&self) {
        self.limit.store(usize::MAX, Ordering::Relaxed);
    }

    /// A whole message was read: its bytes no longer count.
    pub fn message_done(&self) {
        self.read.store(0, Ordering::Relaxed);
    }

    fn exhausted(&self) -> bool {
        self.read.load(Ordering::Relaxed) > self.limit.load(Ordering::Relaxed)
    }
}

/// The error a read returns once the budget is spent.
#[derive(Debug)]
pub struct BudgetSpent;

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("more data than allowed before authentication")
    }
}

impl std::error::Error for BudgetSpent {}

pub struct Metered<T> {
    inner: T,
    budget: Arc<ReadBudget>,
}

impl<T> Metered<T> {
    pub fn new(inner: T, budget: Arc<ReadBudget>) -> Self {
        Metered { inner, budget }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.budget.exhausted() {
            return Poll::Ready(Err(io::Error::other(BudgetSpent)));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.budget.read.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

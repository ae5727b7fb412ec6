//! The bounded queue of frames waiting to be written to one connection,
//! and the polling that writes them while the connection also reads.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::task::{Context, Poll};

pub struct Outbound {
    queue: VecDeque<Message>,
    limit: usize,
    unflushed: bool,
}

impl Outbound {
    pub fn new(limit: usize) -> Self {
        Outbound {
            queue: VecDeque::new(),
            limit,
            unflushed: false,
        }
    }

    /// A new limit (a reload): frames already queued stay queued.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Queues a frame; false when the queue is full, i.e. the client is
    /// not reading.
    pub fn push(&mut self, message: Message) -> bool {
        if self.queue.len() >= self.limit {
            return false;
        }
        self.queue.push_back(message);
        true
    }

    /// Queues the close frame, which always fits.
    pub fn push_close(&mut self, code: u16, reason: &'static str) {
        self.queue.push_back(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })));
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.unflushed
    }

    /// Writes what the socket accepts now without waiting; registers the
    /// task to be woken when it can take more.
    fn pump(&mut self, ws: &mut WebSocket, cx: &mut Context<'_>) -> Result<(), axum::Error> {
        while !self.queue.is_empty() {
            match ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
            let message = self.queue.pop_front().expect("queue is not empty");
            ws.start_send_unpin(message)?;
            self.unflushed = true;
        }
        if self.unflushed {
            match ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    /// Writes queued frames as the socket allows and, when `read`,
    /// resolves with the next frame read (or the write error, if writing
    /// failed). Without `read` it only writes, and resolves only on error.
    pub fn write_then_read<'a>(
        &'a mut self,
        ws: &'a mut WebSocket,
        read: bool,
    ) -> impl Future<Output = Option<Result<Message, axum::Error>>> + 'a {
        poll_fn(move |cx| {
            if let Err(e) = self.pump(ws, cx) {
                return Poll::Ready(Some(Err(e)));
            }
            if read {
                ws.poll_next_unpin(cx)
            } else {
                Poll::Pending
            }
        })
    }

    /// Resolves once everything queued is written and flushed.
    pub fn flush<'a>(
        &'a mut self,
        ws: &'a mut WebSocket,
    ) -> impl Future<Output = Result<(), axum::Error>> + 'a {
        poll_fn(move |cx| {
            self.pump(ws, cx)?;
            if self.is_idle() {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
    }

    pub fn has_pending(&self) -> bool {
        !self.is_idle()
    }
}

/// The WebSocket protocol error behind an axum socket error, if any.
pub fn ws_error(e: &axum::Error) -> Option<&tokio_tungstenite::tungstenite::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(ws) = err.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            return Some(ws);
        }
        source = err.source();
    }
    None
}

//! Direct writes of channel data from outside the session task (hotlease).
//!
//! A server session's task alone holds its sealing key, its packet writer
//! and the socket's write half, so every `CHANNEL_DATA` from another task
//! is a hand-off: a message on the session's queue, a wake of its task, a
//! turn of its `select!` loop (timers re-armed), then the encryption and
//! the write. For a notification fanned out to a thousand sessions that
//! hand-off costs more than the sealing and the TCP send together.
//!
//! Here the session loop lends its write state (the channel table, the
//! packet writer and the socket's write half) to a [`DirectWriter`] while
//! it waits in `select!` with nothing to write, and takes it back, under
//! the same lock, before it does anything else. A [`DirectWriter`] writes
//! only when the data goes out whole and in order: no key exchange under
//! way, nothing queued for the session task, nothing pending on the
//! channel or in the packet writer, and the peer's window and the
//! channel writer's window both large enough. Otherwise it refuses, and
//! the caller writes through the channel as before. What the socket does
//! not take at once stays in the packet writer, and the session task is
//! woken to finish it before anything else.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc::{Sender, UnboundedSender};

use super::session::Msg;
use crate::ChannelId;
use crate::ChannelParams;
use crate::session::Encrypted;
use crate::sshbuffer::PacketWriter;

pub(crate) type BoxedWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// What the session loop lends while it waits.
pub(crate) struct Parked {
    pub(crate) channels: HashMap<ChannelId, ChannelParams>,
    pub(crate) writer: PacketWriter,
    pub(crate) stream: BoxedWrite,
    pub(crate) rekey_write_limit: usize,
}

/// Where the session loop parks its write state; shared with its
/// [`DirectWriter`]s.
#[derive(Default)]
pub(crate) struct DirectSlot {
    /// A direct writer was made: only then does the loop park.
    pub(crate) enabled: AtomicBool,
    pub(crate) parked: Mutex<Option<Parked>>,
}

impl std::fmt::Debug for DirectSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSlot")
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl DirectSlot {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Parked>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What [`DirectWriter::try_data`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectWrite {
    /// Sealed and written to the socket whole.
    Written,
    /// Sealed; the socket took part of it, and the session task writes
    /// the rest before anything else.
    Begun,
    /// Nothing done: write it through the channel.
    Refused,
}

/// Writes data on one channel of a server session from any thread,
/// without the session task, when the data can go out at once and in
/// order (see the module's documentation). Made by
/// [`Session::direct_writer`](super::Session::direct_writer).
#[derive(Clone)]
pub struct DirectWriter {
    pub(crate) slot: Arc<DirectSlot>,
    pub(crate) channel: ChannelId,
    /// The session's queue: anything in it goes out before us.
    pub(crate) sender: Sender<Msg>,
    /// Wakes the session task to finish a write the socket did not take.
    pub(crate) wake: UnboundedSender<Msg>,
    /// The channel writer's window (`ChannelTx`), kept equal to the peer's.
    pub(crate) window: Arc<tokio::sync::Mutex<u32>>,
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectWriter")
            .field("channel", &self.channel)
            .finish()
    }
}

impl DirectWriter {
    fn queue_empty(&self) -> bool {
        self.sender.capacity() == self.sender.max_capacity()
    }

    /// Send `data` as `CHANNEL_DATA` now, if it can go whole and in order;
    /// never waits (a lock held by the session task is a refusal).
    pub fn try_data(&self, data: &Bytes) -> DirectWrite {
        if data.is_empty() || !self.queue_empty() {
            return DirectWrite::Refused;
        }
        let Ok(mut slot) = self.slot.parked.try_lock() else {
            return DirectWrite::Refused;
        };
        let Some(p) = slot.as_mut() else {
            return DirectWrite::Refused;
        };
        // under the lock the session task cannot take from its queue
        if !self.queue_empty()
            || !p.writer.is_empty()
            || p.writer.bytes_written().saturating_add(data.len()) >= p.rekey_write_limit
        {
            return DirectWrite::Refused;
        }
        let Some(ch) = p.channels.get_mut(&self.channel) else {
            return DirectWrite::Refused;
        };
        if !ch.confirmed
            || !ch.pending_data.is_empty()
            || ch.pending_eof
            || ch.pending_close
            || (ch.recipient_window_size as usize) < data.len()
        {
            return DirectWrite::Refused;
        }
        let Ok(mut window) = self.window.try_lock() else {
            return DirectWrite::Refused;
        };
        if (*window as usize) < data.len() {
            return DirectWrite::Refused;
        }
        match Encrypted::data_noqueue_direct(&mut p.writer, ch, data, None, 0) {
            Ok(n) if n == data.len() => {}
            // nothing was written: the checks above rule out a short write
            _ => return DirectWrite::Refused,
        }
        *window -= data.len() as u32;
        drop(window);
        let Parked { writer, stream, .. } = p;
        let buf = &mut writer.buffer().buffer;
        let mut done = 0;
        // Outside tokio's cooperative budget: a fan-out writes to a
        // thousand sessions in one turn of its task, and a write refused
        // for budget would hand every later one to its session task.
        let write = std::future::poll_fn(|cx| {
            while let Some(rest) = buf.get(done..).filter(|r| !r.is_empty()) {
                match Pin::new(&mut *stream).poll_write(cx, rest) {
                    Poll::Ready(Ok(k)) if k > 0 => done += k,
                    // would block, or failed: the session task writes the
                    // rest (and meets the error itself)
                    _ => break,
                }
            }
            Poll::Ready(())
        });
        let mut write = std::pin::pin!(tokio::task::unconstrained(write));
        let _ = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        buf.drain(..done);
        if buf.is_empty() {
            DirectWrite::Written
        } else {
            let _ = self.wake.send(Msg::DirectFlush);
            DirectWrite::Begun
        }
    }
}

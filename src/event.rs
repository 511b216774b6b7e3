//! Events the runtimes report for NETCONF notifications, as plain values:
//! a YANG notification's path and its leaf values, with the time it
//! happened. Each runtime builds its own (it knows its module's node names,
//! as it does for its operational state); the northbound's notification
//! bus (`northbound::notify`) turns them into libyang-validated
//! notifications, logs them for replay and hands them to the subscribed
//! sessions. So no runtime imports the northbound or `netconf`.
//!
//! Emitting never blocks: the sink is a bounded channel and an event that
//! does not fit is dropped and counted (the bus is a few microseconds per
//! event; only a burst beyond `CAPACITY` can lose one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tracing::warn;

/// One notification to send: `/module:name` and its leaves, by path
/// relative to the notification (`edit[1]/target`; a `None` value
/// creates an empty leaf or a container).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub notification: &'static str,
    pub leaves: Vec<(String, Option<String>)>,
    pub at: SystemTime,
}

impl Event {
    pub fn new(notification: &'static str) -> Event {
        Event {
            notification,
            leaves: Vec::new(),
            at: SystemTime::now(),
        }
    }

    /// Add a leaf with a value.
    pub fn leaf(mut self, path: impl Into<String>, value: impl ToString) -> Event {
        self.leaves.push((path.into(), Some(value.to_string())));
        self
    }

    /// Add an empty leaf (type `empty`) or a presence container.
    pub fn flag(mut self, path: impl Into<String>) -> Event {
        self.leaves.push((path.into(), None));
        self
    }

    pub fn at(mut self, at: SystemTime) -> Event {
        self.at = at;
        self
    }
}

/// Events queued between the runtimes and the notification bus.
pub const CAPACITY: usize = 4096;

/// Where runtimes send their events; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// A sink and the receiving end (the bus).
    pub fn channel() -> (EventSink, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (
            EventSink {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// A sink nobody reads (runtimes started without a bus, in tests).
    pub fn discard() -> EventSink {
        EventSink::channel().0
    }

    /// Queue an event; never waits. A full queue drops the event (counted,
    /// logged at the first drop of a burst); a closed one (no bus) drops
    /// it silently.
    pub fn emit(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(e)) => {
                if self
                    .dropped
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(1000)
                {
                    warn!(
                        notification = e.notification,
                        "notification queue full: event dropped"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_sink_drops_and_counts_instead_of_waiting() {
        let (sink, mut rx) = EventSink::channel();
        for i in 0..CAPACITY + 3 {
            sink.emit(Event::new("/m:n").leaf("i", i));
        }
        assert_eq!(sink.dropped(), 3);
        let first = rx.recv().await.unwrap();
        assert_eq!(first.leaves, vec![("i".to_string(), Some("0".to_string()))]);
        drop(rx);
        sink.emit(Event::new("/m:n"));
        assert_eq!(sink.dropped(), 3);
    }
}

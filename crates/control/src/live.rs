//! Live log tails: the log lines of each finished invocation, for whoever follows a
//! function's logs. Nothing is copied or sent while nobody follows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ignis_store::InvocationRecord;
use tokio::sync::broadcast;

/// Batches a slow follower may fall behind by before it is told it missed some.
const BACKLOG: usize = 1024;

/// The log lines of one finished invocation.
#[derive(Debug)]
pub struct LiveLogs {
    pub function: String,
    pub invocation_id: String,
    pub lines: Vec<ignis_store::LogLine>,
}

pub(crate) struct Live {
    followers: Arc<AtomicUsize>,
    tx: broadcast::Sender<Arc<LiveLogs>>,
    /// Set at shutdown: every tail ends, so that the server's graceful shutdown, which
    /// waits for open connections, is not held up by them.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            followers: Arc::new(AtomicUsize::new(0)),
            tx: broadcast::channel(BACKLOG).0,
            closed: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Live {
    /// Publishes a record's lines when someone follows (one atomic load otherwise).
    pub(crate) fn publish(&self, record: &InvocationRecord) {
        if self.followers.load(Ordering::Acquire) == 0 || record.logs.is_empty() {
            return;
        }
        let _ = self.tx.send(Arc::new(LiveLogs {
            function: record.function.clone(),
            invocation_id: record.id.clone(),
            lines: record.logs.clone(),
        }));
    }

    pub(crate) fn follow(&self, function: &str) -> Follower {
        self.followers.fetch_add(1, Ordering::AcqRel);
        Follower {
            function: function.to_owned(),
            rx: self.tx.subscribe(),
            followers: self.followers.clone(),
            closed: self.closed.subscribe(),
        }
    }

    /// Ends every tail, now and from now on.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// One follower of one function's logs; it stops counting when dropped.
pub struct Follower {
    function: String,
    rx: broadcast::Receiver<Arc<LiveLogs>>,
    followers: Arc<AtomicUsize>,
    closed: tokio::sync::watch::Receiver<bool>,
}

/// What a follower gets next.
#[derive(Debug)]
pub enum Followed {
    Logs(Arc<LiveLogs>),
    /// The follower fell behind and this many invocations' lines were dropped for it.
    Missed(u64),
    /// The server is shutting down.
    Closed,
}

impl Follower {
    pub async fn next(&mut self) -> Followed {
        loop {
            if *self.closed.borrow() {
                return Followed::Closed;
            }
            let received = tokio::select! {
                r = self.rx.recv() => r,
                changed = self.closed.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return Followed::Closed,
                },
            };
            match received {
                Ok(logs) if logs.function == self.function => return Followed::Logs(logs),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => return Followed::Missed(n),
                Err(broadcast::error::RecvError::Closed) => return Followed::Closed,
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.followers.fetch_sub(1, Ordering::AcqRel);
    }
}

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
}

impl Default for Live {
    fn default() -> Live {
        Live {
            followers: Arc::new(AtomicUsize::new(0)),
            tx: broadcast::channel(BACKLOG).0,
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
        }
    }
}

/// One follower of one function's logs; it stops counting when dropped.
pub struct Follower {
    function: String,
    rx: broadcast::Receiver<Arc<LiveLogs>>,
    followers: Arc<AtomicUsize>,
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
            match self.rx.recv().await {
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

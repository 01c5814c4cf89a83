//! The time the control plane follows: when schedules fire, when asynchronous invocations
//! are due, how old their events are. Tests give a clock that follows tokio's, so that on
//! tokio's paused clock a retry's backoff takes no real time.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

/// Where the control plane reads the time.
pub enum Clock {
    System,
    /// Set through the API (`PUT /v1/clock`), for tests: schedules follow it; the
    /// asynchronous queue keeps the system's time (see [`Clock::flowing_now`]).
    Manual(watch::Sender<OffsetDateTime>),
    /// Starts at a given time and moves with tokio's clock: with tokio's clock paused,
    /// time passes only when every task waits. For tests without a server.
    Tokio {
        start: OffsetDateTime,
        since: tokio::time::Instant,
    },
}

impl Clock {
    pub fn manual(start: OffsetDateTime) -> Clock {
        Clock::Manual(watch::Sender::new(start))
    }

    /// A clock at `start` now, moving with tokio's clock from here on.
    pub fn tokio(start: OffsetDateTime) -> Clock {
        Clock::Tokio {
            start,
            since: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Manual(t) => *t.borrow(),
            Clock::Tokio { start, since } => *start + since.elapsed(),
        }
    }

    /// The time that passes by itself, which the asynchronous queue follows (when an
    /// invocation is due, how old its event is): a manual clock's time is for schedules
    /// only, since nothing would move it for a retry's delay to pass; the system's time
    /// then.
    pub fn flowing_now(&self) -> OffsetDateTime {
        match self {
            Clock::System | Clock::Manual(_) => OffsetDateTime::now_utc(),
            Clock::Tokio { .. } => self.now(),
        }
    }

    /// Moves a manual clock; false for the others.
    pub fn set(&self, to: OffsetDateTime) -> bool {
        match self {
            Clock::System | Clock::Tokio { .. } => false,
            Clock::Manual(t) => {
                t.send_replace(to);
                true
            }
        }
    }

    /// For a manual clock, what tells when it is moved (it moves by nothing else).
    pub(crate) fn changes(&self) -> Option<watch::Receiver<OffsetDateTime>> {
        match self {
            Clock::Manual(t) => Some(t.subscribe()),
            Clock::System | Clock::Tokio { .. } => None,
        }
    }

    /// How long from now until `at` (zero if it has passed), in tokio's time.
    pub(crate) fn until(&self, at: OffsetDateTime) -> Duration {
        Duration::try_from(at - self.now()).unwrap_or(Duration::ZERO)
    }
}

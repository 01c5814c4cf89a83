//! Idempotency keys: a repeated key within its lifetime gets the first invocation's answer
//! instead of running the handler again. An asynchronous invocation's key is taken when it
//! is accepted (see `accept_async`); a synchronous call's key is held while its first call
//! runs, so that a repeat waits for it, and its answer is remembered when it ends.
//!
//! The answer itself is opaque here: the API encodes and decodes it (it is HTTP).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ignis_core::limits::IDEMPOTENCY_TTL_SECS;
use ignis_store::{AsyncStatus, IdempotentRecord, KeyKind, StoreError};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{blocking, Platform};

/// The answer a repeated idempotency key gets: the first invocation's.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// The first invocation was asynchronous: its id, and where it is now (None once it was
    /// deleted with its dead letter or its function).
    Async {
        invocation_id: String,
        status: Option<AsyncStatus>,
    },
    /// The first invocation was a synchronous call: its remembered answer.
    Sync { invocation_id: String, reply: String },
}

/// What a synchronous call with an idempotency key is to do.
pub enum SyncOnce {
    /// The key was used within its lifetime: answer as the first call did.
    Replay(Replay),
    /// This is the key's first call: run it, then [`FirstCall::remember`] its answer.
    First(FirstCall),
}

/// The first synchronous call of a key, holding the key while it runs: a repeat waits
/// until this is remembered or dropped (a call that did not run is not remembered, and the
/// repeat then runs).
pub struct FirstCall {
    platform: Arc<Platform>,
    function: String,
    key: String,
    /// When the call started: the key's creation time.
    at: OffsetDateTime,
    _lead: Lead,
}

impl FirstCall {
    /// Remembers the answer `reply` of invocation `invocation_id`, for the key's lifetime.
    /// The key is released either way.
    pub async fn remember(self, invocation_id: &str, reply: String) -> Result<(), StoreError> {
        let store = self.platform.store.clone();
        let (function, key, id, at) = (self.function, self.key, invocation_id.to_owned(), self.at);
        blocking(move || store.save_idempotent_reply(&function, &key, &id, &reply, at)).await
    }
}

/// A function's name and an idempotency key.
type FunctionKey = (String, String);

/// Synchronous calls with an idempotency key that are running: what ends with each.
type Running = HashMap<FunctionKey, watch::Receiver<()>>;

/// Synchronous calls with an idempotency key that are running, by (function, key).
#[derive(Default, Clone)]
pub(crate) struct InFlight(Arc<Mutex<Running>>);

impl InFlight {
    fn map(&self) -> MutexGuard<'_, Running> {
        // Plain map operations only: a panic cannot leave them half done.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the key, after waiting for the call holding it (if any) to end.
    async fn lead(&self, key: FunctionKey) -> Lead {
        loop {
            let waiting = {
                let mut map = self.map();
                match map.get(&key) {
                    Some(rx) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(());
                        map.insert(key.clone(), rx);
                        return Lead {
                            map: self.clone(),
                            key,
                            _done: tx,
                        };
                    }
                }
            };
            let mut rx = waiting;
            // Ends when the holder's Lead is dropped (the sender goes away).
            while rx.changed().await.is_ok() {}
        }
    }
}

/// Holds a key while its first call runs; dropping it lets the waiters look again.
struct Lead {
    map: InFlight,
    key: FunctionKey,
    _done: watch::Sender<()>,
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.map.map().remove(&self.key);
    }
}

/// Keys created at or before this are past their lifetime.
pub(crate) fn key_fresh_after(now: OffsetDateTime) -> OffsetDateTime {
    now - Duration::from_secs(IDEMPOTENCY_TTL_SECS)
}

impl Platform {
    /// Begins a synchronous call of `name` with idempotency key `key`: waits for a first
    /// call with the key that is running, then either replays the key's first answer or
    /// makes this call the first.
    pub async fn invoke_once(self: &Arc<Self>, name: &str, key: String) -> Result<SyncOnce, StoreError> {
        let lead = self.inflight.lead((name.to_owned(), key.clone())).await;
        let at = self.clock.flowing_now();
        let store = self.store.clone();
        let (function, k) = (name.to_owned(), key.clone());
        let found = blocking(move || store.idempotent_record(&function, &k, key_fresh_after(at))).await?;
        if let Some(first) = found {
            return Ok(SyncOnce::Replay(self.replay(first).await?));
        }
        Ok(SyncOnce::First(FirstCall {
            platform: self.clone(),
            function: name.to_owned(),
            key,
            at,
            _lead: lead,
        }))
    }

    /// The answer to a repeated key, from its first invocation's record.
    pub(crate) async fn replay(&self, first: IdempotentRecord) -> Result<Replay, StoreError> {
        match first.kind {
            KeyKind::Async => {
                let store = self.store.clone();
                let id = first.invocation_id.clone();
                let status = blocking(move || store.get_async(&id))
                    .await?
                    .map(|(row, _)| row.status);
                Ok(Replay::Async {
                    invocation_id: first.invocation_id,
                    status,
                })
            }
            KeyKind::Sync => {
                let reply = first.reply.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the idempotent reply of invocation {} is missing",
                        first.invocation_id
                    ))
                })?;
                Ok(Replay::Sync {
                    invocation_id: first.invocation_id,
                    reply,
                })
            }
        }
    }
}

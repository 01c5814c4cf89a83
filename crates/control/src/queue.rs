//! Asynchronous invocations: accepted into the store, kept in memory as (due time, id) until
//! they run, attempted with at most `max_async_concurrency` at once per function, retried
//! with backoff, ended as succeeded or dead (a dead letter), and handed to destinations.
//!
//! The store is the truth; the in-memory queue is rebuilt from it at start-up, so a kill at
//! any moment loses nothing: an attempt cut short runs again (at-least-once delivery, with
//! the same request id).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ignis_core::events::{retry_delay, MAX_DESTINATION_HOPS};
use ignis_store::{AsyncRow, AsyncSource, AttemptRow, DeadReason, Enqueued, Finish, NewAsync, StoreError};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::idempotency::{key_fresh_after, Replay};
use crate::{blocking, InvokeError, Platform};

/// Settings of the asynchronous queue, from the server's configuration.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Invocations accepted and not ended, across functions, past which accepting is refused.
    pub max_queued: usize,
    /// The first retry's delay; each next one doubles (with jitter).
    pub retry_base: Duration,
}

/// Why an asynchronous invocation was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("function {0:?} does not exist")]
    NotFound(String),
    #[error("{0} asynchronous invocations are queued or running, the server's limit; try again later")]
    QueueFull(usize),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// An accepted asynchronous invocation.
#[derive(Debug)]
pub enum Accepted {
    /// Stored now.
    New { id: String },
    /// The idempotency key was used within its lifetime: nothing stored; the answer is
    /// the key's first invocation's.
    Existing(Replay),
}

/// Waiting a little before trying again an invocation whose attempt was throttled.
const THROTTLE_DELAY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct State {
    /// Invocations waiting for their turn, by due time (Unix ns) then id.
    due: BTreeSet<(i128, String)>,
    /// Every invocation not ended (waiting or running): id → function.
    open: HashMap<String, String>,
    /// Attempts running, per function.
    running: HashMap<String, u32>,
}

pub(crate) struct Queue {
    config: QueueConfig,
    state: Mutex<State>,
    wake: Notify,
}

impl Queue {
    pub(crate) fn new(config: QueueConfig) -> Queue {
        Queue {
            config,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain map operations only: a panic cannot leave them half done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn push(&self, id: String, function: String, due: OffsetDateTime) {
        {
            let mut s = self.state();
            s.due.insert((due.unix_timestamp_nanos(), id.clone()));
            s.open.insert(id, function);
        }
        self.wake.notify_one();
    }

    /// An attempt ended: the function has a free turn; `again` puts the invocation back.
    fn attempt_done(&self, id: &str, function: &str, again: Option<OffsetDateTime>) {
        {
            let mut s = self.state();
            if let Some(n) = s.running.get_mut(function) {
                *n = n.saturating_sub(1);
            }
            match again {
                Some(at) => {
                    s.due.insert((at.unix_timestamp_nanos(), id.to_owned()));
                }
                None => {
                    s.open.remove(id);
                }
            }
        }
        self.wake.notify_one();
    }

    pub(crate) fn open_count(&self) -> usize {
        self.state().open.len()
    }

    /// Takes the invocations due by `now` whose function has a free turn, and says when the
    /// next one is due.
    fn take_due(
        &self,
        now: OffsetDateTime,
        limit: impl Fn(&str) -> u32,
    ) -> (Vec<(String, String)>, Option<i128>) {
        let now = now.unix_timestamp_nanos();
        let mut s = self.state();
        let mut start = Vec::new();
        let mut next = None;
        let mut taken = Vec::new();
        for (at, id) in &s.due {
            if *at > now {
                next = Some(*at);
                break;
            }
            let Some(function) = s.open.get(id) else {
                taken.push((*at, id.clone()));
                continue;
            };
            let running = s.running.get(function).copied().unwrap_or(0)
                + u32::try_from(start.iter().filter(|(_, f)| f == function).count()).unwrap_or(u32::MAX);
            if running < limit(function) {
                taken.push((*at, id.clone()));
                start.push((id.clone(), function.clone()));
            }
        }
        for key in taken {
            s.due.remove(&key);
        }
        for (_, function) in &start {
            *s.running.entry(function.clone()).or_default() += 1;
        }
        (start, next)
    }
}

impl Platform {
    /// Accepts an asynchronous invocation of `name`: stored (committed) when this returns.
    pub async fn accept_async(
        self: &Arc<Self>,
        name: &str,
        event: String,
        key: Option<String>,
    ) -> Result<Accepted, AcceptError> {
        if self.slot(name).is_none() {
            return Err(AcceptError::NotFound(name.to_owned()));
        }
        let open = self.queue.open_count();
        if open >= self.queue.config.max_queued {
            return Err(AcceptError::QueueFull(open));
        }
        let now = self.clock.flowing_now();
        let new = NewAsync {
            id: uuid::Uuid::now_v7().to_string(),
            function: name.to_owned(),
            event,
            source: AsyncSource::Api,
            created_at: now,
            redrive_of: None,
            hops: 0,
        };
        let store = self.store.clone();
        let (id, function) = (new.id.clone(), new.function.clone());
        let enqueued =
            blocking(move || store.enqueue_async(&new, key.as_deref(), key_fresh_after(now))).await?;
        match enqueued {
            Enqueued::New => {
                self.queue.push(id.clone(), function, now);
                Ok(Accepted::New { id })
            }
            Enqueued::Existing(first) => Ok(Accepted::Existing(self.replay(first).await?)),
        }
    }

    /// Runs dead letter `id` of `name` again as a new asynchronous invocation; its id, or
    /// None if there is no such dead letter.
    pub async fn redrive(self: &Arc<Self>, name: &str, id: &str) -> Result<Option<String>, AcceptError> {
        let open = self.queue.open_count();
        if open >= self.queue.config.max_queued {
            return Err(AcceptError::QueueFull(open));
        }
        let store = self.store.clone();
        let (name, id) = (name.to_owned(), id.to_owned());
        let now = self.clock.flowing_now();
        let new_id = uuid::Uuid::now_v7().to_string();
        let task_id = new_id.clone();
        let (function, redriven) = blocking(move || {
            let Some((row, _)) = store.get_async(&id)? else {
                return Ok((name, false));
            };
            let new = NewAsync {
                id: task_id,
                function: name.clone(),
                event: row.event,
                source: AsyncSource::Redrive,
                created_at: now,
                redrive_of: Some(id.clone()),
                // A redrive is a caller's new start, not one more hop of the chain.
                hops: 0,
            };
            Ok((
                name.clone(),
                row.function == name && store.redrive(&name, &id, &new)?,
            ))
        })
        .await?;
        if !redriven {
            return Ok(None);
        }
        self.queue.push(new_id.clone(), function, now);
        Ok(Some(new_id))
    }

    /// Loads the invocations not ended and starts the dispatcher. Called once, after the
    /// functions are restored.
    pub async fn start_queue(self: &Arc<Self>) -> Result<usize, StoreError> {
        let store = self.store.clone();
        let now = self.clock.flowing_now();
        let open = blocking(move || {
            // Keys past their lifetime are forgotten at start-up (lookups ignore them anyway).
            store.expire_idempotency_keys(key_fresh_after(now))?;
            store.recover_async()
        })
        .await?;
        let n = open.len();
        for (id, function, due) in open {
            self.queue.push(id, function, due);
        }
        let platform = self.clone();
        tokio::spawn(async move { platform.dispatch().await });
        Ok(n)
    }

    async fn dispatch(self: Arc<Self>) {
        loop {
            let woken = self.queue.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = self.clock.flowing_now();
            let (start, next) = self.queue.take_due(now, |function| {
                self.slot(function)
                    .map_or(1, |slot| slot.latest().async_concurrency())
            });
            for (id, function) in start {
                let platform = self.clone();
                tokio::spawn(async move {
                    let again = match platform.attempt(&id, &function).await {
                        Ok(again) => again,
                        Err(e) => {
                            // The store failed (disk full, I/O): the invocation stays open in
                            // the store and is tried again later, never dropped.
                            tracing::error!("asynchronous invocation {id}: {e}; trying again in 1 s");
                            Some(platform.clock.flowing_now() + Duration::from_secs(1))
                        }
                    };
                    platform.queue.attempt_done(&id, &function, again);
                });
            }
            match next {
                Some(at) => {
                    let wait = Duration::from_nanos(
                        u64::try_from((at - now.unix_timestamp_nanos()).max(0)).unwrap_or(u64::MAX),
                    );
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                None => woken.await,
            }
        }
    }

    /// One attempt of invocation `id`; when it must run again, the time it is due.
    async fn attempt(
        self: &Arc<Self>,
        id: &str,
        function: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let store = self.store.clone();
        let owned = id.to_owned();
        let Some(row) = blocking(move || store.begin_attempt(&owned)).await? else {
            // Ended or deleted (with its function) meanwhile.
            return Ok(None);
        };
        if row.hops > MAX_DESTINATION_HOPS {
            // A chain of destinations this long is a loop (or as costly as one): cut here,
            // without running or handing anything on. A dead letter, so it can be seen and
            // redriven on purpose.
            tracing::warn!(
                "asynchronous invocation {id} of {function:?} is destination hop {}; chains stop after {MAX_DESTINATION_HOPS} hops",
                row.hops
            );
            self.end_unattempted(&row, DeadReason::DestinationHopsExceeded, true)
                .await?;
            return Ok(None);
        }
        let Some(slot) = self.slot(function) else {
            self.end_unattempted(&row, DeadReason::FunctionNotFound, false)
                .await?;
            return Ok(None);
        };
        let spec = slot.latest();
        let now = self.clock.flowing_now();
        let max_age = time::Duration::seconds(i64::from(spec.retry.max_event_age_secs));
        if now - row.created_at > max_age {
            self.end_unattempted(&row, DeadReason::EventTooOld, true).await?;
            return Ok(None);
        }
        let event = match RawValue::from_string(row.event.clone()) {
            Ok(e) => e,
            Err(e) => return Err(StoreError::Corrupt(format!("stored event of {id}: {e}"))),
        };
        let attempt_no = row.attempts + 1;
        let (attempt, error, result) = match self.invoke_as(function, event, Some(id), None).await {
            Ok(inv) => (
                AttemptRow {
                    attempt: attempt_no,
                    execution_id: inv.id.clone(),
                    version: inv.version,
                    started_at: inv.started_at,
                    duration_ms: inv.duration.as_secs_f64() * 1000.0,
                    status: inv.result.status().to_owned(),
                    error_json: inv.result.error().map(|e| e.to_json().to_string()),
                },
                inv.result.error().map(|e| e.to_json()),
                inv.result.result_value(),
            ),
            Err(InvokeError::NotFound(_)) => {
                self.end_unattempted(&row, DeadReason::FunctionNotFound, false)
                    .await?;
                return Ok(None);
            }
            Err(
                InvokeError::NotReady { .. } | InvokeError::Throttled(_) | InvokeError::CapacityExhausted(_),
            ) => {
                // Not an attempt: the handler did not run. Back in the queue a little later.
                let at = self.clock.flowing_now() + jittered(THROTTLE_DELAY);
                let store = self.store.clone();
                let owned = id.to_owned();
                blocking(move || store.requeue(&owned, at)).await?;
                return Ok(Some(at));
            }
            Err(e @ InvokeError::StartFailed(_)) => {
                let error = e.error();
                (
                    AttemptRow {
                        attempt: attempt_no,
                        execution_id: String::new(),
                        version: 0,
                        started_at: now,
                        duration_ms: 0.0,
                        status: error.code.as_str().to_owned(),
                        error_json: Some(error.to_json().to_string()),
                    },
                    Some(error.to_json()),
                    None,
                )
            }
        };
        let now = self.clock.flowing_now();
        if let Some(result) = result {
            let destination = spec.on_success.as_ref().map(|d| {
                destination_event(
                    d.as_str(),
                    &row,
                    "success",
                    json!({"result": result}),
                    attempt_no,
                    now,
                )
            });
            let result = result.to_string();
            self.finish(&row, Some(attempt), Finish::Succeeded { result }, destination)
                .await?;
            return Ok(None);
        }
        let error = error.unwrap_or(Value::Null);
        let delay = retry_delay(self.queue.config.retry_base, attempt_no, rand::random::<f64>());
        let next = now + delay;
        let reason = if attempt_no >= spec.retry.max_attempts() {
            Some(DeadReason::RetriesExhausted)
        } else if next - row.created_at > max_age {
            Some(DeadReason::EventTooOld)
        } else {
            None
        };
        let Some(reason) = reason else {
            self.finish(&row, Some(attempt), Finish::Retry { at: next }, None)
                .await?;
            return Ok(Some(next));
        };
        let destination = spec.on_failure.as_ref().map(|d| {
            destination_event(
                d.as_str(),
                &row,
                "failure",
                json!({"error": error, "reason": reason.as_str()}),
                attempt_no,
                now,
            )
        });
        self.finish(
            &row,
            Some(attempt),
            Finish::Dead {
                reason,
                dead_letter: true,
            },
            destination,
        )
        .await?;
        Ok(None)
    }

    /// Ends an invocation as dead without running it (its function is gone, or it is too
    /// old); `dead_letter` lists it in the function's dead letters.
    async fn end_unattempted(
        self: &Arc<Self>,
        row: &AsyncRow,
        reason: DeadReason,
        dead_letter: bool,
    ) -> Result<(), StoreError> {
        self.finish(row, None, Finish::Dead { reason, dead_letter }, None)
            .await
    }

    async fn finish(
        self: &Arc<Self>,
        row: &AsyncRow,
        attempt: Option<AttemptRow>,
        finish: Finish,
        then: Option<NewAsync>,
    ) -> Result<(), StoreError> {
        let store = self.store.clone();
        let id = row.id.clone();
        let attempts = attempt.as_ref().map_or(row.attempts, |a| a.attempt);
        let then_copy = then.clone();
        let now = self.clock.flowing_now();
        blocking(move || {
            store.finish_attempt(&id, attempts, attempt.as_ref(), &finish, now, then_copy.as_ref())
        })
        .await?;
        if let Some(next) = then {
            self.queue.push(next.id, next.function, next.created_at);
        }
        Ok(())
    }
}

/// The event a destination receives.
fn destination_event(
    destination: &str,
    row: &AsyncRow,
    condition: &str,
    outcome: Value,
    attempts: u32,
    now: OffsetDateTime,
) -> NewAsync {
    let event: Value = serde_json::from_str(&row.event).unwrap_or(Value::Null);
    let mut body = json!({
        "invocation_id": row.id,
        "function": row.function,
        "condition": condition,
        "attempts": attempts,
        "event": event,
    });
    if let (Value::Object(b), Value::Object(o)) = (&mut body, outcome) {
        b.extend(o);
    }
    NewAsync {
        id: uuid::Uuid::now_v7().to_string(),
        function: destination.to_owned(),
        event: body.to_string(),
        source: AsyncSource::Destination,
        created_at: now,
        redrive_of: None,
        hops: row.hops.saturating_add(1),
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>())
}

//! Cron schedules: each firing becomes an asynchronous invocation. A schedule's last fire
//! time is stored in the same transaction as its firings, so no time fires twice, even
//! across a kill; runs missed while the server was down are skipped, or one is caught up
//! with `catch_up: "one"`.
//!
//! Time comes from the platform's [`Clock`].

use std::sync::Arc;
use std::time::Duration;

use ignis_core::schedule::{CatchUp, Schedule};
use ignis_store::{NewAsync, StoreError};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::blocking;
use crate::{Clock, Platform};

/// Most firings of one schedule in one pass (a clock that jumps far ahead).
const MAX_FIRES_PER_PASS: usize = 1000;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The id of a firing: the same for the same function, schedule and time.
fn firing_id(function: &str, key: &str, at: OffsetDateTime) -> String {
    let digest = Sha256::digest(format!("{function}\n{key}\n{}", at.unix_timestamp_nanos()));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// How a schedule shows in the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    /// A cron expression (5 or 6 fields, or an alias such as `@daily`).
    pub cron: String,
    /// An IANA time zone such as `Europe/Paris`.
    pub timezone: String,
    /// The event each firing sends.
    #[schema(value_type = Object)]
    pub event: serde_json::Map<String, Value>,
    pub enabled: bool,
    /// What happens to runs missed while the server was down: `skip` or `one`.
    #[schema(value_type = CatchUpSchema)]
    pub catch_up: CatchUp,
    /// When it fires next (RFC 3339); null when disabled or never again.
    pub next_fire_at: Option<String>,
}

// Core's `CatchUp` as the OpenAPI document shows it.
/// What happens to runs of a schedule missed while the server was down.
#[derive(ToSchema)]
#[schema(as = CatchUp, rename_all = "lowercase")]
#[allow(dead_code)]
enum CatchUpSchema {
    Skip,
    One,
}

/// A schedule in the list of every function's schedules.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleEntry {
    pub function: String,
    /// Its place in the function's `schedules`.
    pub index: usize,
    #[serde(flatten)]
    pub schedule: ScheduleView,
    /// Due times up to this one (RFC 3339) have been fired or skipped.
    pub checked_until: Option<String>,
}

pub(crate) fn schedule_view(s: &Schedule, now: OffsetDateTime) -> ScheduleView {
    ScheduleView {
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        event: s.event.clone(),
        enabled: s.enabled,
        catch_up: s.catch_up,
        next_fire_at: if s.enabled {
            s.next_after(now).map(rfc3339)
        } else {
            None
        },
    }
}

impl Platform {
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Every function's schedules, with their next and last fire times.
    pub async fn schedules(&self) -> Result<Vec<ScheduleEntry>, StoreError> {
        let now = self.clock.now();
        let mut names: Vec<String> = self.table.load().keys().cloned().collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let Some(slot) = self.slot(&name) else { continue };
            let schedules = slot.latest().schedules.clone();
            if schedules.is_empty() {
                continue;
            }
            let store = self.store.clone();
            let n = name.clone();
            let state = blocking(move || store.schedule_state(&n)).await?;
            for (i, s) in schedules.iter().enumerate() {
                out.push(ScheduleEntry {
                    function: name.clone(),
                    index: i,
                    schedule: schedule_view(s, now),
                    checked_until: state.get(&s.key(i)).map(|t| rfc3339(*t)),
                });
            }
        }
        Ok(out)
    }

    /// Starts the scheduler. Called once, after the functions are restored and the queue
    /// started.
    pub fn start_scheduler(self: &Arc<Self>) {
        let platform = self.clone();
        tokio::spawn(async move { platform.schedule_loop().await });
    }

    async fn schedule_loop(self: Arc<Self>) {
        let mut manual = self.clock.changes();
        // The time of the last pass that succeeded: due times up to it were missed (the
        // server was down, or the schedule disabled or not yet there), later ones are fresh.
        let mut checked: Option<OffsetDateTime> = None;
        loop {
            let woken = self.schedule_wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = self.clock.now();
            let next = match self.schedule_pass(now, checked.unwrap_or(now)).await {
                Ok(next) => {
                    checked = Some(now);
                    next
                }
                Err(e) => {
                    tracing::error!("schedules: {e}; trying again in 1 s");
                    Some(now + Duration::from_secs(1))
                }
            };
            match (&mut manual, next) {
                (Some(rx), _) => {
                    tokio::select! {
                        _ = woken => {}
                        _ = rx.changed() => {}
                    }
                }
                (None, Some(at)) => {
                    let wait = self.clock.until(at);
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                (None, None) => woken.await,
            }
        }
    }

    /// Fires what is due by `now`: every time after `missed_until`, and for `catch_up:
    /// "one"` the latest time at or before it; returns the next fire time of any schedule.
    /// At start-up `missed_until` is `now`: runs missed while down are skipped or caught up
    /// once, never replayed in a burst.
    async fn schedule_pass(
        self: &Arc<Self>,
        now: OffsetDateTime,
        missed_until: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let mut next: Option<OffsetDateTime> = None;
        let slots: Vec<(String, Arc<crate::Slot>)> = self
            .table
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (function, slot) in slots {
            let spec = slot.latest();
            let schedules = &spec.schedules;
            if schedules.is_empty() {
                // State left by removed schedules is harmless: times older than the last
                // pass never fire in a burst. It goes with the function.
                continue;
            }
            let store = self.store.clone();
            let name = function.clone();
            let state = blocking(move || store.schedule_state(&name)).await?;
            let mut keys = Vec::new();
            for (i, s) in schedules.iter().enumerate() {
                let key = s.key(i);
                keys.push(key.clone());
                let (advance_to, fires) = match state.get(&key) {
                    // Seen for the first time: it starts from now.
                    None => (now, Vec::new()),
                    Some(last) => {
                        let due = s.fire_times(*last, now, MAX_FIRES_PER_PASS);
                        let Some(latest) = due.last().copied() else {
                            if s.enabled {
                                next = earliest(next, s.next_after(now));
                            }
                            continue;
                        };
                        let (missed, fresh): (Vec<OffsetDateTime>, Vec<OffsetDateTime>) =
                            due.into_iter().partition(|t| *t <= missed_until);
                        let mut fire = Vec::new();
                        if s.enabled {
                            if s.catch_up == CatchUp::One {
                                fire.extend(missed.last());
                            }
                            fire.extend(fresh);
                        }
                        (latest, fire)
                    }
                };
                // Created now in the queue's time, which a manual clock does not stop.
                let created = self.clock.flowing_now();
                let firings: Vec<NewAsync> = fires
                    .iter()
                    .map(|at| NewAsync {
                        id: firing_id(&function, &key, *at),
                        function: function.clone(),
                        event: s.event_at(*at).to_string(),
                        source: ignis_store::AsyncSource::Schedule,
                        created_at: created,
                        redrive_of: None,
                        hops: 0,
                    })
                    .collect();
                let store = self.store.clone();
                let (name, k) = (function.clone(), key.clone());
                let stored =
                    blocking(move || store.schedule_advance(&name, &k, advance_to, &firings)).await?;
                for id in stored {
                    self.queue.push(id, function.clone(), created);
                }
                if s.enabled {
                    next = earliest(next, s.next_after(now.max(advance_to)));
                }
            }
            if state.keys().any(|k| !keys.contains(k)) {
                let store = self.store.clone();
                let name = function.clone();
                blocking(move || store.prune_schedule_state(&name, &keys)).await?;
            }
        }
        Ok(next)
    }

    /// A function's schedules changed (created, updated, deleted).
    pub(crate) fn schedules_changed(&self) {
        self.schedule_wake.notify_one();
    }
}

fn earliest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

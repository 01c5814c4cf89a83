//! Test events saved per function (the console's invoke panel).

use rusqlite::{params, TransactionBehavior};
use time::OffsetDateTime;

use crate::{from_ms, ms, Store, StoreError};

/// One saved test event.
#[derive(Debug, Clone, PartialEq)]
pub struct TestEvent {
    pub name: String,
    /// JSON text.
    pub event: String,
    pub updated_at: OffsetDateTime,
}

/// What saving a test event came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Replaced,
    /// The function already has `max` events and this is a new name.
    Full,
}

impl Store {
    /// A function's test events, by name.
    pub fn list_test_events(&self, function: &str) -> Result<Vec<TestEvent>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT name, event, updated_at FROM test_events WHERE function = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map([function], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (name, event, at) = r?;
            Ok(TestEvent {
                name,
                event,
                updated_at: from_ms(at)?,
            })
        })
        .collect()
    }

    /// Saves (or replaces) `event` under `name`, keeping at most `max` per function.
    pub fn put_test_event(&self, function: &str, event: &TestEvent, max: usize) -> Result<Saved, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM test_events WHERE function = ?1 AND name = ?2)",
            params![function, event.name],
            |r| r.get(0),
        )?;
        if !exists {
            let count: i64 = tx.query_row(
                "SELECT COUNT(*) FROM test_events WHERE function = ?1",
                [function],
                |r| r.get(0),
            )?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= max {
                return Ok(Saved::Full);
            }
        }
        let changed = tx.execute(
            "INSERT INTO test_events (function, name, event, updated_at)
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM functions WHERE name = ?1)
             ON CONFLICT (function, name) DO UPDATE SET event = excluded.event, updated_at = excluded.updated_at",
            params![function, event.name, event.event, ms(event.updated_at)],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(function.to_owned()));
        }
        tx.commit()?;
        Ok(if exists { Saved::Replaced } else { Saved::Created })
    }

    /// Deletes a test event; false when there was none.
    pub fn delete_test_event(&self, function: &str, name: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "DELETE FROM test_events WHERE function = ?1 AND name = ?2",
            params![function, name],
        )?;
        Ok(n > 0)
    }
}

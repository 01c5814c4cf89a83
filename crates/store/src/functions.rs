//! Functions and their versions: create, add a version, deploy status, read, delete.

use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::{from_ms, ms, NewVersion, Store, StoreError, StoredFunction, StoredVersion, VersionStatus};

/// The latest version of each function joined with its function row, and the highest
/// version that deployed. Both lookups of a function share it so they cannot drift apart.
const FUNCTION_SELECT: &str = "SELECT f.name, f.created_at, f.updated_at,
    (SELECT MAX(r.version) FROM function_versions r WHERE r.function = f.name AND r.status = 'ready'),
    v.function, v.version, v.runtime, v.handler, v.code, v.code_sha256, v.spec_json,
    v.status, v.status_reason, v.created_at, v.status_detail
    FROM functions f JOIN function_versions v ON v.function = f.name AND v.version = f.latest_version";

const VERSION_SELECT: &str = "SELECT function, version, runtime, handler, code, code_sha256, spec_json,
    status, status_reason, created_at, status_detail FROM function_versions WHERE function = ?1 AND version = ?2";

impl Store {
    /// Stores a new function with `v` as its version 1 (whatever `v.version` says).
    pub fn create_function(&self, v: &NewVersion) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let inserted = tx.execute(
            "INSERT INTO functions (name, created_at, updated_at, latest_version) VALUES (?1, ?2, ?2, 1)
             ON CONFLICT (name) DO NOTHING",
            params![v.function, ms(v.created_at)],
        )?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(v.function.clone()));
        }
        insert_version(&tx, v, 1)?;
        tx.commit()?;
        Ok(())
    }

    /// Stores the next version of a function; `v.version` must be the latest plus one.
    pub fn add_version(&self, v: &NewVersion) -> Result<(), StoreError> {
        let mut conn = self.conn();
        // Immediate: this transaction reads, then writes. A deferred one would fail with
        // SQLITE_BUSY (not retried by the busy handler) if the invocation writer committed
        // between the read and the write.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let latest: Option<u32> = tx
            .query_row(
                "SELECT latest_version FROM functions WHERE name = ?1",
                [&v.function],
                |r| r.get(0),
            )
            .optional()?;
        let latest = latest.ok_or_else(|| StoreError::NotFound(v.function.clone()))?;
        if Some(v.version) != latest.checked_add(1) {
            return Err(StoreError::VersionConflict {
                function: v.function.clone(),
                latest,
                given: v.version,
            });
        }
        insert_version(&tx, v, v.version)?;
        tx.execute(
            "UPDATE functions SET latest_version = ?2, updated_at = ?3 WHERE name = ?1",
            params![v.function, v.version, ms(v.created_at)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records the outcome of a version's deploy.
    pub fn set_version_status(
        &self,
        function: &str,
        version: u32,
        status: VersionStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed = self.conn().execute(
            "UPDATE function_versions SET status = ?3, status_reason = ?4, status_detail = NULL
             WHERE function = ?1 AND version = ?2",
            params![function, version, status.as_str(), reason],
        )?;
        if changed == 0 {
            return Err(StoreError::VersionNotFound {
                function: function.to_owned(),
                version,
            });
        }
        Ok(())
    }

    /// Marks a version failed, with why in words and, when its code failed to load, the
    /// details as JSON `{type, message, line}`.
    pub fn set_version_failed(
        &self,
        function: &str,
        version: u32,
        reason: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed = self.conn().execute(
            "UPDATE function_versions SET status = 'error', status_reason = ?3, status_detail = ?4
             WHERE function = ?1 AND version = ?2",
            params![function, version, reason, detail],
        )?;
        if changed == 0 {
            return Err(StoreError::VersionNotFound {
                function: function.to_owned(),
                version,
            });
        }
        Ok(())
    }

    /// Every function with its latest version, sorted by name.
    pub fn list_functions(&self) -> Result<Vec<StoredFunction>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{FUNCTION_SELECT} ORDER BY f.name"))?;
        let rows = stmt.query_map([], |r| Ok(function_row(r)))?;
        rows.map(|r| r?).collect()
    }

    pub fn get_function(&self, name: &str) -> Result<Option<StoredFunction>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{FUNCTION_SELECT} WHERE f.name = ?1"))?;
        stmt.query_row([name], |r| Ok(function_row(r)))
            .optional()?
            .transpose()
    }

    pub fn get_version(&self, function: &str, version: u32) -> Result<Option<StoredVersion>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(VERSION_SELECT)?;
        stmt.query_row(params![function, version], |r| Ok(version_row(r, 0)))
            .optional()?
            .transpose()
    }

    /// Deletes a function with its versions, invocation records (committed or still
    /// pending in the writer) and log lines. False if there was no such function.
    pub fn delete_function(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        // Under the writer's commit gate: a batch the writer took before this delete cannot
        // commit after it and bring the function's invocations back.
        let _gate = self.inner.pending.commit_gate();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Versions go by the foreign key's cascade.
        let deleted = tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM log_lines WHERE function = ?1", [name])?;
        tx.execute("DELETE FROM invocations WHERE function = ?1", [name])?;
        // Its queued work, dead letters, keys and schedules go with it (attempts cascade).
        tx.execute("DELETE FROM async_invocations WHERE function = ?1", [name])?;
        tx.execute("DELETE FROM idempotency_keys WHERE function = ?1", [name])?;
        tx.execute("DELETE FROM schedule_state WHERE function = ?1", [name])?;
        crate::packages::collect_packages(&tx)?;
        tx.commit()?;
        self.inner.pending.remove_function(name);
        Ok(deleted > 0)
    }
}

fn insert_version(tx: &Transaction<'_>, v: &NewVersion, version: u32) -> Result<(), StoreError> {
    // A package stored already is only referred to (the foreign key checks it is there).
    if let Some(crate::VersionPackage::New(p)) = &v.package {
        crate::packages::insert_package(tx, p, crate::packages::now(v.created_at))?;
    }
    tx.execute(
        "INSERT INTO function_versions
         (function, version, runtime, handler, code, code_sha256, spec_json, status, status_reason, created_at,
          package_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10)",
        params![
            v.function,
            version,
            v.runtime,
            v.handler,
            v.code,
            v.code_sha256,
            v.spec_json,
            VersionStatus::Deploying.as_str(),
            ms(v.created_at),
            v.package.as_ref().map(crate::VersionPackage::sha256)
        ],
    )?;
    for (position, (layer, layer_version)) in v.layers.iter().enumerate() {
        tx.execute(
            "INSERT INTO function_version_layers (function, version, position, layer, layer_version)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![v.function, version, position, layer, layer_version],
        )?;
    }
    Ok(())
}

/// A `function_versions` row whose columns start at `at`, in the order of `VERSION_SELECT`.
fn version_row(r: &Row<'_>, at: usize) -> Result<StoredVersion, StoreError> {
    Ok(StoredVersion {
        function: r.get(at)?,
        version: r.get(at + 1)?,
        runtime: r.get(at + 2)?,
        handler: r.get(at + 3)?,
        code: r.get(at + 4)?,
        code_sha256: r.get(at + 5)?,
        spec_json: r.get(at + 6)?,
        status: VersionStatus::parse(&r.get::<_, String>(at + 7)?)?,
        status_reason: r.get(at + 8)?,
        created_at: from_ms(r.get(at + 9)?)?,
        status_detail: r.get(at + 10)?,
    })
}

fn function_row(r: &Row<'_>) -> Result<StoredFunction, StoreError> {
    Ok(StoredFunction {
        name: r.get(0)?,
        created_at: from_ms(r.get(1)?)?,
        updated_at: from_ms(r.get(2)?)?,
        last_ready_version: r.get(3)?,
        latest: version_row(r, 4)?,
    })
}

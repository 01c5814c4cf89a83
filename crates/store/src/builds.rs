//! Dependency builds of function versions: one row per finished build, and the cache
//! entries the functions still use.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension};
use time::OffsetDateTime;

use crate::{from_ms, ms, Store, StoreError};

/// How a finished build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    /// The installer ran and its output became the cache entry.
    Succeeded,
    Failed,
    /// The cache held the entry already: nothing was installed.
    Cached,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
            BuildStatus::Cached => "cached",
        }
    }

    fn parse(s: &str) -> Result<BuildStatus, StoreError> {
        match s {
            "succeeded" => Ok(BuildStatus::Succeeded),
            "failed" => Ok(BuildStatus::Failed),
            "cached" => Ok(BuildStatus::Cached),
            other => Err(StoreError::Corrupt(format!("unknown build status {other:?}"))),
        }
    }
}

/// A finished build of one function version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBuild {
    pub function: String,
    pub version: u32,
    pub status: BuildStatus,
    /// `uv` or `bun`.
    pub installer: String,
    pub cache_key: String,
    pub log: String,
    pub error: Option<String>,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
}

impl Store {
    /// Records a finished build (a build of the same version again replaces it).
    pub fn put_build(&self, b: &StoredBuild) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO builds
                 (function, version, status, installer, cache_key, log, error, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                b.function,
                b.version,
                b.status.as_str(),
                b.installer,
                b.cache_key,
                b.log,
                b.error,
                ms(b.started_at),
                ms(b.finished_at),
            ])
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::VersionNotFound {
                        function: b.function.clone(),
                        version: b.version,
                    }
                }
                other => other.into(),
            })?;
        Ok(())
    }

    /// The finished build of a version, if it had one.
    pub fn get_build(&self, function: &str, version: u32) -> Result<Option<StoredBuild>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT status, installer, cache_key, log, error, started_at, finished_at
             FROM builds WHERE function = ?1 AND version = ?2",
        )?;
        let row = stmt
            .query_row(params![function, version], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .optional()?;
        row.map(|(status, installer, cache_key, log, error, started, finished)| {
            Ok(StoredBuild {
                function: function.to_owned(),
                version,
                status: BuildStatus::parse(&status)?,
                installer,
                cache_key,
                log,
                error,
                started_at: from_ms(started)?,
                finished_at: from_ms(finished)?,
            })
        })
        .transpose()
    }

    /// The cache entries a function may still need: those of each function's newest
    /// version and of its newest ready one (what serves, or would serve after a restart).
    pub fn build_keys_in_use(&self) -> Result<HashSet<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT b.cache_key FROM builds b
             WHERE b.status != 'failed' AND (
               b.version = (SELECT MAX(v.version) FROM function_versions v WHERE v.function = b.function)
               OR b.version = (SELECT MAX(v.version) FROM function_versions v
                               WHERE v.function = b.function AND v.status = 'ready'))",
        )?;
        let keys = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut keys: HashSet<String> = keys.collect::<Result<_, _>>()?;
        drop(stmt);
        drop(conn);
        keys.extend(self.layer_deps_keys()?);
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_of_a_missing_version_is_refused_and_keys_follow_the_newest_versions() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path()).expect("open");
        let at = OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("a time");
        let build = |version, key: &str, status| StoredBuild {
            function: "f".to_owned(),
            version,
            status,
            installer: "uv".to_owned(),
            cache_key: key.to_owned(),
            log: "Installed 1 package".to_owned(),
            error: None,
            started_at: at,
            finished_at: at,
        };
        assert!(matches!(
            store.put_build(&build(1, "k1", BuildStatus::Succeeded)),
            Err(StoreError::VersionNotFound { .. })
        ));
        crate::tests::create_test_function(&store, "f", 3);
        store
            .put_build(&build(1, "k1", BuildStatus::Succeeded))
            .expect("put");
        store
            .put_build(&build(2, "k2", BuildStatus::Cached))
            .expect("put");
        store
            .put_build(&build(3, "k3", BuildStatus::Failed))
            .expect("put");
        assert_eq!(
            store.get_build("f", 2).expect("get").expect("a row").status,
            BuildStatus::Cached
        );
        assert_eq!(store.get_build("f", 4).expect("get"), None);
        // Version 3 is the newest but failed; version 2 is the newest ready one.
        crate::tests::set_ready(&store, "f", 2);
        assert_eq!(
            store.build_keys_in_use().expect("keys"),
            HashSet::from(["k2".to_owned()])
        );
        store.delete_function("f").expect("delete");
        assert!(store.build_keys_in_use().expect("keys").is_empty());
        assert_eq!(store.get_build("f", 2).expect("get"), None);
    }
}

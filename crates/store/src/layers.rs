//! Layers: numbered versions of shared packages, and which functions use them.

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use time::OffsetDateTime;

use crate::packages::{collect_packages, insert_package};
use crate::{from_ms, ms, NewPackage, Store, StoreError};

/// A layer version to store.
#[derive(Debug, Clone)]
pub struct NewLayerVersion {
    pub name: String,
    /// JSON list of runtime names.
    pub runtimes_json: String,
    pub package: NewPackage,
    pub deps_key: Option<String>,
    pub build_log: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A stored layer version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLayer {
    pub name: String,
    pub version: u32,
    pub runtimes_json: String,
    pub package_sha256: String,
    pub deps_key: Option<String>,
    pub build_log: Option<String>,
    pub created_at: OffsetDateTime,
}

/// What deleting a layer version came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerDelete {
    Deleted,
    NotFound,
    /// Functions whose newest or ready version lists it.
    InUse(Vec<String>),
}

const LAYER_SELECT: &str =
    "SELECT name, version, runtimes, package_sha256, deps_key, build_log, created_at FROM layer_versions";

/// The function versions that may run: each function's newest, and its newest ready one.
const CURRENT_VERSIONS: &str =
    "(l.version = (SELECT MAX(v.version) FROM function_versions v WHERE v.function = l.function)
     OR l.version = (SELECT MAX(v.version) FROM function_versions v
                     WHERE v.function = l.function AND v.status = 'ready'))";

impl Store {
    /// Stores the next version of layer `l.name` (1 for a new name) with its package;
    /// returns the version.
    pub fn create_layer_version(&self, l: &NewLayerVersion) -> Result<u32, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let latest: Option<u32> = tx.query_row(
            "SELECT MAX(version) FROM layer_versions WHERE name = ?1",
            [&l.name],
            |r| r.get(0),
        )?;
        let version = latest.unwrap_or(0) + 1;
        insert_package(&tx, &l.package, ms(l.created_at))?;
        tx.execute(
            "INSERT INTO layer_versions (name, version, runtimes, package_sha256, deps_key, build_log, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                l.name,
                version,
                l.runtimes_json,
                l.package.sha256,
                l.deps_key,
                l.build_log,
                ms(l.created_at)
            ],
        )?;
        tx.commit()?;
        Ok(version)
    }

    /// Every layer version, by name then version.
    pub fn list_layers(&self) -> Result<Vec<StoredLayer>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{LAYER_SELECT} ORDER BY name, version"))?;
        let rows = stmt.query_map([], |r| Ok(layer_row(r)))?;
        rows.map(|r| r?).collect()
    }

    pub fn get_layer_version(&self, name: &str, version: u32) -> Result<Option<StoredLayer>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{LAYER_SELECT} WHERE name = ?1 AND version = ?2"))?;
        stmt.query_row(params![name, version], |r| Ok(layer_row(r)))
            .optional()?
            .transpose()
    }

    /// Deletes a layer version unless a function's newest or ready version lists it.
    pub fn delete_layer_version(&self, name: &str, version: u32) -> Result<LayerDelete, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let users: Vec<String> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT DISTINCT l.function FROM function_version_layers l
                 WHERE l.layer = ?1 AND l.layer_version = ?2 AND {CURRENT_VERSIONS} ORDER BY l.function"
            ))?;
            let rows = stmt.query_map(params![name, version], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if !users.is_empty() {
            return Ok(LayerDelete::InUse(users));
        }
        let deleted = tx.execute(
            "DELETE FROM layer_versions WHERE name = ?1 AND version = ?2",
            params![name, version],
        )?;
        if deleted == 0 {
            return Ok(LayerDelete::NotFound);
        }
        collect_packages(&tx)?;
        tx.commit()?;
        Ok(LayerDelete::Deleted)
    }

    /// The dependency sets layers installed (the dependency cache keeps them).
    pub fn layer_deps_keys(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT DISTINCT deps_key FROM layer_versions WHERE deps_key IS NOT NULL")?;
        let keys = stmt.query_map([], |r| r.get(0))?;
        Ok(keys.collect::<Result<_, _>>()?)
    }
}

fn layer_row(r: &Row<'_>) -> Result<StoredLayer, StoreError> {
    Ok(StoredLayer {
        name: r.get(0)?,
        version: r.get(1)?,
        runtimes_json: r.get(2)?,
        package_sha256: r.get(3)?,
        deps_key: r.get(4)?,
        build_log: r.get(5)?,
        created_at: from_ms(r.get(6)?)?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{NewPackageFile, NewVersion};

    fn layer(name: &str) -> NewLayerVersion {
        NewLayerVersion {
            name: name.to_owned(),
            runtimes_json: "[\"python\"]".to_owned(),
            package: NewPackage {
                sha256: "ab".repeat(32),
                files: vec![NewPackageFile {
                    path: "python/util.py".to_owned(),
                    sha256: "cd".repeat(32),
                    content: Arc::from(&b"X = 1\n"[..]),
                }],
            },
            deps_key: None,
            build_log: None,
            created_at: from_ms(1_780_000_000_000).expect("a time"),
        }
    }

    #[test]
    fn layer_versions_count_up_and_cannot_go_while_a_current_version_lists_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.create_layer_version(&layer("shared")).expect("v1"), 1);
        assert_eq!(store.create_layer_version(&layer("shared")).expect("v2"), 2);
        assert_eq!(store.create_layer_version(&layer("other")).expect("v1"), 1);
        assert_eq!(store.list_layers().expect("list").len(), 3);
        let at = from_ms(1_780_000_000_000).expect("a time");
        let v = |version, layers: Vec<(String, u32)>| NewVersion {
            function: "f".to_owned(),
            version,
            runtime: "python".to_owned(),
            handler: "handler".to_owned(),
            code: "def handler(e, c): return 1".to_owned(),
            code_sha256: "00".to_owned(),
            spec_json: "{}".to_owned(),
            created_at: at,
            package: None,
            layers,
        };
        store
            .create_function(&v(1, vec![("shared".to_owned(), 1)]))
            .expect("create");
        assert_eq!(
            store.delete_layer_version("shared", 1).expect("delete"),
            LayerDelete::InUse(vec!["f".to_owned()])
        );
        // A newer version without it; version 1 stays the ready one, so still in use.
        crate::tests::set_ready(&store, "f", 1);
        store.add_version(&v(2, Vec::new())).expect("v2");
        assert!(matches!(
            store.delete_layer_version("shared", 1).expect("delete"),
            LayerDelete::InUse(_)
        ));
        crate::tests::set_ready(&store, "f", 2);
        assert_eq!(
            store.delete_layer_version("shared", 1).expect("delete"),
            LayerDelete::Deleted
        );
        assert_eq!(
            store.delete_layer_version("shared", 1).expect("again"),
            LayerDelete::NotFound
        );
        assert!(
            store.get_layer_version("shared", 2).expect("get").is_some(),
            "the package is kept for v2"
        );
        assert!(store.package_files(&"ab".repeat(32)).expect("files").is_some());
        store.delete_layer_version("shared", 2).expect("delete");
        store.delete_layer_version("other", 1).expect("delete");
        assert!(
            store.package_files(&"ab".repeat(32)).expect("files").is_none(),
            "collected"
        );
    }
}

//! Layers: publishing versions (with their dependencies installed, when they name any),
//! reading and deleting them, checking a function's list, and finding the folders an
//! instance shows under `/opt`.

use std::path::PathBuf;
use std::sync::Arc;

use ignis_core::package::FileEntry;
use ignis_core::{FunctionSpec, LayerRef, NewLayer};
use ignis_store::{BuildStatus, LayerDelete, NewLayerVersion, StoredLayer};
use serde::Serialize;
use utoipa::ToSchema;

use crate::builds::LiveBuild;
use crate::lifecycle::{new_package, now_ms};
use crate::packages::file_entries;
use crate::view::rfc3339;
use crate::{ControlError, Platform};

/// One layer version as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LayerView {
    pub name: String,
    pub version: u32,
    /// The runtimes whose functions may list it.
    pub runtimes: Vec<String>,
    /// How a function lists it: `name:version`.
    #[schema(example = "shared:1")]
    pub reference: String,
    pub package_sha256: String,
    /// The layer's files (on `GET` of one version).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::view::schema::PackageFile>>)]
    pub files: Option<Vec<FileEntry>>,
    /// The dependencies it installed (`requirements.txt` into `python/`, `package.json`
    /// into `nodejs/`): the installer's output; null when it installs none.
    pub build_log: Option<String>,
    pub created_at: String,
}

/// The runtimes a stored layer is for; a row that does not say is a corrupt store, not a
/// layer for no runtime.
fn runtimes_of(l: &StoredLayer) -> Result<Vec<String>, ControlError> {
    serde_json::from_str(&l.runtimes_json).map_err(|e| {
        ControlError::Store(ignis_store::StoreError::Corrupt(format!(
            "layer {}:{} has runtimes {:?}: {e}",
            l.name, l.version, l.runtimes_json
        )))
    })
}

impl LayerView {
    fn of(l: StoredLayer) -> Result<LayerView, ControlError> {
        Ok(LayerView {
            reference: format!("{}:{}", l.name, l.version),
            runtimes: runtimes_of(&l)?,
            name: l.name,
            version: l.version,
            package_sha256: l.package_sha256,
            files: None,
            build_log: l.build_log,
            created_at: rfc3339(l.created_at),
        })
    }
}

impl Platform {
    /// Publishes the next version of a layer. Its dependencies, if it names any, are
    /// installed first (the answer waits); a failed install stores nothing.
    pub async fn create_layer(&self, new: NewLayer) -> Result<LayerView, ControlError> {
        let (packages, store, package) = (self.packages.clone(), self.store.clone(), new.package.clone());
        let dir =
            tokio::task::spawn_blocking(move || packages.ensure(&store, package.sha256(), Some(&package)))
                .await??;
        let (runtimes, host) = (new.runtimes.clone(), self.host.runtimes.clone());
        let plan_dir = dir.clone();
        let plan = tokio::task::spawn_blocking(move || crate::deps::plan_layer(&runtimes, &plan_dir, &host))
            .await?
            .map_err(ControlError::LayerBuild)?;
        let (deps_key, build_log) = match plan {
            None => (None, None),
            Some(plan) => {
                let live = Arc::new(LiveBuild::new(new.name.as_str(), 0, &plan));
                let built = self.run_build(&plan, &live).await;
                let record = live.finish(
                    if built.is_ok() {
                        BuildStatus::Succeeded
                    } else {
                        BuildStatus::Failed
                    },
                    built.as_ref().err().cloned(),
                );
                if let Err(e) = built {
                    return Err(ControlError::LayerBuild(format!(
                        "installing the layer's dependencies failed: {e}; the installer's output:\n{}",
                        record.log
                    )));
                }
                (Some(plan.key), Some(record.log))
            }
        };
        let names: Vec<&str> = new.runtimes.iter().map(|r| r.as_str()).collect();
        let version = NewLayerVersion {
            name: new.name.as_str().to_owned(),
            runtimes_json: serde_json::to_string(&names).map_err(|e| ControlError::Io(e.into()))?,
            package: (*new_package(&new.package)).clone(),
            deps_key,
            build_log,
            created_at: now_ms(),
        };
        let store = self.store.clone();
        let stored = crate::blocking(move || {
            let v = store.create_layer_version(&version)?;
            store.get_layer_version(&version.name, v)
        })
        .await?
        .ok_or_else(|| ControlError::Io(std::io::Error::other("a layer version just stored is missing")))?;
        let mut view = LayerView::of(stored)?;
        view.files = Some(new.package.entries());
        Ok(view)
    }

    /// Every layer version.
    pub async fn list_layers(&self) -> Result<Vec<LayerView>, ControlError> {
        let store = self.store.clone();
        let all = crate::blocking(move || store.list_layers()).await?;
        all.into_iter().map(LayerView::of).collect()
    }

    /// One layer version with its files.
    pub async fn get_layer(&self, name: &str, version: u32) -> Result<LayerView, ControlError> {
        let store = self.store.clone();
        let owned = name.to_owned();
        let found = crate::blocking(move || {
            let Some(l) = store.get_layer_version(&owned, version)? else {
                return Ok(None);
            };
            let files = store.package_files(&l.package_sha256)?.unwrap_or_default();
            Ok(Some((l, files)))
        })
        .await?;
        let (l, files) = found.ok_or_else(|| ControlError::LayerNotFound(format!("{name}:{version}")))?;
        let mut view = LayerView::of(l)?;
        view.files = Some(file_entries(files));
        Ok(view)
    }

    /// Deletes a layer version no function's newest or ready version lists.
    pub async fn delete_layer(&self, name: &str, version: u32) -> Result<(), ControlError> {
        // Under the lock of function changes: a function cannot start listing it meanwhile.
        let _guard = self.changes.lock().await;
        let store = self.store.clone();
        let owned = name.to_owned();
        match crate::blocking(move || store.delete_layer_version(&owned, version)).await? {
            LayerDelete::Deleted => Ok(()),
            LayerDelete::NotFound => Err(ControlError::LayerNotFound(format!("{name}:{version}"))),
            LayerDelete::InUse(functions) => Err(ControlError::LayerInUse {
                layer: format!("{name}:{version}"),
                functions,
            }),
        }
    }

    /// Refuses a spec listing a layer that does not exist or is not for its runtime.
    /// Called under the `changes` lock, which layer deletes also take.
    pub(crate) async fn check_layers(&self, spec: &FunctionSpec) -> Result<(), ControlError> {
        if spec.layers.is_empty() {
            return Ok(());
        }
        if !self.host.sandboxed {
            return Err(ControlError::LayersUnavailable(
                "layers are shown at /opt inside the sandbox; this server runs --insecure-no-sandbox"
                    .to_owned(),
            ));
        }
        let refs = spec.layers.clone();
        let store = self.store.clone();
        let found = crate::blocking(move || {
            refs.iter()
                .map(|r| Ok((r.clone(), store.get_layer_version(r.name.as_str(), r.version)?)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        for (r, stored) in found {
            let Some(stored) = stored else {
                return Err(ControlError::UnknownLayer(r.to_string()));
            };
            let runtimes = runtimes_of(&stored)?;
            if !runtimes.iter().any(|x| x == spec.runtime.as_str()) {
                return Err(ControlError::LayerRuntime {
                    layer: r.to_string(),
                    runtime: spec.runtime,
                    runtimes,
                });
            }
        }
        Ok(())
    }

    /// The host folders of `layers`, for the overlay at `/opt`: the first on top, so the
    /// last listed layer wins as on Lambda; each layer's files over its dependencies.
    pub(crate) async fn layer_dirs(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>, String> {
        let mut dirs = Vec::new();
        for r in layers.iter().rev() {
            let store = self.store.clone();
            let (name, version) = (r.name.as_str().to_owned(), r.version);
            let stored = crate::blocking(move || store.get_layer_version(&name, version))
                .await
                .map_err(|e| format!("reading layer {r}: {e}"))?
                .ok_or_else(|| format!("layer {r} no longer exists"))?;
            let (packages, store, sha) = (
                self.packages.clone(),
                self.store.clone(),
                stored.package_sha256.clone(),
            );
            let dir = tokio::task::spawn_blocking(move || packages.ensure(&store, &sha, None))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("unpacking layer {r}: {e}"))?;
            dirs.push(dir);
            if let Some(key) = &stored.deps_key {
                let deps = self
                    .deps
                    .find(key)
                    .ok_or_else(|| format!("the dependencies layer {r} installed are no longer in the cache; publish the layer again"))?;
                dirs.push(deps);
            }
        }
        Ok(dirs)
    }
}

//! What the API shows of a function.

use std::collections::BTreeMap;

use ignis_core::FunctionState;
use ignis_pool::InstanceCounts;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::scheduler::{schedule_view, ScheduleView};
use crate::Slot;

/// A function as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Function)]
pub struct FunctionView {
    pub name: String,
    /// `python`, `javascript` or `typescript`.
    #[schema(value_type = String)]
    pub runtime: &'static str,
    pub handler: String,
    pub version: u32,
    pub active_version: Option<u32>,
    #[schema(value_type = schema::FunctionState)]
    pub state: FunctionState,
    pub state_reason: Option<String>,
    /// Set while the newest version's code failed to load: what and where.
    pub deploy_error: Option<DeployError>,
    pub code_sha256: String,
    /// The package's hash, for a function of several files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_sha256: Option<String>,
    /// A package's files (path, size, sha256), in `GET /v1/functions/{name}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<schema::PackageFile>>)]
    pub files: Option<Vec<ignis_core::package::FileEntry>>,
    pub timeout_secs: u32,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub env: BTreeMap<String, String>,
    /// `none` or `outbound`.
    #[schema(value_type = String)]
    pub network: &'static str,
    /// `process` or `microvm`.
    #[schema(value_type = String)]
    pub isolation: &'static str,
    pub min_instances: u32,
    pub max_instances: u32,
    pub concurrency: u32,
    pub idle_timeout_secs: u32,
    #[schema(value_type = schema::HttpSettings)]
    pub http: ignis_core::http::HttpSettings,
    #[schema(value_type = schema::RetrySettings)]
    pub retry: ignis_core::events::RetrySettings,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    /// The effective value (the default when the spec leaves it out).
    pub max_async_concurrency: u32,
    /// Each with its next fire time.
    pub schedules: Vec<ScheduleView>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[schema(value_type = schema::InstanceCounts)]
    pub instances: InstanceCounts,
    /// In `GET /v1/functions/{name}` only: the newest version's settings in exactly the shape
    /// `PUT /v1/functions/{name}` accepts, without the code (an update without code keeps
    /// it). Sending it back unchanged makes a version with the same settings; a field that
    /// follows a server default is left out and named in `defaulted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub spec: Option<serde_json::Value>,
    /// The settings that follow a server default rather than a value the function set
    /// (`max_async_concurrency`: half of `max_instances × concurrency`), left out of `spec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defaulted: Option<Vec<&'static str>>,
}

/// The settings of `spec` as an update body takes them: every field but the code (and the
/// package's hash, which is not a field of the body); a field that follows a default is
/// left out, and named in the second value.
fn update_body(spec: &ignis_core::FunctionSpec) -> (serde_json::Value, Vec<&'static str>) {
    // A spec is strings, numbers, maps with string keys and lists: it always serializes.
    let mut body = serde_json::to_value(spec).expect("a function spec serializes to JSON");
    if let Some(fields) = body.as_object_mut() {
        fields.remove("package_sha256");
    }
    let defaulted = if spec.max_async_concurrency.is_none() {
        vec!["max_async_concurrency"]
    } else {
        Vec::new()
    };
    (body, defaulted)
}

/// Why a version's code failed to load, with the line to blame when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct DeployError {
    pub version: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub line: Option<u32>,
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl FunctionView {
    /// Adds the settings as an update body takes them (`spec`, `defaulted`), as a create or
    /// an update answers, so a client can change one setting and send them back.
    pub(crate) fn with_spec(mut self, slot: &Slot) -> FunctionView {
        let (body, defaulted) = update_body(&slot.status().latest);
        self.spec = Some(body);
        self.defaulted = Some(defaulted);
        self
    }

    /// `detail` adds the code (for `GET /v1/functions/{name}`).
    pub(crate) fn of(slot: &Slot, detail: bool, now: time::OffsetDateTime) -> FunctionView {
        let s = slot.status();
        let active = slot.active.load();
        let spec = &s.latest;
        let body = detail.then(|| update_body(spec));
        FunctionView {
            name: spec.name.as_str().to_owned(),
            runtime: spec.runtime.as_str(),
            handler: spec.handler.clone(),
            version: s.latest_version,
            active_version: active.as_ref().map(|a| a.version),
            state: s.state,
            state_reason: s.reason.clone(),
            deploy_error: s.deploy_error.clone(),
            code_sha256: s.latest_sha256.clone(),
            package_sha256: spec.package_sha256.clone(),
            files: None,
            timeout_secs: spec.timeout_secs,
            memory_mb: spec.memory_mb,
            vcpus: spec.vcpus,
            env: spec.env.clone(),
            network: spec.network.as_str(),
            isolation: spec.isolation.as_str(),
            min_instances: spec.min_instances,
            max_instances: spec.max_instances,
            concurrency: spec.concurrency,
            idle_timeout_secs: spec.idle_timeout_secs,
            http: spec.http.clone(),
            retry: spec.retry,
            on_success: spec.on_success.as_ref().map(|n| n.as_str().to_owned()),
            on_failure: spec.on_failure.as_ref().map(|n| n.as_str().to_owned()),
            max_async_concurrency: spec.async_concurrency(),
            schedules: spec.schedules.iter().map(|s| schedule_view(s, now)).collect(),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
            code: (detail && spec.package_sha256.is_none()).then(|| spec.code.clone()),
            instances: active.as_ref().map(|a| a.pool.counts()).unwrap_or_default(),
            spec: body.as_ref().map(|(b, _)| b.clone()),
            defaulted: body.map(|(_, d)| d),
        }
    }
}

impl crate::Platform {
    pub fn list(&self) -> Vec<FunctionView> {
        let table = self.table.load();
        let now = self.clock.now();
        let mut views: Vec<FunctionView> = table.values().map(|s| FunctionView::of(s, false, now)).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// Whether `name` exists (a table lookup; no view is built).
    pub fn exists(&self, name: &str) -> bool {
        self.slot(name).is_some()
    }

    pub fn get(&self, name: &str) -> Option<FunctionView> {
        self.slot(name)
            .map(|s| FunctionView::of(&s, true, self.clock.now()))
    }
}

/// The OpenAPI description of the types of `core` and `pool` that answers carry: `core`
/// stays free of the derive. Each mirrors its type's serde form; the API's schemathesis
/// run checks every answer against them.
pub mod schema {
    use utoipa::ToSchema;

    /// One file of a function's package.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct PackageFile {
        /// Relative to the package root, `/` separated.
        pub path: String,
        /// In bytes.
        pub size: u64,
        /// Of the file's content, in hex.
        pub sha256: String,
    }

    /// Where a function is in its lifecycle.
    #[derive(ToSchema)]
    #[schema(rename_all = "snake_case")]
    #[allow(dead_code)]
    pub enum FunctionState {
        Creating,
        Deploying,
        Ready,
        Error,
    }

    /// Who may call a function's URL: the server's token, or anyone.
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    #[allow(dead_code)]
    pub enum HttpAuth {
        Token,
        None,
    }

    /// A function's CORS rules.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct Cors {
        pub allow_origins: Vec<String>,
        pub allow_methods: Vec<String>,
        pub allow_headers: Vec<String>,
        pub expose_headers: Vec<String>,
        pub max_age_secs: u32,
        pub allow_credentials: bool,
    }

    /// A function's `http` settings (its function URL).
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct HttpSettings {
        pub auth: HttpAuth,
        #[schema(required = false)]
        pub cors: Option<Cors>,
    }

    /// How failed attempts of an asynchronous invocation are retried.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct RetrySettings {
        pub max_retries: u32,
        pub max_event_age_secs: u32,
    }

    /// The instances of a function's active version.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct InstanceCounts {
        pub starting: u64,
        pub idle: u64,
        pub busy: u64,
    }
}

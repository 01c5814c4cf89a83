//! The web console: its own files are built into the binary; Monaco is served from the
//! `monaco-editor` npm package that `make tools` installs. Nothing comes from a CDN. The
//! console's JavaScript is native ES modules, each file served with a JavaScript content
//! type (browsers refuse a module without one) under the same CSP (`script-src 'self'`).

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::{ApiError, AppState, Path};

/// Where the console's files come from.
#[derive(Debug, Clone, Default)]
pub struct ConsoleConfig {
    /// The `min` folder of the `monaco-editor` package (holding `vs/loader.js`). Without
    /// it the console edits code in a plain text area and says why.
    pub monaco_dir: Option<PathBuf>,
    /// For working on the console: serve its files from this folder instead of the copies
    /// built into the binary.
    pub files_dir: Option<PathBuf>,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Builds the table of the console's own files: each is built into the binary from
/// `console/<name>`, and served at `/console/<name>` (`index.html` also at `/`).
macro_rules! built_in {
    ($($name:literal => $kind:expr),* $(,)?) => {
        &[$(($name, $kind, include_str!(concat!("../../../console/", $name)))),*]
    };
}

/// The console's own files, built into the binary: (name, content type, content). The
/// JavaScript is native ES modules (`app.js` imports the modules under `js/`), so every
/// module is listed here; a test checks the list against the folder.
const FILES: &[(&str, &str, &str)] = built_in![
    "index.html" => HTML,
    "app.css" => CSS,
    "app.js" => JS,
    "js/api.js" => JS,
    "js/build-log.js" => JS,
    "js/chart.js" => JS,
    "js/dom.js" => JS,
    "js/editor.js" => JS,
    "js/files-editor.js" => JS,
    "js/format.js" => JS,
    "js/login.js" => JS,
    "js/page-create.js" => JS,
    "js/page-function.js" => JS,
    "js/page-list.js" => JS,
    "js/page-playground.js" => JS,
    "js/page.js" => JS,
    "js/response.js" => JS,
    "js/router.js" => JS,
    "js/runtimes.js" => JS,
    "js/spec.js" => JS,
    "js/tab-config.js" => JS,
    "js/tab-invocations.js" => JS,
    "js/tab-invoke.js" => JS,
    "js/tab-logs.js" => JS,
    "js/tab-metrics.js" => JS,
    "js/widgets.js" => JS,
    "js/zip.js" => JS,
];

/// Monaco builds its workers from blob URLs and injects its styles; nothing else may load
/// from anywhere but this server.
const CSP: &str = "default-src 'self'; script-src 'self'; worker-src 'self' blob:; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", axum::routing::get(index))
        .route("/console/monaco/{*path}", axum::routing::get(monaco))
        .route("/console/{file}", axum::routing::get(file))
        .route("/console/js/{file}", axum::routing::get(module))
}

async fn index(State(s): State<AppState>) -> Response {
    serve_file(&s, "index.html").await
}

async fn file(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    serve_file(&s, &name).await
}

async fn module(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    serve_file(&s, &format!("js/{name}")).await
}

async fn serve_file(s: &AppState, name: &str) -> Response {
    let Some(&(_, kind, built_in)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found(format!("the console has no file {name:?}")).into_response();
    };
    let body = match &s.config.console.files_dir {
        None => built_in.to_owned(),
        Some(dir) => match tokio::fs::read_to_string(dir.join(name)).await {
            Ok(text) => text,
            Err(e) => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("cannot read {}: {e}", dir.join(name).display()),
                )
                .into_response()
            }
        },
    };
    let mut resp = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            // The console changes with the binary: always revalidate.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response();
    secure(&mut resp);
    resp
}

async fn monaco(State(s): State<AppState>, Path(path): Path<String>) -> Response {
    let Some(dir) = &s.config.console.monaco_dir else {
        return ApiError::not_found(
            "Monaco is not installed: run `make tools` (it installs the monaco-editor npm package)",
        )
        .into_response();
    };
    // ServeDir refuses `..` and absolute paths; it answers 404 for anything missing.
    let req = axum::http::Request::get(format!("/{path}"))
        .body(axum::body::Body::empty())
        .map_err(|e| crate::error::internal(&e));
    let req = match req {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match ServeDir::new(dir).oneshot(req).await {
        Ok(resp) => {
            let mut resp = resp.into_response();
            if resp.status() == StatusCode::NOT_FOUND {
                return ApiError::not_found(format!("Monaco has no file {path:?}")).into_response();
            }
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            secure(&mut resp);
            resp
        }
        Err(e) => crate::error::internal(&e).into_response(),
    }
}

fn secure(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::FILES;

    /// The console's files on disk (its tests and the type-checking config aside), as the
    /// names `FILES` uses.
    fn files_on_disk() -> BTreeSet<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../console");
        let mut found = BTreeSet::new();
        for dir in ["", "js"] {
            let entries = std::fs::read_dir(root.join(dir)).expect("console/ is readable");
            for entry in entries {
                let entry = entry.expect("a directory entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().expect("a file type").is_dir() || name == "tsconfig.json" {
                    continue;
                }
                found.insert(if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                });
            }
        }
        found
    }

    #[test]
    fn every_console_file_is_built_in_and_every_module_preloaded_and_served_as_javascript() {
        let listed: BTreeSet<String> = FILES.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        assert_eq!(
            listed,
            files_on_disk(),
            "FILES must list exactly the files in console/ and console/js/"
        );
        let index = FILES
            .iter()
            .find(|(n, _, _)| *n == "index.html")
            .map(|(_, _, c)| *c)
            .expect("index.html is built in");
        for (name, kind, content) in FILES {
            if let Some(module) = name.strip_prefix("js/") {
                let preload = format!("<link rel=\"modulepreload\" href=\"/console/js/{module}\">");
                assert!(index.contains(&preload), "index.html does not preload {name}");
            }
            if name.ends_with(".js") {
                assert!(kind.starts_with("text/javascript"), "{name}: {kind}");
                assert!(content.starts_with("// @ts-check"), "{name} is not type-checked");
            }
        }
    }
}

//! The console as native ES modules: every module the page loads, followed through its
//! imports from `index.html`, is served by Ignis itself as JavaScript under the console's CSP.

use std::collections::{BTreeSet, VecDeque};

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::Server;

/// The relative imports (`from './x.js'`) of a module's source.
fn imports(source: &str) -> Vec<String> {
    source
        .split("from '")
        .skip(1)
        .filter_map(|rest| rest.split('\'').next())
        .filter(|target| target.starts_with("./"))
        .map(str::to_owned)
        .collect()
}

/// `target` (`./x.js`) resolved against the module at `from` (`/console/js/y.js`).
fn resolve(from: &str, target: &str) -> String {
    let dir = &from[..from.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{}", target.trim_start_matches("./"))
}

#[test]
fn every_console_module_is_served_as_javascript_under_the_csp() {
    let s = Server::start_with(Some("s3cret"), &[]);
    let plain = reqwest::blocking::Client::new();
    let html = plain
        .get(format!("{}/", s.url))
        .send()
        .expect("GET /")
        .text()
        .expect("body");
    let entry = "<script type=\"module\" src=\"/console/app.js\">";
    assert!(html.contains(entry), "the page loads app.js as a module: {html}");

    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from(["/console/app.js".to_owned()]);
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        // The modules are public, like the page: no token needed.
        let r = plain.get(format!("{}{path}", s.url)).send().expect("GET");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        // Browsers refuse a module script without a JavaScript MIME type.
        assert!(
            header("content-type").starts_with("text/javascript"),
            "{path}: {}",
            header("content-type")
        );
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let source = r.text().expect("body");
        assert!(source.starts_with("// @ts-check"), "{path}");
        for target in imports(&source) {
            queue.push_back(resolve(&path, &target));
        }
    }
    // The entry reaches the router, every page and every function tab.
    for module in [
        "/console/js/router.js",
        "/console/js/page-list.js",
        "/console/js/page-function.js",
        "/console/js/page-create.js",
        "/console/js/page-playground.js",
        "/console/js/tab-invoke.js",
        "/console/js/tab-config.js",
        "/console/js/tab-invocations.js",
        "/console/js/tab-logs.js",
        "/console/js/tab-metrics.js",
        "/console/js/editor.js",
        "/console/js/api.js",
    ] {
        assert!(seen.contains(module), "{module} not reached: {seen:?}");
    }

    // Only the built-in files: nothing else under js/, and no way out of it.
    for path in [
        "/console/js/nope.js",
        "/console/js/..%2fapp.js",
        "/console/js/%2e%2e%2f%2e%2e%2fCargo.toml",
    ] {
        let r = plain.get(format!("{}{path}", s.url)).send().expect("GET");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = r.json().expect("JSON error");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

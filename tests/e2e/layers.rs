//! Layers end to end: a Python layer shared by two functions (on `sys.path` from
//! `/opt/python`), a JavaScript layer resolvable from `/opt/nodejs/node_modules`, two
//! layers in Lambda's order (the later one's file wins), a layer whose
//! `requirements.txt` is installed into `python/`, deleting a layer in use refused (409)
//! until no function lists it, and bad references refused at create.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::Server;

fn publish(s: &Server, body: Value) -> Value {
    let a = s.post("/v1/layers", body.to_string());
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.json()
}

fn delete(s: &Server, path: &str) -> crate::harness::Answer {
    s.send(s.request(Method::DELETE, path))
}

#[test]
fn a_layer_is_shared_by_functions_and_cannot_be_deleted_while_they_use_it() {
    let s = Server::start();
    let v1 = publish(
        &s,
        json!({"name": "shared", "runtimes": ["python"], "files": {
            "python/shared_util.py": "WHO = 'layer v1'\n",
            "python/override.py": "SOURCE = 'shared'\n",
        }}),
    );
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["reference"], "shared:1");
    let v2 = publish(
        &s,
        json!({"name": "shared", "runtimes": ["python"], "files": {"python/shared_util.py": "WHO = 'layer v2'\n"}}),
    );
    assert_eq!(v2["version"], 2, "a known name gets its next version");
    publish(
        &s,
        json!({"name": "late", "runtimes": ["python"], "files": {"python/override.py": "SOURCE = 'late'\n"}}),
    );

    let app = r#"
import os, sys, shared_util, override

def handler(event, context):
    return {"who": shared_util.WHO, "file": shared_util.__file__, "override": override.SOURCE,
            "opt": sorted(os.listdir("/opt")), "code_first": sys.path.index("/code") < sys.path.index("/opt/python")}
"#;
    for (name, layers) in [
        ("one", json!(["shared:1"])),
        ("two", json!(["shared:1", "late:1"])),
    ] {
        let a = s.create(
            &json!({"name": name, "runtime": "python", "handler": "app.handler",
                                 "files": {"app.py": app}, "layers": layers}),
        );
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        assert_eq!(a.json()["state"], "ready", "{}", a.body);
        assert_eq!(
            a.json()["spec"]["layers"],
            layers,
            "the spec round-trips its layers"
        );
    }
    let one = s.invoke("one", "{}").json();
    assert_eq!(one["who"], "layer v1");
    assert_eq!(one["file"], "/opt/python/shared_util.py");
    assert_eq!(one["override"], "shared");
    assert_eq!(one["code_first"], true);
    let two = s.invoke("two", "{}").json();
    assert_eq!(
        two["override"], "late",
        "the later layer's file wins, as on Lambda: {two}"
    );
    assert_eq!(two["who"], "layer v1");

    // In use by both: refused, naming them; nothing deleted.
    let a = delete(&s, "/v1/layers/shared/versions/1");
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.error_code(), "layer_in_use");
    assert_eq!(a.json()["error"]["functions"], json!(["one", "two"]));
    assert_eq!(s.get("/v1/layers/shared/versions/1").status, StatusCode::OK);
    // Moved to version 2 and the other function gone: the version can go.
    let a = s.update(
        "one",
        &json!({"runtime": "python", "handler": "app.handler", "layers": ["shared:2", "late:1"]}),
    );
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    assert_eq!(a.json()["active_version"], 2, "{}", a.body);
    assert_eq!(s.invoke("one", "{}").json()["who"], "layer v2");
    assert_eq!(delete(&s, "/v1/functions/two").status, StatusCode::NO_CONTENT);
    assert_eq!(
        delete(&s, "/v1/layers/shared/versions/1").status,
        StatusCode::NO_CONTENT
    );
    let a = s.get("/v1/layers/shared/versions/1");
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::NOT_FOUND, "layer_not_found".to_owned())
    );
    let listed: Vec<String> = s.get("/v1/layers").json()["layers"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| l["reference"].as_str().expect("a reference").to_owned())
        .collect();
    assert_eq!(listed, ["late:1", "shared:2"]);
    let got = s.get("/v1/layers/shared/versions/2").json();
    assert_eq!(got["files"][0]["path"], "python/shared_util.py");
}

#[test]
fn javascript_layers_resolve_and_requirements_install_into_python() {
    let s = Server::start_with(None, &["--deps-cache", &crate::dependencies::shared_cache()]);
    publish(
        &s,
        json!({"name": "greeter", "runtimes": ["javascript", "typescript"], "files": {
            "nodejs/node_modules/greeter/package.json": "{\"name\": \"greeter\", \"main\": \"index.js\"}",
            "nodejs/node_modules/greeter/index.js": "module.exports.greet = (n) => `hello ${n} from a layer`;\n",
        }}),
    );
    let a = s.create(&json!({"name": "hi", "runtime": "typescript", "handler": "index.handler", "layers": ["greeter:1"],
        "files": {"index.ts": "import { greet } from \"greeter\";\nexport const handler = async (e: { n: string }) => ({ said: greet(e.n) });\n"}}));
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    assert_eq!(
        s.invoke("hi", r#"{"n": "ada"}"#).json()["said"],
        "hello ada from a layer"
    );

    // A layer that installs its requirements: into python/, on the path of its users.
    let jwt = publish(
        &s,
        json!({"name": "jwt", "runtimes": ["python"], "files": {"requirements.txt": "pyjwt==2.9.0\n"}}),
    );
    let log = jwt["build_log"].as_str().expect("a build log");
    // The shared cache may hold the set from an earlier run.
    assert!(
        log.contains("pyjwt==2.9.0") || log.contains("found in the cache"),
        "{jwt}"
    );
    let a = s.create(&json!({"name": "signs", "runtime": "python", "handler": "app.handler", "layers": ["jwt:1"],
        "files": {"app.py": "import jwt\n\ndef handler(e, c):\n    return {'file': jwt.__file__, 'v': jwt.__version__}\n"}}));
    assert_eq!(a.json()["state"], "ready", "{}", a.body);
    let out = s.invoke("signs", "{}").json();
    assert_eq!(out["v"], "2.9.0");
    assert!(
        out["file"]
            .as_str()
            .expect("a path")
            .starts_with("/opt/python/jwt/"),
        "{out}"
    );

    let bad = s.post(
        "/v1/layers",
        json!({"name": "broken", "runtimes": ["python"],
        "files": {"requirements.txt": "ignis-no-such-package-3f9c1e==1.0\n"}})
        .to_string(),
    );
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.error_code(), "layer_build_failed");
    assert_eq!(
        s.get("/v1/layers/broken/versions/1").status,
        StatusCode::NOT_FOUND,
        "nothing stored"
    );
}

#[test]
fn bad_layer_references_are_refused_and_store_nothing() {
    let s = Server::start();
    publish(
        &s,
        json!({"name": "pyonly", "runtimes": ["python"], "files": {"python/x.py": "X = 1\n"}}),
    );
    let code = "export const handler = async () => 1;\n";
    for (layers, status, code_) in [
        (
            json!(["missing:1"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "layer_not_found",
        ),
        (
            json!(["pyonly:1"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "layer_runtime_mismatch",
        ),
        (
            json!(["pyonly"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
        (
            json!(["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        ),
    ] {
        let a = s.create(&json!({"name": "js", "runtime": "javascript", "code": code, "layers": layers}));
        assert_eq!(
            (a.status, a.error_code()),
            (status, code_.to_owned()),
            "{layers}: {}",
            a.body
        );
        assert_eq!(a.json()["error"]["field"], "layers");
        assert_eq!(
            s.get("/v1/functions/js").status,
            StatusCode::NOT_FOUND,
            "nothing stored"
        );
    }
    let a = s.post(
        "/v1/layers",
        json!({"name": "x y", "runtimes": ["python"], "files": {"a": "b"}}).to_string(),
    );
    assert_eq!(
        (a.status, a.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_value".to_owned())
    );
}

//! Idempotency keys at the HTTP edge: the answer of a synchronous call with a key is kept
//! (its status, headers and body) and answered again to a repeat; control decides when a
//! call is a repeat and for how long a key lives.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use ignis_control::{Replay, SyncOnce};
use ignis_core::response::FRAMING_HEADERS;
use serde_json::{json, Value};

use crate::answers::Accepted;
use crate::error::{internal, store_error};
use crate::{ApiError, AppState};

/// A synchronous invocation with an idempotency key: the first call with the key runs
/// `run` (a repeat meanwhile waits for it) and its answer is kept for the key's lifetime;
/// a repeat gets that answer.
pub(crate) async fn invoke_sync_once(
    s: &AppState,
    name: &str,
    key: String,
    run: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    let first = match s
        .platform
        .invoke_once(name, key)
        .await
        .map_err(|e| store_error(&e))?
    {
        SyncOnce::Replay(r) => return replay(r),
        SyncOnce::First(first) => first,
    };
    let resp = run.await?;
    // Only an invocation that ran is remembered: a throttle or a missing function is not.
    let Some(id) = resp
        .headers()
        .get("x-ignis-invocation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(resp);
    };
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| internal(&e))?;
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .filter_map(|(n, v)| Some(json!([n.as_str(), v.to_str().ok()?])))
        .collect();
    let reply = json!({
        "status": parts.status.as_u16(),
        "headers": headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&bytes),
    })
    .to_string();
    match first.remember(&id, reply).await {
        Ok(()) => {}
        // The function ran: its answer goes back even if the disk cannot keep it for a
        // replay (a retry with this key then runs it again).
        Err(e) if e.is_disk_full() => {
            tracing::warn!(
                function = name,
                "idempotency key not remembered: the disk is full"
            );
        }
        Err(e) => return Err(store_error(&e)),
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The answer to a repeated idempotency key: the first invocation's.
pub(crate) fn replay(first: Replay) -> Result<Response, ApiError> {
    let reply = match first {
        Replay::Async {
            invocation_id,
            status,
        } => {
            let status = status.map_or("deleted", |s| s.as_str());
            let accepted = Accepted {
                invocation_id,
                status: status.to_owned(),
                redrive_of: None,
            };
            return Ok(accepted.response(true));
        }
        Replay::Sync { reply, .. } => reply,
    };
    let reply: Value =
        serde_json::from_str(&reply).map_err(|_| internal(&"a stored idempotent reply is unreadable"))?;
    let status = reply["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = base64::engine::general_purpose::STANDARD
        .decode(reply["body"].as_str().unwrap_or(""))
        .map_err(|e| internal(&e))?;
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    for (n, v) in replayed_headers(&reply["headers"]) {
        resp.headers_mut().append(n, v);
    }
    resp.headers_mut()
        .insert("x-ignis-idempotent-replay", HeaderValue::from_static("true"));
    Ok(resp)
}

/// The headers of a stored reply (`[[name, value], ...]`) to answer again. The server
/// frames the replayed body itself: framing and connection headers are dropped (a reply
/// stored by an older version may hold a handler's).
fn replayed_headers(stored: &Value) -> Vec<(HeaderName, HeaderValue)> {
    let pairs = stored.as_array().into_iter().flatten();
    pairs
        .filter_map(|pair| {
            let (n, v) = (pair[0].as_str()?, pair[1].as_str()?);
            if FRAMING_HEADERS.contains(&n.to_ascii_lowercase().as_str()) {
                return None;
            }
            Some((HeaderName::try_from(n).ok()?, HeaderValue::try_from(v).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_never_carries_stored_framing_headers() {
        let stored = json!([
            ["content-length", "2"],
            ["Transfer-Encoding", "chunked"],
            ["connection", "close"],
            ["upgrade", "h2c"],
            ["content-type", "text/plain"],
            ["x-ignis-invocation-id", "abc"],
            ["set-cookie", "a=1"],
            ["set-cookie", "b=2"],
            ["bad name", "x"],
        ]);
        let kept: Vec<(String, String)> = replayed_headers(&stored)
            .into_iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
            .collect();
        let want = [
            ("content-type", "text/plain"),
            ("x-ignis-invocation-id", "abc"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(kept, want);
    }
}

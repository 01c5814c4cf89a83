//! Query and path parameters, checked in one place: every route names the query
//! parameters it takes (a type implementing [`Params`]) and anything else, a repeat, or a
//! value out of range is refused with the API's error shape, naming the parameter.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{Object, ObjectBuilder, Required, Type};

use crate::ApiError;

/// The query parameters of one route.
pub(crate) trait Params: Sized {
    /// Every parameter the route takes; any other is refused with `unknown_parameter`.
    const NAMES: &'static [&'static str];

    /// Reads the values, checking each against its accepted range.
    fn read(q: &Pairs) -> Result<Self, ApiError>;
}

/// An extractor for a route's query parameters, read as `T`. Function URLs do not use it:
/// their query string belongs to the function.
pub(crate) struct Query<T>(pub T);

impl<S: Send + Sync, T: Params> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let pairs = Pairs::parse(parts.uri.query(), T::NAMES)?;
        T::read(&pairs).map(Query)
    }
}

/// For routes that take no query parameter.
pub(crate) struct NoParams;

impl Params for NoParams {
    const NAMES: &'static [&'static str] = &[];

    fn read(_: &Pairs) -> Result<NoParams, ApiError> {
        Ok(NoParams)
    }
}

/// `limit`: a whole number from 1 to `MAX`, `DEFAULT` when absent.
pub(crate) struct Limit<const DEFAULT: usize, const MAX: usize>(pub usize);

impl<const DEFAULT: usize, const MAX: usize> Params for Limit<DEFAULT, MAX> {
    const NAMES: &'static [&'static str] = &["limit"];

    fn read(q: &Pairs) -> Result<Self, ApiError> {
        q.int("limit", DEFAULT, MAX).map(Limit)
    }
}

/// `?wait=true` on create and update: answer once the deploy is done.
pub(crate) struct Wait(pub bool);

impl Params for Wait {
    const NAMES: &'static [&'static str] = &["wait"];

    fn read(q: &Pairs) -> Result<Wait, ApiError> {
        q.flag("wait").map(Wait)
    }
}

/// The query parameters of one route as the OpenAPI document describes them: every name
/// of [`Params::NAMES`], in order (a test holds the two together).
pub(crate) trait Described: Params {
    fn describe() -> Vec<Parameter>;
}

impl<T: Described> utoipa::IntoParams for Query<T> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        T::describe()
    }
}

/// A query parameter of the document: optional unless `required`.
pub(crate) fn query_param(name: &str, description: &str, schema: Object, required: bool) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An integer schema from `min` to `max`.
pub(crate) fn int_schema(min: usize, max: usize, default: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .default(Some(default.into()))
        .build()
}

/// The schema of a flag: `true`, `1` or no value; `false` or `0`.
pub(crate) fn flag_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["true", "false", "1", "0", ""]))
        .build()
}

impl Described for NoParams {
    fn describe() -> Vec<Parameter> {
        Vec::new()
    }
}

impl<const DEFAULT: usize, const MAX: usize> Described for Limit<DEFAULT, MAX> {
    fn describe() -> Vec<Parameter> {
        let about = format!("How many to answer, newest first (1 to {MAX}, {DEFAULT} by default)");
        vec![query_param("limit", &about, int_schema(1, MAX, DEFAULT), false)]
    }
}

impl Described for Wait {
    fn describe() -> Vec<Parameter> {
        vec![query_param(
            "wait",
            "Answer once the deploy is done (the function is ready or in error)",
            flag_schema(),
            false,
        )]
    }
}

/// `follow`, as [`Wait`]'s `wait`.
pub(crate) fn follow_param() -> Parameter {
    query_param(
        "follow",
        "Stream new lines as Server-Sent Events after the newest ones",
        flag_schema(),
        false,
    )
}

/// A request's query parameters, decoded, each known to the route and given once.
pub(crate) struct Pairs(HashMap<String, String>);

impl Pairs {
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Pairs, ApiError> {
        let uri_query = raw.unwrap_or("");
        let decoded: Vec<(String, String)> = decode_pairs(uri_query)?;
        let mut map = HashMap::new();
        for (k, v) in decoded {
            if !allowed.contains(&k.as_str()) {
                let takes = if allowed.is_empty() {
                    "this route takes no query parameters".to_owned()
                } else {
                    format!("this route takes: {}", allowed.join(", "))
                };
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    format!("unknown query parameter {k:?}; {takes}"),
                )
                .with("field", k));
            }
            if map.contains_key(&k) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "duplicate_parameter",
                    format!("query parameter {k:?} is given more than once; give it once"),
                )
                .with("field", k));
            }
            map.insert(k, v);
        }
        Ok(Pairs(map))
    }

    /// A parameter's decoded value, if given.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `true`, `1` or no value; `false` or `0`; absent is false.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("{name} must be true or false, got {other:?}"),
            )
            .with("field", name)),
        }
    }

    /// The whole number `name`, from 1 to `max`; `default` when absent.
    pub(crate) fn int(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("{name} must be a whole number from 1 to {max}, got {v:?}"),
            )
            .with("field", name)),
        }
    }
}

/// The query string's pairs, percent- and `+`-decoded as HTML forms encode them.
fn decode_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let uri: axum::http::Uri = format!("/?{raw}").parse().map_err(|_| bad_query())?;
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|_| bad_query())
}

fn bad_query() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        "the query string cannot be decoded as name=value pairs",
    )
}

/// axum's `Path`, with a malformed segment (percent-escapes that are not UTF-8) answered
/// with the API's error shape instead of axum's plain text.
pub(crate) struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Path(p.0)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                format!("the request path cannot be read: {}", rejection.body_text()),
            )),
        }
    }
}

/// An invocation id from a path: a UUID, in any of its spellings, as the store keeps it
/// (hyphenated, lower case). Anything else cannot name an invocation: 404 saying why.
pub(crate) fn invocation_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::try_parse(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            ApiError::not_found(format!(
                "invocation {raw:?} cannot exist: invocation ids are UUIDs such as \
                 0190c5a4-6b1e-7c3d-8e2f-1a2b3c4d5e6f"
            ))
            .with("field", "id")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Pairs, ApiError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn only_declared_parameters_are_taken_once() {
        assert_eq!(code(Pairs::parse(None, &[])), "ok");
        assert_eq!(code(Pairs::parse(Some(""), &[])), "ok");
        assert_eq!(code(Pairs::parse(Some("x=1"), &[])), "unknown_parameter");
        assert_eq!(code(Pairs::parse(Some("limit=1"), &["limit"])), "ok");
        assert_eq!(
            code(Pairs::parse(Some("limit=1&limit=2"), &["limit"])),
            "duplicate_parameter"
        );
        // Escapes that are not UTF-8 decode to U+FFFD, which names no parameter.
        assert_eq!(code(Pairs::parse(Some("%FF=1"), &["limit"])), "unknown_parameter");
        let e = Pairs::parse(Some("lmit=1"), &["limit", "follow"])
            .err()
            .expect("unknown");
        assert_eq!(e.extra["field"], "lmit");
        assert!(e.message.contains("limit, follow"), "{}", e.message);
    }

    #[test]
    fn values_are_decoded() {
        let q = Pairs::parse(Some("since=2026-01-01T00%3A00%3A00%2B01%3A00"), &["since"]).expect("ok");
        assert_eq!(q.get("since"), Some("2026-01-01T00:00:00+01:00"));
        let q = Pairs::parse(Some("limit=%31%30"), &["limit"]).expect("ok");
        assert_eq!(q.int("limit", 5, 100).expect("ten"), 10);
    }

    #[test]
    fn numbers_outside_their_range_are_refused_naming_the_range() {
        for bad in ["0", "-1", "1001", "ten", "1.5", ""] {
            let q = Pairs::parse(Some(&format!("limit={bad}")), &["limit"]).expect("parsed");
            let e = q.int("limit", 50, 1000).expect_err(bad);
            assert_eq!(
                (e.code, e.extra["field"].as_str()),
                ("invalid_parameter", Some("limit"))
            );
            assert!(e.message.contains("from 1 to 1000"), "{}", e.message);
        }
        let q = Pairs::parse(None, &["limit"]).expect("parsed");
        assert_eq!(q.int("limit", 50, 1000).expect("default"), 50);
    }

    /// Handlers take their parameters through this module, so none can skip the checks.
    #[test]
    fn no_handler_reads_the_query_or_path_around_these_checks() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        for entry in std::fs::read_dir(dir).expect("src") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "params.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for line in text.lines().filter(|l| l.contains("axum::extract::")) {
                for word in ["RawQuery", "Query", "Path"] {
                    let imported = line.split(|c: char| !c.is_alphanumeric()).any(|w| w == word);
                    assert!(
                        !imported,
                        "{}: use crate::{word}, not axum's: {line}",
                        path.display()
                    );
                }
            }
        }
    }

    #[test]
    fn invocation_ids_are_uuids_in_the_stored_spelling() {
        let id = "0190c5a4-6b1e-7c3d-8e2f-1a2b3c4d5e6f";
        assert_eq!(invocation_id(id).expect("valid"), id);
        assert_eq!(invocation_id(&id.to_uppercase()).expect("upper case"), id);
        for bad in ["", "x", "0190c5a4", &format!("{id}0")] {
            let e = invocation_id(bad).expect_err(bad);
            assert_eq!((e.code, e.extra["field"].as_str()), ("not_found", Some("id")));
        }
    }

    /// Each route's parameters in the OpenAPI document are the ones it takes.
    #[test]
    fn the_document_describes_each_routes_parameters() {
        fn names<T: Described>() -> (Vec<String>, Vec<&'static str>) {
            let described = T::describe().into_iter().map(|p| p.name).collect();
            (described, T::NAMES.to_vec())
        }
        for (described, taken) in [
            names::<NoParams>(),
            names::<Limit<50, 1000>>(),
            names::<Wait>(),
            names::<crate::invocations::LogParams>(),
            names::<crate::stats::Minutes>(),
            names::<crate::usage::Period>(),
        ] {
            assert_eq!(described, taken);
        }
    }

    #[test]
    fn flags_are_true_or_false() {
        for (raw, want) in [
            ("wait", true),
            ("wait=1", true),
            ("wait=true", true),
            ("wait=0", false),
            ("", false),
        ] {
            let q = Pairs::parse(Some(raw), &["wait"]).expect("parsed");
            assert_eq!(q.flag("wait").expect(raw), want, "{raw}");
        }
        let q = Pairs::parse(Some("wait=yes"), &["wait"]).expect("parsed");
        assert_eq!(q.flag("wait").expect_err("yes").code, "invalid_parameter");
    }
}

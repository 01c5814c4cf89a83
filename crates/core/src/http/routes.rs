//! Routes of a function's URL, as API Gateway declares them: `"GET /users/{id}"`,
//! `"ANY /files/{proxy+}"`. A request is matched to one route, whose key and path
//! parameters go into the event (`routeKey`, `resource`, `pathParameters`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Routes one function may declare.
pub const MAX_ROUTES: usize = 100;

/// One route: a method (or `ANY`) and a path template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Route {
    pub method: String,
    pub path: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name+}`: the rest of the path (last segment only).
    Greedy(String),
}

impl From<Route> for String {
    fn from(r: Route) -> String {
        format!("{} {}", r.method, r.path)
    }
}

impl TryFrom<String> for Route {
    type Error = String;

    fn try_from(s: String) -> Result<Route, String> {
        Route::parse(&s)
    }
}

/// What a request matched: the route's key (`GET /users/{id}`), its path template, and the
/// path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub key: String,
    pub resource: String,
    pub params: BTreeMap<String, String>,
}

impl Route {
    pub fn parse(s: &str) -> Result<Route, String> {
        let (method, path) = s
            .split_once(' ')
            .ok_or_else(|| format!("route {s:?} is not \"METHOD /path\" (such as \"GET /users/{{id}}\")"))?;
        let method = method.to_ascii_uppercase();
        if method != "ANY" && !super::METHODS.contains(&method.as_str()) {
            return Err(format!("route {s:?}: {method} is not an HTTP method or ANY"));
        }
        if !path.starts_with('/') || path.len() > 512 {
            return Err(format!(
                "route {s:?}: the path must start with / (at most 512 bytes)"
            ));
        }
        let parts: Vec<&str> = path[1..].split('/').filter(|p| !p.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut names = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => {
                    let (name, greedy) = match name.strip_suffix('+') {
                        Some(n) => (n, true),
                        None => (name, false),
                    };
                    let ok = !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !ok {
                        return Err(format!("route {s:?}: {part} is not a parameter such as {{id}}"));
                    }
                    if names.contains(&name) {
                        return Err(format!("route {s:?}: parameter {name} appears twice"));
                    }
                    names.push(name);
                    if greedy {
                        if i + 1 != parts.len() {
                            return Err(format!("route {s:?}: {part} must be the last segment"));
                        }
                        Segment::Greedy(name.to_owned())
                    } else {
                        Segment::Param(name.to_owned())
                    }
                }
                None if part.contains(['{', '}']) => {
                    return Err(format!("route {s:?}: {part} mixes text and a parameter"))
                }
                None => Segment::Literal((*part).to_owned()),
            };
            segments.push(segment);
        }
        Ok(Route {
            method,
            path: format!("/{}", parts.join("/")),
            segments,
        })
    }

    /// The path parameters when `path` matches, else `None`.
    fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let parts: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let mut params = BTreeMap::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Greedy(name) => {
                    let rest = parts.get(i..).filter(|r| !r.is_empty())?;
                    params.insert(name.clone(), rest.join("/"));
                    return Some(params);
                }
                Segment::Literal(l) => {
                    if parts.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    params.insert(name.clone(), (*parts.get(i)?).to_owned());
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// How specific the route is: literal segments first, then parameters; a greedy one
    /// last; a method over ANY (API Gateway's order).
    fn rank(&self) -> (usize, usize, bool, bool) {
        let literal = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let greedy = self.segments.iter().any(|s| matches!(s, Segment::Greedy(_)));
        (literal, self.segments.len(), !greedy, self.method != "ANY")
    }
}

/// The most specific route matching `method` and `path`.
pub fn match_route(routes: &[Route], method: &str, path: &str) -> Option<Matched> {
    routes
        .iter()
        .filter(|r| r.method == "ANY" || r.method.eq_ignore_ascii_case(method))
        .filter_map(|r| r.matches(path).map(|params| (r, params)))
        .max_by_key(|(r, _)| r.rank())
        .map(|(r, params)| Matched {
            key: format!("{} {}", r.method, r.path),
            resource: r.path.clone(),
            params,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(list: &[&str]) -> Vec<Route> {
        list.iter().map(|r| Route::parse(r).expect("valid")).collect()
    }

    #[test]
    fn the_most_specific_route_wins_and_fills_the_parameters() {
        let r = routes(&[
            "GET /users/{id}",
            "GET /users/me",
            "ANY /files/{path+}",
            "POST /users/{id}",
            "ANY /{proxy+}",
        ]);
        let m = match_route(&r, "GET", "/users/42").expect("matches");
        assert_eq!(
            (m.key.as_str(), m.params["id"].as_str()),
            ("GET /users/{id}", "42")
        );
        assert_eq!(
            match_route(&r, "GET", "/users/me").expect("matches").key,
            "GET /users/me"
        );
        let m = match_route(&r, "DELETE", "/files/a/b.txt").expect("matches");
        assert_eq!(
            (m.resource.as_str(), m.params["path"].as_str()),
            ("/files/{path+}", "a/b.txt")
        );
        let m = match_route(&r, "DELETE", "/users/42").expect("the greedy catch-all");
        assert_eq!(m.key, "ANY /{proxy+}");
        assert_eq!(match_route(&routes(&["GET /users/{id}"]), "GET", "/users"), None);
        assert_eq!(
            match_route(&routes(&["GET /users/{id}"]), "GET", "/users/1/x"),
            None
        );
    }

    #[test]
    fn bad_routes_say_why() {
        for bad in [
            "/users",
            "FETCH /x",
            "GET users",
            "GET /{a+}/b",
            "GET /x{id}",
            "GET /{a}/{a}",
            "GET /{}",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            String::from(Route::parse("get /a//b/").expect("valid")),
            "GET /a/b"
        );
    }
}

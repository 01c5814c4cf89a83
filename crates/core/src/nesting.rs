//! How deeply a JSON text nests arrays and objects, measured without building it (so
//! without recursion): the gate in front of every reader that recurses.

/// The deepest nesting of arrays and objects in `json`, a JSON text (`1` is 0, `[]` is 1,
/// `{"a": [1]}` is 2). Brackets inside strings do not count. For text that is not JSON the
/// answer is meaningless but never a panic.
pub fn json_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                (false, _) => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The deepest nesting of arrays and objects in a parsed value (as [`json_depth`] of its
/// text). Parsed values are at most 128 levels deep (the reader's limit), so recursing is
/// bounded.
pub fn value_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Array(list) => 1 + list.iter().map(value_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_arrays_and_objects() {
        for (text, depth) in [
            ("1", 0),
            ("\"[[[\"", 0),
            ("[]", 1),
            ("{}", 1),
            (r#"{"a": [1, {"b": []}]}"#, 4),
            ("[[], [], []]", 2),
            (r#"["\"[", "\\", [{"x": "]]]}"}]]"#, 3),
        ] {
            assert_eq!(json_depth(text.as_bytes()), depth, "{text}");
            let value: serde_json::Value = serde_json::from_str(text).expect("json");
            assert_eq!(value_depth(&value), depth, "{text}");
        }
    }

    #[test]
    fn deep_text_is_measured_without_recursion() {
        let n = 1_000_000;
        let text = format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(json_depth(text.as_bytes()), n);
    }

    #[test]
    fn text_that_is_not_json_does_not_panic() {
        assert_eq!(json_depth(b"]]]}}[{"), 2);
        assert_eq!(json_depth(b"\"unterminated [ \\"), 0);
    }
}

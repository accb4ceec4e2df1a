//! Merging `Vary`: one line, each field name once (case-insensitively), `*` absorbing all.

use http::header::VARY;
use http::{HeaderMap, HeaderValue};

use crate::grammar::list_elements;

/// Adds `names` to the response's `Vary`, keeping what is there, never duplicating a name.
pub(crate) fn merge(headers: &mut HeaderMap, names: &[&str]) {
    let mut merged: Vec<String> = Vec::new();
    for value in headers.get_all(VARY) {
        for element in list_elements(value.as_bytes()) {
            let Ok(name) = std::str::from_utf8(element) else {
                continue;
            };
            if !merged.iter().any(|m| m.eq_ignore_ascii_case(name)) {
                merged.push(name.to_owned());
            }
        }
    }
    if merged.iter().any(|m| m == "*") {
        return;
    }
    let before = merged.len();
    for name in names {
        if !merged.iter().any(|m| m.eq_ignore_ascii_case(name)) {
            merged.push((*name).to_owned());
        }
    }
    let lines = headers.get_all(VARY).iter().count();
    if merged.len() == before && lines <= 1 {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&merged.join(", ")) {
        headers.insert(VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary(lines: &[&'static str], add: &[&str]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(VARY, HeaderValue::from_static(line));
        }
        merge(&mut headers, add);
        headers
            .get_all(VARY)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn names_are_merged_once_into_one_line() {
        assert_eq!(vary(&[], &["Authorization"]), vec!["Authorization"]);
        assert_eq!(
            vary(
                &["accept-encoding", "Origin, Accept-Encoding"],
                &["Accept-Encoding", "Authorization"]
            ),
            vec!["accept-encoding, Origin, Authorization"]
        );
        assert_eq!(
            vary(&["Authorization"], &["authorization"]),
            vec!["Authorization"]
        );
        assert_eq!(vary(&["*"], &["Authorization"]), vec!["*"]);
        assert!(vary(&[], &[]).is_empty());
    }
}

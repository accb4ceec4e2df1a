//! Merging `Vary`: one line, each field name once (case-insensitively), `*` absorbing all.

use http::header::VARY;
use http::{HeaderMap, HeaderValue};

use crate::grammar::list_elements;

/// Adds `names` to the response's `Vary`, keeping what is there, never duplicating a name.
pub(crate) fn merge(headers: &mut HeaderMap, names: &[&'static str]) {
    if !headers.contains_key(VARY) {
        // The common case, without parsing or allocating for one name.
        let value = match names {
            [] => return,
            [one] => HeaderValue::from_static(one),
            many => match HeaderValue::from_str(&many.join(", ")) {
                Ok(value) => value,
                Err(_) => return,
            },
        };
        headers.insert(VARY, value);
        return;
    }
    let mut merged: Vec<&[u8]> = Vec::new();
    let lines: Vec<HeaderValue> = headers.get_all(VARY).iter().cloned().collect();
    let mut duplicates = false;
    for value in &lines {
        for element in list_elements(value.as_bytes()) {
            if merged.iter().any(|m| m.eq_ignore_ascii_case(element)) {
                duplicates = true;
            } else {
                merged.push(element);
            }
        }
    }
    if merged.contains(&&b"*"[..]) {
        // The response varies on everything: naming fields adds nothing; left as it is.
        return;
    }
    let before = merged.len();
    for name in names {
        if !merged
            .iter()
            .any(|m| m.eq_ignore_ascii_case(name.as_bytes()))
        {
            merged.push(name.as_bytes());
        }
    }
    if merged.len() == before && lines.len() <= 1 && !duplicates {
        // Already one line naming each field once.
        return;
    }
    if let Ok(value) = HeaderValue::from_bytes(&merged.join(&b", "[..])) {
        headers.insert(VARY, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary(lines: &[&'static str], add: &[&'static str]) -> Vec<String> {
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
        // One line with a name twice is rewritten even when nothing is added.
        assert_eq!(vary(&["Origin, origin"], &["Origin"]), vec!["Origin"]);
        assert!(vary(&[], &[]).is_empty());
    }
}

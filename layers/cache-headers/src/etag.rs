//! Entity tags (RFC 9110 §8.8.3): parsing, comparison, lists, and computing one from a body.

use http::HeaderValue;

use crate::grammar::tag_list_elements;

/// An entity tag: an opaque validator, strong or weak (`W/"..."`).
///
/// ```
/// use vitals_cache_headers::EntityTag;
///
/// let strong = EntityTag::parse(br#""v1""#).unwrap();
/// let weak = EntityTag::parse(br#"W/"v1""#).unwrap();
/// assert!(strong.weak_eq(&weak));
/// assert!(!strong.strong_eq(&weak));
/// assert!(EntityTag::parse(b"v1").is_none()); // unquoted: not an entity tag
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntityTag {
    weak: bool,
    /// The opaque tag without its quotes, as bytes: obs-text compares byte for byte.
    tag: Box<[u8]>,
}

/// `etagc = %x21 / %x23-7E / obs-text`
const fn is_etagc(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x7e | 0x80..=0xff)
}

impl EntityTag {
    /// A strong tag; `None` if `tag` holds a character an entity tag cannot (`"`, controls,
    /// space).
    pub fn strong(tag: &str) -> Option<Self> {
        tag.bytes().all(is_etagc).then(|| Self {
            weak: false,
            tag: tag.as_bytes().into(),
        })
    }

    /// A weak tag; `None` as for [`EntityTag::strong`].
    pub fn weak(tag: &str) -> Option<Self> {
        Self::strong(tag).map(|t| Self { weak: true, ..t })
    }

    /// Parses `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`; `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let (weak, rest) = match bytes {
            [b'W', b'/', rest @ ..] => (true, rest),
            rest => (false, rest),
        };
        let [b'"', tag @ .., b'"'] = rest else {
            return None;
        };
        if !tag.iter().all(|&b| is_etagc(b)) {
            return None;
        }
        Some(Self {
            weak,
            tag: tag.into(),
        })
    }

    /// Whether the tag is weak.
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// The opaque tag, without quotes (bytes: obs-text need not be UTF-8).
    pub fn tag(&self) -> &[u8] {
        &self.tag
    }

    /// Strong comparison: both strong, same tag (what `If-Match` uses).
    pub fn strong_eq(&self, other: &Self) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison: same tag, strength aside (what `If-None-Match` uses).
    pub fn weak_eq(&self, other: &Self) -> bool {
        self.tag == other.tag
    }

    /// The header value (`"tag"` or `W/"tag"`).
    pub fn header_value(&self) -> HeaderValue {
        let mut bytes = Vec::with_capacity(self.tag.len() + 4);
        if self.weak {
            bytes.extend_from_slice(b"W/");
        }
        bytes.push(b'"');
        bytes.extend_from_slice(&self.tag);
        bytes.push(b'"');
        HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }

    /// A strong tag for `body`: 128 bits of XXH3 in hex. With a `Content-Encoding`, the
    /// coding is part of the tag, so the gzip and the identity representation never share
    /// one.
    pub fn for_body(body: &[u8], content_encoding: Option<&str>) -> Self {
        Self {
            weak: false,
            tag: body_tag(body, content_encoding, false).into_bytes().into(),
        }
    }

    /// The header value of [`EntityTag::for_body`], built in one allocation.
    pub(crate) fn header_for_body(body: &[u8], content_encoding: Option<&str>) -> HeaderValue {
        let quoted = body_tag(body, content_encoding, true);
        HeaderValue::from_maybe_shared(bytes::Bytes::from(quoted))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

/// The tag of a body: 128 bits of XXH3 in hex, then `-coding` with a content coding; in quotes
/// if asked.
fn body_tag(body: &[u8], content_encoding: Option<&str>, quoted: bool) -> String {
    let hash = xxhash_rust::xxh3::xxh3_128(body);
    let mut tag = String::with_capacity(2 + 32 + content_encoding.map_or(0, |c| c.len() + 1));
    if quoted {
        tag.push('"');
    }
    tag.push_str(const_hex::Buffer::<16>::new().format(&hash.to_be_bytes()));
    if let Some(coding) = content_encoding {
        tag.push('-');
        tag.extend(coding.chars().filter(char::is_ascii_alphanumeric).take(32));
    }
    if quoted {
        tag.push('"');
    }
    tag
}

impl std::fmt::Display for EntityTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", String::from_utf8_lossy(&self.tag))
    }
}

/// The value of `If-Match` or `If-None-Match`: `*` or a list of entity tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TagList {
    Any,
    Tags(Vec<EntityTag>),
}

impl TagList {
    /// Parses every line of the header (`"*" / #entity-tag`). `None` — the header is then
    /// ignored, as RFC 9110 asks of invalid conditionals — when any member is not an entity
    /// tag (an unquoted tag, say) or `*` is mixed with tags.
    pub(crate) fn parse<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Option<Self> {
        let mut tags = Vec::new();
        let mut any = false;
        let mut seen = false;
        for line in lines {
            seen = true;
            for element in tag_list_elements(line.as_bytes()) {
                if element == b"*" {
                    any = true;
                } else {
                    // As many as the header holds: its size is bounded by the server's
                    // header limits, and a tag cut off would give a wrong answer.
                    tags.push(EntityTag::parse(element)?);
                }
            }
        }
        match (seen, any, tags.is_empty()) {
            (false, _, _) | (true, false, true) | (true, true, false) => None,
            (true, true, true) => Some(Self::Any),
            (true, false, false) => Some(Self::Tags(tags)),
        }
    }

    /// Whether the list matches the current tag (`*` matches any existing representation).
    pub(crate) fn matches(
        &self,
        current: Option<&EntityTag>,
        exists: bool,
        eq: fn(&EntityTag, &EntityTag) -> bool,
    ) -> bool {
        match self {
            Self::Any => exists,
            Self::Tags(tags) => current.is_some_and(|current| tags.iter().any(|t| eq(t, current))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(lines: &[&'static str]) -> Option<TagList> {
        let values: Vec<_> = lines.iter().map(|l| HeaderValue::from_static(l)).collect();
        TagList::parse(&values)
    }

    #[test]
    fn entity_tags_follow_the_grammar() {
        assert_eq!(EntityTag::parse(br#""""#).unwrap().tag(), b"");
        // obs-text compares byte for byte.
        assert_ne!(EntityTag::parse(b"\"\x80\""), EntityTag::parse(b"\"\x81\""));
        assert!(EntityTag::parse(br#"W/"x""#).unwrap().is_weak());
        for bad in [
            &b"x"[..],
            b"\"x",
            b"w/\"x\"",
            b"\"a b\"",
            b"\"a\"b\"",
            b"W/ \"x\"",
        ] {
            assert!(EntityTag::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(EntityTag::weak("v2").unwrap().to_string(), "W/\"v2\"");
        assert!(EntityTag::strong("has space").is_none());
    }

    #[test]
    fn lists_parse_stars_and_tags_and_reject_junk() {
        assert_eq!(list(&["*"]), Some(TagList::Any));
        let Some(TagList::Tags(tags)) = list(&[r#""a", W/"b""#, r#""c""#]) else {
            panic!("a list");
        };
        assert_eq!(tags.len(), 3);
        assert_eq!(list(&[r#""a", b"#]), None);
        assert_eq!(list(&[r#"*, "a""#]), None);
        assert_eq!(list(&[""]), None);
        assert_eq!(list(&[]), None);
    }

    #[test]
    fn weak_and_strong_matching() {
        let current = EntityTag::strong("v1").unwrap();
        let weak_list = list(&[r#"W/"v1""#]).unwrap();
        assert!(weak_list.matches(Some(&current), true, EntityTag::weak_eq));
        assert!(!weak_list.matches(Some(&current), true, EntityTag::strong_eq));
        assert!(TagList::Any.matches(None, true, EntityTag::strong_eq));
        assert!(!TagList::Any.matches(None, false, EntityTag::strong_eq));
        assert!(!weak_list.matches(None, true, EntityTag::weak_eq));
    }

    #[test]
    fn body_tags_are_stable_strong_and_encoding_specific() {
        let plain = EntityTag::for_body(b"hello", None);
        assert_eq!(plain, EntityTag::for_body(b"hello", None));
        assert!(!plain.is_weak());
        assert_eq!(plain.tag().len(), 32);
        // The hash's 128 bits in lowercase hex, most significant first: a stored tag stays
        // valid across releases only if this never changes.
        let expected = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(b"hello"));
        assert_eq!(plain.tag(), expected.as_bytes());
        let gzip = EntityTag::for_body(b"hello", Some("gzip"));
        assert!(gzip.tag().ends_with(b"-gzip"));
        assert_ne!(plain, EntityTag::for_body(b"hellO", None));
        assert!(EntityTag::parse(plain.header_value().as_bytes()).is_some());
        assert_eq!(
            EntityTag::header_for_body(b"hello", Some("gzip")),
            gzip.header_value()
        );
    }
}

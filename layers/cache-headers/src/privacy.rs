//! The rule that keeps one user's response out of shared caches, whoever wrote its
//! `Cache-Control`: the layer's policy, the handler, or nobody.
//!
//! A response is *for one user* when the request carried credentials (`Authorization`, or a
//! [configured session cookie](crate::CacheHeadersLayer::with_private_cookie)) and the route did
//! not [opt in](crate::CacheHeadersLayer::with_public_even_if_authorized), or when the response sets a
//! cookie. Such a response leaves the layer with a `Cache-Control` that no shared cache may store
//! it by:
//!
//! - **credentials** (RFC 9111 §3.5): a shared cache may store the response to a request with
//!   `Authorization` only when it says `public`, `s-maxage` or `must-revalidate`. A value without
//!   them is left as it is; one with them is made `private`.
//! - **`Set-Cookie`** (our policy: RFC 9111 §7.3 lets caches store such responses): the value must
//!   say `private` or `no-store`, or it is made `private` — a response without `Cache-Control`
//!   gets `private` too, as shared caches may otherwise store it by heuristic freshness.
//! - **unreadable** values (off RFC 9111's grammar): `no-store`, as nothing can be kept safely.
//! - **`no-store`** comes alone (with `no-transform` if it was there): never with `max-age`
//!   (some CDNs store that anyway), nor with `must-understand` (which lets caches that know the
//!   status code ignore `no-store`).
//!
//! Made `private` means: a bare `private` first (the qualified `private="…"` form still lets
//! shared caches store the rest of the response), then the handler's directives that only
//! restrict or only concern the user's cache, as they were written — `max-age`, `no-cache`,
//! `must-revalidate`, `no-transform`, `immutable`, `stale-while-revalidate`, `stale-if-error`.
//! The rest goes: `public`, `s-maxage` and `proxy-revalidate` speak to shared caches,
//! `must-understand` only matters next to `no-store`, and an extension directive might widen
//! what `private` allows (RFC 9111 §5.2.3's `community="UCI"`).

use http::{HeaderMap, HeaderValue};

use crate::directives::for_each;

/// Why a response is for one user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OneUser {
    /// The request carried credentials, and the route did not opt in to public responses.
    pub(crate) credentials: bool,
    /// The response sets a cookie.
    pub(crate) sets_cookie: bool,
}

/// The `Cache-Control` a response for one user must leave with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Confined {
    /// The new value (one line).
    pub(crate) value: HeaderValue,
    /// Whether any cache may store the response (`false` for `no-store`).
    pub(crate) stores: bool,
}

/// What the rule does with one directive.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A bare `private`: the directive the rule wants.
    Private,
    /// `no-store`, in any form.
    NoStore,
    /// Kept when the value is made private: restricts, or speaks to the user's cache only.
    Keep,
    /// Kept, and lets shared caches store an authorized response (`must-revalidate`).
    KeepButGrants,
    /// Dropped when the value is made private.
    Drop,
    /// Dropped, and lets shared caches store an authorized response (`public`, `s-maxage`).
    DropAndGrants,
}

fn role(name: &[u8], argument: Option<&[u8]>) -> Role {
    let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
    if is("private") {
        // The qualified form keeps only the named fields from shared caches.
        return if argument.is_none() {
            Role::Private
        } else {
            Role::Drop
        };
    }
    if is("no-store") {
        Role::NoStore
    } else if is("public") || is("s-maxage") {
        Role::DropAndGrants
    } else if is("must-revalidate") {
        Role::KeepButGrants
    } else if [
        "max-age",
        "no-cache",
        "no-transform",
        "immutable",
        "stale-while-revalidate",
        "stale-if-error",
    ]
    .iter()
    .any(|known| is(known))
    {
        Role::Keep
    } else {
        // `proxy-revalidate`, `must-understand`, request-only directives, extensions.
        Role::Drop
    }
}

/// What a pass over the value found.
#[allow(clippy::struct_excessive_bools)] // One flag per fact the rule reads, set in one pass.
#[derive(Default)]
struct Seen {
    bare_private: bool,
    no_store: bool,
    /// A bare `no-transform`.
    no_transform: bool,
    /// A directive that lets shared caches store an authorized response.
    grants: bool,
    /// A directive that making the value private would drop.
    drops: bool,
    /// A directive other than a bare `no-store` or `no-transform`.
    besides_no_store: bool,
}

/// The rule (see the [module documentation](self)): the `Cache-Control` that `headers`' response
/// must leave with so that no shared cache stores it, or `None` when its value (or its lack of
/// one) already keeps it out of their reach — always `None` for a response not for one user.
pub(crate) fn keep_from_shared_caches(headers: &HeaderMap, for_one: OneUser) -> Option<Confined> {
    if !for_one.credentials && !for_one.sets_cookie {
        return None;
    }
    let mut seen = Seen::default();
    let found = for_each(headers, |name, argument| {
        let role = role(name, argument);
        seen.bare_private |= role == Role::Private;
        seen.no_store |= role == Role::NoStore;
        let bare_no_transform = argument.is_none() && name.eq_ignore_ascii_case(b"no-transform");
        seen.no_transform |= bare_no_transform;
        seen.grants |= matches!(role, Role::KeepButGrants | Role::DropAndGrants);
        seen.drops |= matches!(role, Role::Drop | Role::DropAndGrants);
        seen.besides_no_store |=
            !(bare_no_transform || (role == Role::NoStore && argument.is_none()));
    });
    let Ok(found) = found else {
        return Some(no_store(false));
    };
    if !found {
        // No `Cache-Control`: §3.5 already keeps an authorized response out of shared caches;
        // one that sets a cookie could be stored by heuristic freshness.
        return for_one.sets_cookie.then(|| Confined {
            value: HeaderValue::from_static("private"),
            stores: true,
        });
    }
    if seen.no_store {
        return seen.besides_no_store.then(|| no_store(seen.no_transform));
    }
    let private_already = seen.bare_private && !seen.drops;
    if private_already || (!for_one.sets_cookie && !seen.grants) {
        return None;
    }
    Some(private(headers))
}

fn no_store(no_transform: bool) -> Confined {
    Confined {
        value: HeaderValue::from_static(if no_transform {
            "no-store, no-transform"
        } else {
            "no-store"
        }),
        stores: false,
    }
}

/// A bare `private`, then the kept directives as they were written, on one line.
fn private(headers: &HeaderMap) -> Confined {
    let mut line = b"private".to_vec();
    // The value was read whole above: this pass cannot fail.
    let _ = for_each(headers, |name, argument| {
        if matches!(role(name, argument), Role::Keep | Role::KeepButGrants) {
            line.extend_from_slice(b", ");
            line.extend_from_slice(name);
            if let Some(argument) = argument {
                line.push(b'=');
                line.extend_from_slice(argument);
            }
        }
    });
    // Bytes of valid header values and `, `: valid; `no-store` should it ever not be.
    HeaderValue::from_bytes(&line).map_or_else(
        |_| no_store(false),
        |value| Confined {
            value,
            stores: true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CACHE_CONTROL;

    const CREDENTIALS: OneUser = OneUser {
        credentials: true,
        sets_cookie: false,
    };
    const COOKIE: OneUser = OneUser {
        credentials: false,
        sets_cookie: true,
    };

    fn confined(lines: &[&'static str], for_one: OneUser) -> Option<String> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(CACHE_CONTROL, HeaderValue::from_static(line));
        }
        keep_from_shared_caches(&headers, for_one)
            .map(|c| c.value.to_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn a_response_for_everyone_is_left_alone() {
        for lines in [&["public, s-maxage=60"][..], &["max-age=5 junk"], &[]] {
            assert_eq!(confined(lines, OneUser::default()), None, "{lines:?}");
        }
    }

    #[test]
    fn credentials_keep_what_rfc_9111_already_keeps_from_shared_caches() {
        for lines in [
            &["max-age=60"][..],
            &["no-cache"],
            &["private, max-age=0, must-revalidate"],
            &["no-store"],
            &[],
        ] {
            assert_eq!(confined(lines, CREDENTIALS), None, "{lines:?}");
        }
    }

    #[test]
    fn what_lets_shared_caches_store_an_authorized_response_is_made_private() {
        assert_eq!(
            confined(&["s-maxage=60"], CREDENTIALS).as_deref(),
            Some("private")
        );
        assert_eq!(
            confined(
                &["public, max-age=60", "s-maxage=600, no-transform"],
                CREDENTIALS
            )
            .as_deref(),
            Some("private, max-age=60, no-transform")
        );
        assert_eq!(
            confined(&["Must-Revalidate, max-age=60"], CREDENTIALS).as_deref(),
            Some("private, Must-Revalidate, max-age=60")
        );
        // The qualified form lets shared caches store the rest: it becomes a bare `private`.
        assert_eq!(
            confined(&["private=\"x-user\", public, max-age=5"], CREDENTIALS).as_deref(),
            Some("private, max-age=5")
        );
        // Extensions and shared-cache directives go; what restricts stays.
        assert_eq!(
            confined(
                &[
                    "public, community=\"UCI\", proxy-revalidate, no-cache=\"set-cookie\", \
                     stale-while-revalidate=30, stale-if-error=60, immutable"
                ],
                CREDENTIALS
            )
            .as_deref(),
            Some(
                "private, no-cache=\"set-cookie\", stale-while-revalidate=30, \
                 stale-if-error=60, immutable"
            )
        );
    }

    #[test]
    fn a_response_that_sets_a_cookie_must_say_private_or_no_store() {
        assert_eq!(confined(&[], COOKIE).as_deref(), Some("private"));
        assert_eq!(
            confined(&["max-age=60"], COOKIE).as_deref(),
            Some("private, max-age=60")
        );
        assert_eq!(
            confined(&["no-cache"], COOKIE).as_deref(),
            Some("private, no-cache")
        );
        assert_eq!(confined(&[""], COOKIE).as_deref(), Some("private"));
        assert_eq!(confined(&["private, max-age=60"], COOKIE), None);
        assert_eq!(confined(&["no-store", "no-transform"], COOKIE), None);
        // `no-store` beside other directives comes alone, keeping a bare `no-transform`.
        assert_eq!(
            confined(&["no-store, no-transform, max-age=60"], COOKIE).as_deref(),
            Some("no-store, no-transform")
        );
        assert_eq!(
            confined(&["no-store, max-age=60"], COOKIE).as_deref(),
            Some("no-store")
        );
    }

    #[test]
    fn unreadable_values_become_no_store_and_no_store_comes_alone() {
        for for_one in [CREDENTIALS, COOKIE] {
            let junk = keep_from_shared_caches(
                &HeaderMap::from_iter([(
                    CACHE_CONTROL,
                    HeaderValue::from_static("max-age=5 junk"),
                )]),
                for_one,
            );
            assert_eq!(
                junk,
                Some(Confined {
                    value: HeaderValue::from_static("no-store"),
                    stores: false
                })
            );
            assert_eq!(
                confined(&["no-store, max-age=60"], for_one).as_deref(),
                Some("no-store")
            );
            assert_eq!(
                confined(&["must-understand, no-store, no-transform"], for_one).as_deref(),
                Some("no-store, no-transform")
            );
            assert_eq!(
                confined(&["no-store=\"x\""], for_one).as_deref(),
                Some("no-store")
            );
        }
    }
}

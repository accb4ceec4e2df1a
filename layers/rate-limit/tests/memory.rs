//! Memory stays bounded: a million distinct clients against one quota leave at most
//! `max_keys` keys held, in under 64 bytes a key.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use http::{HeaderName, Request};
use vitals_rate_limit::part::Decision;
use vitals_rate_limit::{DEFAULT_MAX_KEYS, Quota, RateLimitLayer, RateLimitSettings};

#[test]
fn a_million_random_keys_stay_under_the_bound() {
    let layer = RateLimitLayer::from_settings(
        RateLimitSettings::new(Quota::per_hour(10))
            .with_key_header(HeaderName::from_static("x-api-key")),
    );
    let part = layer.part();
    let mut request = Request::new(());
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..1_000_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        request
            .headers_mut()
            .insert("x-api-key", format!("{seed:016x}").parse().unwrap());
        assert!(matches!(part.check(&request, None), Decision::Allowed(_)));
    }
    let snapshot = layer.handle().snapshot().unwrap();
    assert_eq!(snapshot.allowed, 1_000_000);
    assert!(snapshot.keys <= DEFAULT_MAX_KEYS, "{} keys", snapshot.keys);
    assert!(
        snapshot.memory_bytes <= DEFAULT_MAX_KEYS * 64,
        "{} bytes for {} keys",
        snapshot.memory_bytes,
        snapshot.keys
    );
    println!(
        "{} keys held in {} bytes ({} evicted early)",
        snapshot.keys, snapshot.memory_bytes, snapshot.evicted_early
    );
    // Every key is still spending its hourly quota: the store made room by dropping keys
    // early, and says so.
    assert!(snapshot.evicted_early > 0);
}

//! The Redis side of a limit's quotas (feature `redis`): the keys the script spends, its
//! arguments, and the keys this instance knows Redis is refusing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use vitals_core::route::RouteLabel;

use crate::headers::Left;
use crate::part::{Checked, Decision, Enforced, Seen};
use crate::quota::Quota;
use crate::redis_store::RedisStore;

/// At most this many keys are remembered as refused; past it, new refusals are not
/// remembered (their next request asks Redis again).
const MAX_REFUSED_HERE: usize = 10_000;

/// A limit's quotas as Redis knows them.
#[derive(Debug)]
pub(crate) struct RemoteQuotas {
    /// Each quota's part of its Redis key: the limit, the quota's place and name.
    names: Vec<String>,
    /// The script's arguments: each quota's interval in microseconds and burst.
    args: Vec<u64>,
    /// Keys Redis refused, until when, and which quota refused.
    refused: Mutex<Refused>,
}

#[derive(Debug, Default)]
struct Refused {
    keys: HashMap<u128, (Instant, usize)>,
    /// When the expired entries were last swept out of a full map (at most once a second).
    swept: Option<Instant>,
}

impl RemoteQuotas {
    pub(crate) fn new(quotas: &[Quota], limit: &str) -> Self {
        // Braces would make a Redis Cluster hash tag of the route template: keep them out.
        let limit: String = limit
            .chars()
            .map(|c| match c {
                '{' => '(',
                '}' => ')',
                c => c,
            })
            .collect();
        Self {
            names: quotas
                .iter()
                .enumerate()
                .map(|(i, quota)| format!("{limit}:{i}:{}", quota.name()))
                .collect(),
            args: quotas
                .iter()
                .flat_map(|quota| {
                    // Rounded up to whole microseconds (Redis's clock): never looser than in
                    // process; over a million a second is one a microsecond in Redis.
                    let micros = u64::try_from(quota.interval().as_nanos().div_ceil(1_000))
                        .unwrap_or(u64::MAX)
                        .max(1);
                    [micros, u64::from(quota.burst())]
                })
                .collect(),
            refused: Mutex::new(Refused::default()),
        }
    }

    /// The Redis keys of `key`'s quotas. The key's digest is the hash tag, so in a Redis
    /// Cluster all of one client's quotas sit in one slot, as one script needs.
    fn keys(&self, prefix: &str, key: u128) -> Vec<String> {
        self.names
            .iter()
            .map(|name| format!("{prefix}:{{{key:032x}}}:{name}"))
            .collect()
    }

    /// The refusal this instance remembers for `key`, while it lasts. Only the quota that
    /// refused is shown in its `RateLimit` header: the others were not asked again.
    pub(crate) fn refused_here(&self, key: u128) -> Option<Checked> {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        let (until, quota) = *refused.keys.get(&key)?;
        let now = Instant::now();
        if now >= until {
            refused.keys.remove(&key);
            return None;
        }
        Some(refusal_of(quota, until - now))
    }

    fn remember_refusal(&self, key: u128, wait: Duration, quota: usize) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if refused.keys.len() >= MAX_REFUSED_HERE {
            let recently = refused
                .swept
                .is_some_and(|swept| now.duration_since(swept) < Duration::from_secs(1));
            if recently {
                return;
            }
            refused.swept = Some(now);
            refused.keys.retain(|_, (until, _)| *until > now);
            if refused.keys.len() >= MAX_REFUSED_HERE {
                return;
            }
        }
        refused.keys.insert(key, (now + wait, quota));
    }
}

/// A refusal by quota `quota`: nothing was spent, and only that quota is shown in the
/// `RateLimit` header (the ones before it were not asked, or not answered for).
fn refusal_of(quota: usize, wait: Duration) -> Checked {
    let mut checked = Checked::default();
    for _ in 0..quota {
        checked.push(Left::default());
    }
    checked.refused = Some((quota, wait));
    checked.shown_from = quota;
    checked
}

/// Spends `key`'s quotas in Redis and decides.
pub(crate) async fn check(
    limit: Arc<Enforced>,
    redis: RedisStore,
    (unkeyed, key): (bool, u128),
    route: Option<RouteLabel>,
    seen: Option<Seen>,
) -> Decision {
    let quotas = limit.quotas(unkeyed);
    let keys = quotas.remote.keys(redis.prefix(), key);
    match redis.check(&keys, &quotas.remote.args).await {
        Ok(answer) => {
            if let Some((quota, wait)) = answer.refused {
                quotas.remote.remember_refusal(key, wait, quota);
                let checked = refusal_of(quota, wait);
                return limit.decide(quotas, &checked, route.as_ref(), seen.as_ref());
            }
            let mut checked = Checked::default();
            for (i, remaining) in answer.remaining.into_iter().enumerate() {
                let whole = quotas
                    .limiters
                    .get(i)
                    .is_none_or(|limiter| remaining >= limiter.quota.burst());
                let reset = match quotas.limiters.get(i) {
                    Some(limiter) if !whole => limiter.quota.interval(),
                    _ => Duration::ZERO,
                };
                checked.push(Left { remaining, reset });
            }
            limit.decide(quotas, &checked, route.as_ref(), seen.as_ref())
        }
        Err(_) => limit.store_failed(quotas, route.as_ref()),
    }
}

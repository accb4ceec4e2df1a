//! `CircuitBreakerLayer`: the breaker's settings and shared state, and its handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;
use tower_layer::Layer;
use vitals_core::findings::Findings;

use super::books::{self, Admit, Books, BreakerState, Settings, Successes, Transition};
use super::hosts::Hosts;
use super::service::CircuitBreaker;
use crate::clock::CoarseClock;
use crate::error::BoxError;
use crate::findings::Reporter;

/// `closed_generation` when the breaker is not closed.
const NOT_CLOSED: u64 = u64::MAX;

/// What counts as a failure of the downstream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    /// A response status.
    pub(crate) status: fn(StatusCode) -> bool,
    /// An error of the inner service (a call refused before it was sent never counts).
    pub(crate) error: fn(&BoxError) -> bool,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            status: server_error,
            error: any_error,
        }
    }
}

/// The default error rule: every error the downstream's call ended with.
fn any_error(_: &BoxError) -> bool {
    true
}

/// One breaker, shared by every service this layer wraps — or one per downstream host with
/// [`per_host`](Self::per_host) (see the [module docs](crate::breaker)).
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer {
    pub(crate) shared: Arc<Shared>,
    /// With [`per_host`](Self::per_host): the hosts' breakers, made from `shared`'s settings.
    pub(crate) hosts: Option<Arc<Hosts>>,
}

/// How many hosts get a breaker of their own by default under
/// [`per_host`](CircuitBreakerLayer::per_host).
const DEFAULT_MAX_HOSTS: usize = 1024;

/// What every clone of a breaker's services shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) settings: Settings,
    pub(crate) rules: Rules,
    /// The books' generation while they say closed, else [`NOT_CLOSED`]; readable without
    /// their lock: a closed breaker admits a call with one atomic load, no lock, no clock. (A
    /// call admitted as the breaker opens in another thread goes through; its outcome, of an
    /// earlier generation, is not counted.)
    closed_generation: AtomicU64,
    /// The books' time: coarse, as their buckets are a tenth of the window (see
    /// [`CoarseClock`]); every closed call's outcome reads it.
    clock: CoarseClock,
    /// The window's successes, booked without the lock while closed.
    successes: Successes,
    books: Mutex<Books>,
    findings: Reporter,
}

impl Shared {
    /// A new breaker named `name`, closed, with this one's settings, rule and findings.
    pub(crate) fn renamed(&self, name: Arc<str>) -> Self {
        Self {
            name,
            settings: self.settings,
            rules: self.rules,
            closed_generation: AtomicU64::new(0),
            clock: self.clock,
            successes: Successes::default(),
            books: Mutex::new(Books::new(self.clock.start())),
            findings: self.findings.clone(),
        }
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        // The books are plain counters: a panic elsewhere while they were locked leaves them
        // usable.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go now, and the generation it is admitted in.
    pub(crate) fn admit(&self) -> (Admit, u64) {
        let generation = self.closed_generation.load(Ordering::Acquire);
        if generation != NOT_CLOSED {
            return (Admit::Call, generation);
        }
        let mut books = self.books();
        let admitted = books.admit(self.clock.now(), &self.settings);
        (admitted, books.generation())
    }

    pub(crate) fn record(&self, admitted: Admit, generation: u64, failed: bool) {
        if !failed
            && admitted == Admit::Call
            && self.closed_generation.load(Ordering::Acquire) == generation
        {
            // Closed, and a success: one atomic update, no lock. (Should the breaker change state
            // between the load above and this update, the success may stay in the window until
            // the next change clears it: one success more, never a failure.)
            self.successes
                .add(books::epoch(self.clock.elapsed(), &self.settings));
            return;
        }
        let transition = {
            let mut books = self.books();
            let transition = books.record(
                admitted,
                generation,
                failed,
                self.clock.now(),
                &self.settings,
                &self.successes,
            );
            if transition.is_some() {
                self.closed_generation.store(
                    books.closed_generation().unwrap_or(NOT_CLOSED),
                    Ordering::Release,
                );
                // The books cleared the window's successes; a success that read the previous
                // generation before this store may have been booked since: clear again.
                self.successes.clear();
            }
            transition
        };
        match transition {
            Some(Transition::Opened { calls, failures }) => {
                let open_ms = self.settings.open_for.as_millis();
                self.findings.always(
                    &self.name,
                    "breaker_opened",
                    format!(
                        "circuit breaker opened: {failures} of {calls} calls failed; calls fail \
                         at once for {open_ms} ms, then a probe"
                    ),
                );
                tracing::warn!(
                    target: "vitals_client",
                    breaker = &*self.name,
                    calls,
                    failures,
                    open_for_ms = u64::try_from(open_ms).unwrap_or(u64::MAX),
                    "circuit breaker opened: the downstream failed {failures} of {calls} calls; \
                     calls fail at once until a probe succeeds"
                );
            }
            // Still down: said when it opened; the state shows on the dashboard.
            Some(Transition::Reopened) => tracing::debug!(
                target: "vitals_client",
                breaker = &*self.name,
                "circuit breaker probe failed: open again"
            ),
            Some(Transition::Closed) => {
                self.findings.always(
                    &self.name,
                    "breaker_closed",
                    "circuit breaker closed: a probe call succeeded".to_owned(),
                );
                tracing::info!(
                    target: "vitals_client",
                    breaker = &*self.name,
                    "circuit breaker closed: a probe call succeeded"
                );
            }
            None => {}
        }
    }

    pub(crate) fn abandon_probe(&self, generation: u64) {
        self.books().abandon_probe(generation);
    }
}

/// The default failure rule: a 5xx.
fn server_error(status: StatusCode) -> bool {
    status.is_server_error()
}

impl CircuitBreakerLayer {
    /// A breaker named `name` (the downstream it protects, for logs and errors) with the
    /// defaults: a 10 s window, at least 20 calls, 50% failures, open for 5 s, one probe.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::build(
            name.into(),
            Settings::default(),
            Rules::default(),
            Reporter::default(),
            None,
        )
    }

    fn build(
        name: Arc<str>,
        settings: Settings,
        rules: Rules,
        findings: Reporter,
        max_hosts: Option<usize>,
    ) -> Self {
        let settings = settings.validated();
        let clock = CoarseClock::new();
        let shared = Arc::new(Shared {
            name,
            settings,
            rules,
            closed_generation: AtomicU64::new(0),
            clock,
            successes: Successes::default(),
            books: Mutex::new(Books::new(clock.start())),
            findings,
        });
        let hosts = max_hosts.map(|limit| Arc::new(Hosts::new(Arc::clone(&shared), limit.max(1))));
        Self { shared, hosts }
    }

    fn max_hosts(&self) -> Option<usize> {
        self.hosts.as_ref().map(|hosts| hosts.limit())
    }

    /// Rebuilds the breaker with changed settings (a new, closed breaker: set everything before
    /// wrapping services and taking its handle).
    fn with(&self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings;
        change(&mut settings);
        Self::build(
            Arc::clone(&self.shared.name),
            settings,
            self.shared.rules,
            self.shared.findings.clone(),
            self.max_hosts(),
        )
    }

    /// One breaker per downstream host instead of one for every call: for a client shared by
    /// many downstreams (a gateway, a webhook sender), where one host failing must not stop the
    /// calls to the others. The host is the request URI's authority (`host` or `host:port`,
    /// lowercased, credentials left out), else its `Host` header; each host's breaker is made on
    /// its first call with this layer's settings, named after the host (in errors, logs,
    /// findings). At most 1,024 hosts get their own ([`with_max_hosts`](Self::with_max_hosts));
    /// the hosts after those share one, `(other hosts)`, so memory stays bounded.
    ///
    /// The breaker is chosen in `call`, once the request is known: `poll_ready` asks the inner
    /// service for readiness even while a host's breaker is open (a client shared by many hosts
    /// is ready or not for all of them), and a refused call does not call it — the readiness
    /// stays with this clone, for its next call, as tower's contract allows.
    #[must_use]
    pub fn per_host(self) -> Self {
        let max_hosts = self.max_hosts().unwrap_or(DEFAULT_MAX_HOSTS);
        Self::build(
            Arc::clone(&self.shared.name),
            self.shared.settings,
            self.shared.rules,
            self.shared.findings.clone(),
            Some(max_hosts),
        )
    }

    /// With [`per_host`](Self::per_host): how many hosts get a breaker of their own (default
    /// 1,024; at least 1); the others share one. Turns `per_host` on.
    #[must_use]
    pub fn with_max_hosts(self, hosts: usize) -> Self {
        Self::build(
            Arc::clone(&self.shared.name),
            self.shared.settings,
            self.shared.rules,
            self.shared.findings.clone(),
            Some(hosts),
        )
    }

    /// Reports each opening and closing to `findings` (kind `downstream`, events
    /// `breaker_opened` and `breaker_closed`), for the dashboard.
    #[must_use]
    pub fn with_findings(self, findings: Findings) -> Self {
        Self::build(
            Arc::clone(&self.shared.name),
            self.shared.settings,
            self.shared.rules,
            Reporter::new(findings),
            self.max_hosts(),
        )
    }

    /// How far back outcomes count (default 10 s; at least 10 ms), kept as ten buckets. Time
    /// here is the kernel's coarse clock, read to its tick (1–10 ms): windows of tens of
    /// milliseconds are counted in ticks; tokio's paused test clock does not move it.
    #[must_use]
    pub fn with_window(self, window: Duration) -> Self {
        self.with(|s| s.window = window)
    }

    /// How many calls the window must hold before failures can open the breaker (default 20;
    /// at least 1).
    #[must_use]
    pub fn with_minimum_calls(self, calls: u32) -> Self {
        self.with(|s| s.minimum_calls = calls)
    }

    /// The share of failed calls in the window that opens the breaker (default 0.5; brought
    /// into 0.01–1).
    #[must_use]
    pub fn with_failure_ratio(self, ratio: f64) -> Self {
        self.with(|s| s.failure_ratio = ratio)
    }

    /// How long the breaker stays open before it lets probes through (default 5 s; to the
    /// kernel's tick, see [`with_window`](Self::with_window)).
    #[must_use]
    pub fn with_open_for(self, open_for: Duration) -> Self {
        self.with(|s| s.open_for = open_for)
    }

    /// How many probe calls may be under way at once while half-open (default 1; at least 1).
    #[must_use]
    pub fn with_probes(self, probes: u32) -> Self {
        self.with(|s| s.probes = probes)
    }

    /// Which response statuses count as failures (default: 5xx).
    #[must_use]
    pub fn with_failure_status(self, rule: fn(StatusCode) -> bool) -> Self {
        Self::build(
            Arc::clone(&self.shared.name),
            self.shared.settings,
            Rules {
                status: rule,
                ..self.shared.rules
            },
            self.shared.findings.clone(),
            self.max_hosts(),
        )
    }

    /// Which errors of the inner service count as failures (default: all — connect errors,
    /// resets, a call cut by its own timeout or by the request's deadline). A call refused
    /// before it was sent (a full bulkhead, a deadline that left no time) never counts, whatever
    /// the rule; an error the rule does not count is booked as a call that did not fail, as a
    /// 4xx is. For example, so that calls cut by the *caller's* deadline — a caller in a
    /// hurry, not a slow downstream — do not open the breaker:
    ///
    /// ```
    /// use vitals_client::{BoxError, CircuitBreakerLayer, DeadlineExceeded};
    ///
    /// fn not_the_callers_deadline(error: &BoxError) -> bool {
    ///     error
    ///         .downcast_ref::<DeadlineExceeded>()
    ///         .is_none_or(|exceeded| !exceeded.by_request_deadline())
    /// }
    /// let breaker = CircuitBreakerLayer::new("search").with_failure_error(not_the_callers_deadline);
    /// # let _ = breaker;
    /// ```
    #[must_use]
    pub fn with_failure_error(self, rule: fn(&BoxError) -> bool) -> Self {
        Self::build(
            Arc::clone(&self.shared.name),
            self.shared.settings,
            Rules {
                error: rule,
                ..self.shared.rules
            },
            self.shared.findings.clone(),
            self.max_hosts(),
        )
    }

    /// A read-only view of the breaker's state. Under [`per_host`](Self::per_host) it is the
    /// template no call goes through (always closed): read [`hosts`](Self::hosts) instead.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::of(Arc::clone(&self.shared))
    }

    /// A read-only view of the per-host breakers ([`per_host`](Self::per_host)); `None` for a
    /// single breaker.
    pub fn hosts(&self) -> Option<HostBreakers> {
        self.hosts.as_ref().map(|hosts| HostBreakers {
            hosts: Arc::clone(hosts),
        })
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, Arc::clone(&self.shared), self.hosts.clone())
    }
}

/// Reads the breakers of a [`per_host`](CircuitBreakerLayer::per_host) layer (for a health
/// page, the dashboard's Downstream panel, a test).
#[derive(Clone, Debug)]
pub struct HostBreakers {
    hosts: Arc<Hosts>,
}

impl HostBreakers {
    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.hosts.template().name
    }

    /// Each host's breaker so far, by name (the host, or `(other hosts)`).
    pub fn all(&self) -> Vec<BreakerHandle> {
        self.hosts.handles()
    }

    /// The breaker of `host` (`host` or `host:port`, as in the request URI), once it was called.
    pub fn get(&self, host: &str) -> Option<BreakerHandle> {
        self.hosts.handle(host)
    }
}

/// Reads a breaker's state (for a health page, a dashboard, a test).
#[derive(Clone, Debug)]
pub struct BreakerHandle {
    shared: Arc<Shared>,
}

impl BreakerHandle {
    pub(crate) fn of(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its state now.
    pub fn state(&self) -> BreakerState {
        self.shared.books().state(self.shared.clock.now())
    }

    /// How many times it opened.
    pub fn times_opened(&self) -> u64 {
        self.shared.books().times_opened
    }

    /// Calls and failures in the window now (zero while open or half-open: the window starts
    /// afresh when the breaker closes).
    pub fn window(&self) -> (u32, u32) {
        self.shared.books().window(
            self.shared.clock.now(),
            &self.shared.settings,
            &self.shared.successes,
        )
    }
}

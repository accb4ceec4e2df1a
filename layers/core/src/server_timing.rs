//! One `Server-Timing` header shared by every layer of a request.
//!
//! The first (outermost) layer that wants a `Server-Timing` header calls
//! [`ServerTiming::attach`] on the request: it inserts a collector into the request extensions
//! and becomes its *owner*. Inner layers calling `attach` join the same collector. Any layer
//! adds [`Metric`]s; the owner renders them once, as the response head passes back through
//! it, with [`ServerTiming::append_to`]. So each layer works alone, and stacked layers share
//! one header line. A `Server-Timing` header the handler set is kept: ours is appended.
//!
//! Rendering follows the W3C Server Timing grammar: metric names must be tokens (others are
//! dropped), `dur` is in milliseconds with at most three decimals, and descriptions are sent
//! as a token or a quoted string with `"` and `\` escaped (control and non-ASCII characters
//! become `?`). At most [`MAX_METRICS`] metrics are kept per request and the rendered line is
//! capped at [`MAX_HEADER_LEN`] bytes, so a chatty layer cannot grow a response header
//! without bound.
//!
//! # One switch for the whole header
//!
//! Timings are a side channel: database time, cache hits, the trace id. Whether a response may
//! carry them is one decision per request, a [`ServerTimingMode`] that every layer honours
//! through [`ServerTiming::attach_for`]. The most restrictive layer wins: once any layer has
//! decided that a request must not see timings, no layer renders the header for it, whichever
//! layer attached the collector, and [`ServerTiming::attach`] cannot undo the decision. The
//! metrics are still collected, so logs (a slow-request warning) keep them.
//!
//! ```
//! use http::{Request, Response};
//! use vitals_core::server_timing::{Metric, ServerTiming, ServerTimingMode};
//!
//! let mut request = Request::new(());
//! // An outer layer that would show timings to everyone attaches first...
//! let outer = ServerTiming::attach(request.extensions_mut());
//! outer.add(Metric::new("total"));
//! // ...and an inner layer configured `Off` denies the header for this request.
//! let inner = ServerTiming::attach_for(&mut request, &ServerTimingMode::Off);
//! assert!(inner.is_some_and(|inner| !inner.is_owner()));
//! let mut response = Response::new(());
//! outer.append_to(response.headers_mut());
//! assert!(response.headers().get("server-timing").is_none());
//! ```
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use vitals_core::server_timing::{Metric, ServerTiming};
//!
//! let mut request = Request::new(());
//! // Outer layer: attaches first, so it owns the header.
//! let outer = ServerTiming::attach(request.extensions_mut());
//! assert!(outer.is_owner());
//! // Inner layer: joins the same collector.
//! let inner = ServerTiming::attach(request.extensions_mut());
//! assert!(!inner.is_owner());
//! inner.add(Metric::new("db").with_duration(Duration::from_micros(4100)).with_description("7 queries"));
//! outer.add(Metric::new("total").with_duration(Duration::from_millis(12)));
//!
//! let mut response = Response::new(());
//! outer.append_to(response.headers_mut());
//! assert_eq!(response.headers()["server-timing"], r#"db;dur=4.1;desc="7 queries", total;dur=12"#);
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::HeaderName;
use http::{Extensions, HeaderMap, HeaderValue, Request};

use crate::secret::constant_time_eq;

/// The `server-timing` header name.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// The most metrics one request keeps; further ones are dropped.
pub const MAX_METRICS: usize = 32;
/// The longest `Server-Timing` line Vitals renders, in bytes; metrics that would pass it are
/// left out.
pub const MAX_HEADER_LEN: usize = 2048;
/// The longest description kept, in bytes; longer ones are cut at a character boundary.
pub const MAX_DESCRIPTION_LEN: usize = 256;

/// Which requests may see a `Server-Timing` header.
///
/// Timings reveal internals — how long the database took, whether a cache hit, the trace id —
/// which can help an attacker probe a service (timing side channels, fingerprinting). Public
/// services may prefer [`ServerTimingMode::when_header`], so only clients that know a token
/// (developers, synthetic monitoring) see them. Every Vitals layer takes the same mode, and the
/// most restrictive one on a request wins (see the [module documentation](self)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ServerTimingMode {
    /// On every response (the default).
    #[default]
    Always,
    /// Never.
    Off,
    /// Only when the request carries header `name`, with value `value` when one is given (the
    /// value compared in constant time, so response times do not reveal how much of a guess
    /// was right).
    WhenHeader {
        /// The request header to look for.
        name: HeaderName,
        /// The value it must have; any value counts when `None`.
        value: Option<HeaderValue>,
    },
}

impl ServerTimingMode {
    /// On only for requests whose header `name` equals `token`.
    pub fn when_header(name: HeaderName, token: HeaderValue) -> Self {
        Self::WhenHeader {
            name,
            value: Some(token),
        }
    }

    /// Whether a request with these headers may see timings.
    // Inlined: asked by every part on every request, and `Always` is one comparison.
    #[inline]
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        match self {
            Self::Always => true,
            Self::Off => false,
            Self::WhenHeader { name, value } => headers.get_all(name).iter().any(|given| {
                value
                    .as_ref()
                    .is_none_or(|expected| constant_time_eq(given.as_bytes(), expected.as_bytes()))
            }),
        }
    }
}

/// `true` → [`Always`](ServerTimingMode::Always), `false` → [`Off`](ServerTimingMode::Off).
impl From<bool> for ServerTimingMode {
    fn from(on: bool) -> Self {
        if on { Self::Always } else { Self::Off }
    }
}

/// One `Server-Timing` metric: a name, and optionally a duration and a description.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    name: Cow<'static, str>,
    /// Whole nanoseconds: formatting integers is several times cheaper than formatting floats.
    duration_nanos: Option<u64>,
    description: Option<Description>,
}

/// Descriptions up to this many bytes are copied into the metric itself (a `traceparent` is 55).
const INLINE_DESCRIPTION: usize = 56;
// Rendered without the length cap applied (`Description::inline_token`).
const _: () = assert!(INLINE_DESCRIPTION <= MAX_DESCRIPTION_LEN);

/// A description: given (static or owned), or a short one copied into the metric.
#[derive(Clone)]
enum Description {
    Given(Cow<'static, str>),
    Inline {
        bytes: [u8; INLINE_DESCRIPTION],
        len: u8,
    },
}

impl Description {
    fn as_str(&self) -> &str {
        match self {
            Self::Given(text) => text,
            Self::Inline { bytes, len } => bytes
                .get(..usize::from(*len))
                .and_then(|bytes| std::str::from_utf8(bytes).ok())
                .unwrap_or_default(),
        }
    }
}

impl Description {
    /// The bytes of a description copied into the metric, when they are a token.
    fn inline_token(&self) -> Option<&[u8]> {
        match self {
            Self::Inline { bytes, len } => bytes
                .get(..usize::from(*len))
                .filter(|bytes| !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))),
            Self::Given(_) => None,
        }
    }
}

impl PartialEq for Description {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Metric {
    /// A metric named `name`. The name must be an HTTP token (`db`, `total`, `cache-hit`); a
    /// metric with any other name is dropped when rendering.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            duration_nanos: None,
            description: None,
        }
    }

    /// Sets the duration (rendered as `dur=` in milliseconds).
    #[must_use]
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration_nanos = Some(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
        self
    }

    /// Sets the duration in milliseconds; negative or non-finite values are not rendered.
    #[must_use]
    pub fn with_duration_ms(mut self, milliseconds: f64) -> Self {
        self.duration_nanos = (milliseconds.is_finite() && milliseconds >= 0.0).then(|| {
            Duration::try_from_secs_f64(milliseconds / 1000.0).map_or(u64::MAX, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
            })
        });
        self
    }

    /// Sets the description (rendered as `desc=`).
    #[must_use]
    pub fn with_description(mut self, description: impl Into<Cow<'static, str>>) -> Self {
        self.description = Some(Description::Given(description.into()));
        self
    }

    /// Sets the description to a copy of `description`, kept in the metric itself when it is
    /// short (up to 56 bytes: a `traceparent`, a count): no allocation for the metrics a
    /// layer adds on every request.
    #[must_use]
    pub fn with_copied_description(self, description: &str) -> Self {
        self.with_copied_description_bytes(description.as_bytes())
    }

    /// [`with_copied_description`](Self::with_copied_description) from bytes, for a
    /// description written as ASCII (a `traceparent` encoded into a buffer): not checked as
    /// UTF-8 unless it is read as text. Bytes that are not UTF-8 read as an empty description
    /// (longer than 56 bytes, their invalid sequences as `U+FFFD`).
    ///
    /// ```
    /// use vitals_core::server_timing::Metric;
    ///
    /// let metric = Metric::new("trace").with_copied_description_bytes(b"00-4bf9-01");
    /// assert_eq!(metric.description(), Some("00-4bf9-01"));
    /// ```
    #[must_use]
    pub fn with_copied_description_bytes(mut self, description: &[u8]) -> Self {
        let mut bytes = [0; INLINE_DESCRIPTION];
        self.description = Some(
            match (
                bytes.get_mut(..description.len()),
                u8::try_from(description.len()),
            ) {
                (Some(dest), Ok(len)) => {
                    dest.copy_from_slice(description);
                    Description::Inline { bytes, len }
                }
                _ => Description::Given(Cow::Owned(
                    String::from_utf8_lossy(description).into_owned(),
                )),
            },
        );
        self
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The duration in milliseconds, if set.
    pub fn duration_ms(&self) -> Option<f64> {
        self.duration_nanos.map(|nanos| nanos as f64 / 1e6)
    }

    /// The description, if set.
    pub fn description(&self) -> Option<&str> {
        self.description.as_ref().map(Description::as_str)
    }

    /// Writes the metric by the Server Timing grammar. `Ok(false)` if its name is not a token;
    /// `Err` if `out` is full.
    fn render(&self, out: &mut Line) -> Result<bool, Full> {
        if !is_token(&self.name) {
            return Ok(false);
        }
        out.push(self.name.as_bytes())?;
        if let Some(nanos) = self.duration_nanos {
            out.push(b";dur=")?;
            write_millis(out, nanos)?;
        }
        if let Some(desc) = &self.description {
            out.push(b";desc=")?;
            match desc.inline_token() {
                // A short token copied in (a `traceparent`): written as it is, without reading
                // it as text first (token bytes are ASCII, and 56 < the length cap).
                Some(token) => out.push(token)?,
                None => write_param_value(out, truncate(desc.as_str(), MAX_DESCRIPTION_LEN))?,
            }
        }
        Ok(true)
    }
}

thread_local! {
    /// The collector of the request whose handler is being polled on this thread.
    static CURRENT: std::cell::Cell<Option<Arc<Shared>>> = const { std::cell::Cell::new(None) };
}

/// The per-request `Server-Timing` collector. Clones share the same metrics.
#[derive(Clone)]
pub struct ServerTiming {
    shared: Arc<Shared>,
    owner: bool,
}

#[derive(Default)]
struct Shared {
    /// Set once any layer denied the header for this request; never cleared.
    denied: AtomicBool,
    collected: Mutex<Collected>,
}

/// Metrics stored in the collector's own allocation; most requests have one to four.
const INLINE_METRICS: usize = 4;

#[derive(Default)]
struct Collected {
    inline: [Option<Metric>; INLINE_METRICS],
    spilled: Vec<Metric>,
    len: usize,
    dropped: usize,
}

impl Collected {
    fn push(&mut self, metric: Metric) {
        if self.len >= MAX_METRICS {
            self.dropped += 1;
        } else if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = Some(metric);
            self.len += 1;
        } else {
            self.spilled.push(metric);
            self.len += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Metric> {
        self.inline.iter().flatten().chain(&self.spilled)
    }
}

/// One header line being rendered, as bytes: on the stack while it is short (the usual case),
/// on the heap past [`INLINE_LINE`] bytes. Writing past [`MAX_HEADER_LEN`] fails.
struct Line {
    inline: [u8; INLINE_LINE],
    len: usize,
    spilled: Option<Vec<u8>>,
}

/// The line is at [`MAX_HEADER_LEN`]: what did not fit is taken back.
#[derive(Debug, PartialEq, Eq)]
struct Full;

/// Bytes of a line rendered without allocating.
const INLINE_LINE: usize = 256;

impl Line {
    fn new() -> Self {
        Self {
            inline: [0; INLINE_LINE],
            len: 0,
            spilled: None,
        }
    }

    fn len(&self) -> usize {
        self.spilled.as_ref().map_or(self.len, Vec::len)
    }

    fn truncate(&mut self, len: usize) {
        match &mut self.spilled {
            Some(spilled) => spilled.truncate(len),
            None => self.len = self.len.min(len),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match &self.spilled {
            Some(spilled) => spilled,
            None => &self.inline[..self.len],
        }
    }

    /// Appends `piece` (visible ASCII and spaces only: the renderer writes nothing else).
    fn push(&mut self, piece: &[u8]) -> Result<(), Full> {
        if self.len() + piece.len() > MAX_HEADER_LEN {
            return Err(Full);
        }
        if let Some(spilled) = &mut self.spilled {
            spilled.extend_from_slice(piece);
        } else if let Some(dest) = self.inline.get_mut(self.len..self.len + piece.len()) {
            dest.copy_from_slice(piece);
            self.len += piece.len();
        } else {
            let mut spilled = Vec::with_capacity(MAX_HEADER_LEN);
            spilled.extend_from_slice(&self.inline[..self.len]);
            spilled.extend_from_slice(piece);
            self.spilled = Some(spilled);
        }
        Ok(())
    }
}

/// The collector as stored in request extensions (never the owner).
#[derive(Clone)]
struct Slot(Arc<Shared>);

/// Left in the request extensions by a layer that denied the header before any collector
/// existed (so denying costs no allocation); a collector attached later starts denied.
#[derive(Clone, Copy)]
struct Denied;

impl ServerTiming {
    /// Joins the request's collector, inserting one if there is none. The handle that
    /// inserted it [is the owner](Self::is_owner) and should render the header.
    ///
    /// This does not consult a [`ServerTimingMode`]; a layer with a mode of its own uses
    /// [`attach_for`](Self::attach_for). A denial made by another layer still holds.
    pub fn attach(extensions: &mut Extensions) -> Self {
        if let Some(slot) = extensions.get::<Slot>() {
            return Self {
                shared: Arc::clone(&slot.0),
                owner: false,
            };
        }
        // `Arc::default` writes the empty collector in its allocation (`Arc::new` copied its
        // ~500 bytes from the stack).
        let shared = Arc::<Shared>::default();
        if extensions.get::<Denied>().is_some() {
            shared.denied.store(true, Ordering::Relaxed);
        }
        extensions.insert(Slot(Arc::clone(&shared)));
        Self {
            shared,
            owner: true,
        }
    }

    /// Takes the collector (and a denial) out of a request's extensions: for a copy of a
    /// request sent on in the background (a cache's refresh), whose timings no client will see
    /// and must not add to the header of the request it was copied from.
    pub fn detach(extensions: &mut Extensions) {
        extensions.remove::<Slot>();
        extensions.remove::<Denied>();
    }

    /// Attaches as [`attach`](Self::attach) does when `mode` allows timings for this request.
    /// When it does not, the header is denied for the whole request — no layer will render it
    /// — and the existing collector, if any, is returned (not as owner) so the caller can still
    /// read what others measured; `None` when there is none.
    pub fn attach_for<B>(request: &mut Request<B>, mode: &ServerTimingMode) -> Option<Self> {
        let allowed = mode.allows(request.headers());
        Self::attach_if(request.extensions_mut(), allowed)
    }

    /// [`attach_for`](Self::attach_for) with the mode's answer already known.
    pub fn attach_if(extensions: &mut Extensions, allowed: bool) -> Option<Self> {
        if allowed {
            return Some(Self::attach(extensions));
        }
        let existing = Self::get(extensions);
        match &existing {
            Some(timing) => timing.deny(),
            None => {
                extensions.insert(Denied);
            }
        }
        existing
    }

    /// Runs `f` with `timing` as the current request's collector, for code the handler runs
    /// (`vitals-client` adds an entry per downstream call); `timing` is moved in and back, not
    /// cloned. `None` leaves the current one as it is.
    pub fn in_scope<R>(timing: &mut Option<ServerTiming>, f: impl FnOnce() -> R) -> R {
        /// Puts the collector back where it came from, and the previous one current, panicking
        /// or not.
        struct Restore<'a> {
            timing: &'a mut Option<ServerTiming>,
            owner: bool,
            previous: Option<Arc<Shared>>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let shared = CURRENT.with(|current| current.replace(self.previous.take()));
                *self.timing = shared.map(|shared| ServerTiming {
                    shared,
                    owner: self.owner,
                });
            }
        }
        let Some(this) = timing.take() else {
            return f();
        };
        let owner = this.owner;
        let previous = CURRENT.with(|current| current.replace(Some(this.shared)));
        let _restore = Restore {
            timing,
            owner,
            previous,
        };
        f()
    }

    /// The collector of the request whose handler is being polled on this thread (not as
    /// owner), when a layer made it current ([`in_scope`](Self::in_scope)).
    pub fn current() -> Option<ServerTiming> {
        CURRENT.with(|current| {
            let shared = current.take();
            let copy = shared.clone();
            current.set(shared);
            copy.map(|shared| ServerTiming {
                shared,
                owner: false,
            })
        })
    }

    /// Denies the header for this request: no layer will render it. Metrics are still kept.
    pub fn deny(&self) {
        self.shared.denied.store(true, Ordering::Relaxed);
    }

    /// Whether a layer denied the header for this request.
    pub fn is_denied(&self) -> bool {
        self.shared.denied.load(Ordering::Relaxed)
    }

    /// The request's collector, if an outer layer attached one. Use this to add metrics only
    /// when some layer will render them.
    pub fn get(extensions: &Extensions) -> Option<Self> {
        extensions.get::<Slot>().map(|slot| Self {
            shared: Arc::clone(&slot.0),
            owner: false,
        })
    }

    /// Whether this handle inserted the collector, and so should render the header.
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Adds a metric. Beyond [`MAX_METRICS`] it is dropped (and counted).
    pub fn add(&self, metric: Metric) {
        self.lock().push(metric);
    }

    /// A copy of the metrics added so far.
    pub fn metrics(&self) -> Vec<Metric> {
        self.lock().iter().cloned().collect()
    }

    /// How many metrics were dropped for passing [`MAX_METRICS`].
    pub fn dropped(&self) -> usize {
        self.lock().dropped
    }

    /// Renders the metrics as one header value; `None` when there is nothing valid to send.
    /// Renders even when the header [is denied](Self::is_denied), for logs;
    /// [`append_to`](Self::append_to) is what honours the denial.
    pub fn render(&self) -> Option<HeaderValue> {
        let collected = self.lock();
        let mut line = Line::new();
        for metric in collected.iter() {
            let before = line.len();
            let separated = before == 0 || line.push(b", ").is_ok();
            // Render in place; take it back if it is invalid or would pass the length cap.
            if !(separated && metric.render(&mut line) == Ok(true)) {
                line.truncate(before);
            }
        }
        if line.len() == 0 {
            return None;
        }
        // Everything written is visible ASCII or space, so this cannot fail; stay total anyway.
        HeaderValue::from_bytes(line.as_bytes()).ok()
    }

    /// Appends the rendered metrics as a `Server-Timing` line, keeping any existing lines;
    /// nothing when a layer [denied](Self::deny) the header for this request.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        if self.is_denied() {
            return;
        }
        if let Some(value) = self.render() {
            headers.append(SERVER_TIMING, value);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Collected> {
        // A panic elsewhere while holding the lock leaves a valid Vec: keep using it.
        self.shared
            .collected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ServerTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let collected = self.lock();
        f.debug_struct("ServerTiming")
            .field("owner", &self.owner)
            .field("denied", &self.is_denied())
            .field("metrics", &collected.iter().collect::<Vec<_>>())
            .field("dropped", &collected.dropped)
            .finish_non_exhaustive()
    }
}

/// RFC 9110 `token`: one or more `tchar`.
/// Whether `name` can name a metric: an HTTP token (letters, digits and ``!#$%&'*+-.^_`|~``).
/// A metric with another name is left out of the header.
pub fn is_valid_name(name: &str) -> bool {
    is_token(name)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// `tchar` by byte: one load per byte where a search of the punctuation showed in profiles
/// (a 55-character `traceparent` description is checked on every request).
static TCHAR: [bool; 256] = crate::ascii::alphanumeric_and(b"!#$%&'*+-.^_`|~");

/// Milliseconds with at most three decimals, rounded, trailing zeros trimmed (`12`, `4.1`,
/// `0.125`), from whole nanoseconds — composed on the stack and written at once.
fn write_millis(out: &mut Line, nanos: u64) -> Result<(), Full> {
    let micros = nanos / 1_000 + u64::from(nanos % 1_000 >= 500);
    let (mut whole, mut fraction) = (micros / 1_000, micros % 1_000);
    // At most 20 digits of `whole` (u64::MAX / 1e6 has 14), a point, three decimals.
    let mut digits = [0u8; 24];
    let mut start = 20;
    loop {
        start -= 1;
        digits[start] = b'0' + u8::try_from(whole % 10).unwrap_or(0);
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    let mut end = 20;
    if fraction > 0 {
        digits[end] = b'.';
        end += 1;
        let mut divisor = 100;
        while fraction > 0 {
            digits[end] = b'0' + u8::try_from(fraction / divisor).unwrap_or(0);
            end += 1;
            fraction %= divisor;
            divisor /= 10;
        }
    }
    out.push(&digits[start..end])
}

/// A token as is, anything else as a quoted string (`"` and `\` escaped, other characters
/// outside visible ASCII and space written as `?`).
fn write_param_value(out: &mut Line, value: &str) -> Result<(), Full> {
    if is_token(value) {
        return out.push(value.as_bytes());
    }
    out.push(b"\"")?;
    // Runs of characters that go in as they are, written at once; a quote or backslash
    // escaped, any other character (a control, a non-ASCII one) as one `?`.
    let mut rest = value;
    while let Some(at) = rest
        .bytes()
        .position(|b| !matches!(b, b' ' | b'\t' | b'!'..=b'~') || b == b'"' || b == b'\\')
    {
        out.push(&rest.as_bytes()[..at])?;
        let Some(c) = rest[at..].chars().next() else {
            break;
        };
        match c {
            '"' | '\\' => out.push(&[b'\\', c as u8])?,
            _ => out.push(b"?")?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push(rest.as_bytes())?;
    out.push(b"\"")
}

fn truncate(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(metrics: impl IntoIterator<Item = Metric>) -> Option<String> {
        let mut extensions = Extensions::new();
        let timing = ServerTiming::attach(&mut extensions);
        for metric in metrics {
            timing.add(metric);
        }
        timing.render().map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_metric_reads_back_what_was_set() {
        let metric = Metric::new("db")
            .with_duration(Duration::from_micros(4100))
            .with_description("7 queries");
        assert_eq!(metric.name(), "db");
        assert_eq!(metric.duration_ms(), Some(4.1));
        assert_eq!(metric.description(), Some("7 queries"));
        let copied = Metric::new("db").with_copied_description("7 queries");
        assert_eq!(copied.description(), Some("7 queries"));
        assert_eq!(copied, Metric::new("db").with_description("7 queries"));
        let long = "é".repeat(40);
        assert_eq!(
            Metric::new("x")
                .with_copied_description(&long)
                .description(),
            Some(long.as_str())
        );
        let bare = Metric::new("cache");
        assert_eq!((bare.duration_ms(), bare.description()), (None, None));
        assert_eq!(
            Metric::new("x").with_duration_ms(2.5).duration_ms(),
            Some(2.5)
        );
    }

    #[test]
    fn a_line_takes_exactly_max_header_len_bytes() {
        let mut line = Line::new();
        let hundred = "h".repeat(100);
        // Short writes add up (200 bytes), whatever their product.
        assert!(line.push(hundred.as_bytes()).is_ok() && line.push(hundred.as_bytes()).is_ok());
        assert_eq!(line.len(), 200);
        let rest = "r".repeat(MAX_HEADER_LEN - 200);
        assert!(line.push(rest.as_bytes()).is_ok(), "exactly the cap fits");
        assert_eq!(line.len(), MAX_HEADER_LEN);
        assert!(line.push(b"x").is_err(), "one byte more does not");
        assert_eq!(line.as_bytes().len(), MAX_HEADER_LEN);
    }

    #[test]
    fn the_current_collector_is_moved_in_and_back() {
        let mut extensions = Extensions::new();
        let mut timing = Some(ServerTiming::attach(&mut extensions));
        assert!(ServerTiming::current().is_none());
        ServerTiming::in_scope(&mut timing, || {
            let current = ServerTiming::current().unwrap();
            assert!(!current.is_owner());
            current.add(Metric::new("payment").with_duration(Duration::from_millis(12)));
        });
        assert!(ServerTiming::current().is_none());
        let timing = timing.unwrap();
        assert!(timing.is_owner());
        let line = timing.render().unwrap();
        assert_eq!(line.to_str().unwrap(), "payment;dur=12");
        let mut none = None;
        assert_eq!(ServerTiming::in_scope(&mut none, || 7), 7);
    }

    #[test]
    fn debug_shows_ownership_and_metrics() {
        let timing = ServerTiming::attach(&mut Extensions::new());
        timing.add(Metric::new("db"));
        let text = format!("{timing:?}");
        assert!(text.starts_with("ServerTiming"), "{text}");
        assert!(
            text.contains("owner: true") && text.contains("\"db\""),
            "{text}"
        );
    }

    #[test]
    fn the_first_attacher_owns_and_later_ones_join() {
        let mut extensions = Extensions::new();
        assert!(ServerTiming::get(&extensions).is_none());
        let owner = ServerTiming::attach(&mut extensions);
        let joined = ServerTiming::attach(&mut extensions);
        let looked_up = ServerTiming::get(&extensions).unwrap();
        assert!(owner.is_owner());
        assert!(!joined.is_owner() && !looked_up.is_owner());

        joined.add(Metric::new("db"));
        looked_up.add(Metric::new("cache"));
        assert_eq!(owner.metrics().len(), 2);
    }

    #[test]
    fn a_description_copied_from_bytes_renders_as_the_same_text() {
        let from_text = Metric::new("trace").with_copied_description("00-abc-01");
        let from_bytes = Metric::new("trace").with_copied_description_bytes(b"00-abc-01");
        assert_eq!(from_text, from_bytes);
        assert_eq!(
            render([from_bytes]).as_deref(),
            Some("trace;desc=00-abc-01")
        );
        // Not a token: quoted, as a description given as text.
        let spaced = Metric::new("m").with_copied_description_bytes(b"two words");
        assert_eq!(render([spaced]).as_deref(), Some("m;desc=\"two words\""));
        // Not UTF-8: empty when short, replaced where invalid when long; never a panic.
        let short = Metric::new("m").with_copied_description_bytes(&[0xff, b'a']);
        assert_eq!(short.description(), Some(""));
        assert_eq!(render([short]).as_deref(), Some("m;desc=\"\""));
        let mut long = vec![b'a'; 60];
        long[0] = 0xff;
        let long = Metric::new("m").with_copied_description_bytes(&long);
        assert!(
            long.description()
                .is_some_and(|d| d.starts_with('\u{fffd}'))
        );
        // Short text that is UTF-8 but not a token: quoted, its non-ASCII character as `?`.
        let accented = Metric::new("m").with_copied_description_bytes("é".as_bytes());
        assert_eq!(accented.description(), Some("é"));
        assert_eq!(render([accented]).as_deref(), Some("m;desc=\"?\""));
        // Either side of the inline limit (56 bytes), the same text renders the same.
        for len in [INLINE_DESCRIPTION, INLINE_DESCRIPTION + 1] {
            let text = "a".repeat(len);
            let metric = Metric::new("m").with_copied_description_bytes(text.as_bytes());
            assert_eq!(metric.description(), Some(text.as_str()));
            assert_eq!(render([metric]), Some(format!("m;desc={text}")));
        }
    }

    #[test]
    fn durations_have_at_most_three_decimals() {
        let line = render([
            Metric::new("a").with_duration(Duration::from_millis(12)),
            Metric::new("b").with_duration(Duration::from_micros(4100)),
            Metric::new("c").with_duration(Duration::from_nanos(1_234_567)),
            Metric::new("d").with_duration_ms(0.0004),
            Metric::new("e").with_duration_ms(f64::NAN),
            Metric::new("f").with_duration_ms(-1.0),
        ]);
        assert_eq!(
            line.unwrap(),
            "a;dur=12, b;dur=4.1, c;dur=1.235, d;dur=0, e, f"
        );
    }

    #[test]
    fn descriptions_are_tokens_or_escaped_quoted_strings() {
        let line = render([
            Metric::new("db").with_description("7 queries"),
            Metric::new("cache").with_description("hit"),
            Metric::new("x").with_description(r#"say "hi" \ bye"#),
            Metric::new("y").with_description("line\r\nbreak é"),
            Metric::new("z").with_description(""),
        ]);
        assert_eq!(
            line.unwrap(),
            r#"db;desc="7 queries", cache;desc=hit, x;desc="say \"hi\" \\ bye", y;desc="line??break ?", z;desc="""#
        );
    }

    #[test]
    fn invalid_names_are_dropped() {
        let line = render([
            Metric::new(""),
            Metric::new("has space"),
            Metric::new("semi;colon"),
            Metric::new("ok"),
            Metric::new("ünï"),
        ]);
        assert_eq!(line.unwrap(), "ok");
        assert_eq!(render([Metric::new("bad name")]), None);
        assert_eq!(render([]), None);
    }

    #[test]
    fn metric_count_and_line_length_are_capped() {
        let mut extensions = Extensions::new();
        let timing = ServerTiming::attach(&mut extensions);
        for i in 0..MAX_METRICS + 5 {
            timing.add(Metric::new(format!("m{i}")));
        }
        assert_eq!(timing.metrics().len(), MAX_METRICS);
        assert_eq!(timing.dropped(), 5);

        let huge = "d".repeat(10 * MAX_DESCRIPTION_LEN);
        let line =
            render((0..40).map(|i| Metric::new(format!("m{i}")).with_description(huge.clone())))
                .unwrap();
        assert!(line.len() <= MAX_HEADER_LEN, "{} bytes", line.len());
        assert!(line.starts_with(&format!("m0;desc={}", "d".repeat(MAX_DESCRIPTION_LEN))));
        // A description cut inside a multi-byte character stays valid.
        let accents = "é".repeat(200);
        let cut = truncate(&accents, MAX_DESCRIPTION_LEN - 1);
        assert_eq!(cut.len(), MAX_DESCRIPTION_LEN - 2);
    }

    fn rendered_line(timing: &ServerTiming) -> Option<HeaderValue> {
        let mut headers = HeaderMap::new();
        timing.append_to(&mut headers);
        headers.get(SERVER_TIMING).cloned()
    }

    #[test]
    fn a_denial_by_any_layer_holds_for_the_whole_request() {
        // Denied after an outer layer attached: the owner renders nothing.
        let mut request = Request::new(());
        let owner = ServerTiming::attach(request.extensions_mut());
        owner.add(Metric::new("trace").with_description("00-x"));
        let inner = ServerTiming::attach_for(&mut request, &ServerTimingMode::Off);
        inner
            .expect("joins the existing collector")
            .add(Metric::new("db"));
        assert_eq!(rendered_line(&owner), None);
        assert_eq!(owner.metrics().len(), 2, "still collected for logs");

        // Denied before anyone attached: later collectors start denied, whoever inserts them.
        let mut request = Request::new(());
        assert!(ServerTiming::attach_for(&mut request, &ServerTimingMode::Off).is_none());
        let late = ServerTiming::attach(request.extensions_mut());
        assert!(late.is_owner());
        late.add(Metric::new("total"));
        assert_eq!(rendered_line(&late), None);
        let allowed = ServerTiming::attach_for(&mut request, &ServerTimingMode::Always);
        assert!(allowed.is_some_and(|timing| timing.is_denied()));
        assert_eq!(rendered_line(&late), None);

        // Allowed everywhere: rendered.
        let mut request = Request::new(());
        let owner =
            ServerTiming::attach_for(&mut request, &ServerTimingMode::Always).expect("allowed");
        owner.add(Metric::new("total"));
        assert_eq!(rendered_line(&owner).unwrap(), "total");
    }

    #[test]
    fn when_header_needs_the_exact_token() {
        let name = HeaderName::from_static("x-timing");
        let mode = ServerTimingMode::when_header(name.clone(), HeaderValue::from_static("s3cret"));
        let mut headers = HeaderMap::new();
        assert!(!mode.allows(&headers));
        for wrong in ["s3cre", "s3cret!", "S3CRET", ""] {
            headers.insert(name.clone(), HeaderValue::from_static(wrong));
            assert!(!mode.allows(&headers), "{wrong:?}");
        }
        headers.append(name.clone(), HeaderValue::from_static("s3cret"));
        assert!(mode.allows(&headers), "any of several lines may carry it");
        let any = ServerTimingMode::WhenHeader { name, value: None };
        assert!(any.allows(&headers));
        assert!(!any.allows(&HeaderMap::new()));
        assert!(ServerTimingMode::from(true).allows(&HeaderMap::new()));
        assert!(!ServerTimingMode::from(false).allows(&HeaderMap::new()));
    }

    #[test]
    fn existing_header_lines_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(SERVER_TIMING, HeaderValue::from_static("app;dur=3"));
        let mut extensions = Extensions::new();
        let timing = ServerTiming::attach(&mut extensions);
        timing.add(Metric::new("total").with_duration_ms(5.0));
        timing.append_to(&mut headers);
        let lines: Vec<_> = headers.get_all(SERVER_TIMING).iter().collect();
        assert_eq!(lines, ["app;dur=3", "total;dur=5"]);

        // Nothing to render: no empty header line.
        let empty = ServerTiming::attach(&mut Extensions::new());
        empty.append_to(&mut headers);
        assert_eq!(headers.get_all(SERVER_TIMING).iter().count(), 2);
    }
}

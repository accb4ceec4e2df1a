//! The recorder's handle of each label set, resolved at the set's first sample and kept.
//!
//! Without them a sample costs up to five labels built (strings allocated for the host, the
//! port and the status), then the recorder hashing the key, finding it in its registry and
//! cloning it: ~2,200 instructions for the layer on a call to `GET /` (two labels) with the
//! Prometheus recorder, ~700 with them. With them: one
//! hash of the method, host and port under a shared lock when the call starts, and a scan of
//! the few outcomes seen when it ends. The first triple and the first outcome of each are
//! kept apart, read without a lock or a hash: a client stack calls one downstream, mostly
//! with one method, and most calls succeed.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use hashbrown::{Equivalent, HashMap};
use http::StatusCode;
use metrics::{Histogram, Label};
use vitals_core::semconv;

/// At most this many method, host and port triples are kept; past it, a call's handles are
/// resolved for that call alone (a client calling unbounded hosts costs the labels and the
/// recorder's lookup per call, as without the table, and no memory here; the recorder keeps
/// a series per label set either way).
pub const MAX_DOWNSTREAMS: usize = 1024;

/// At most this many outcomes (a status, or the kind of a failure) are kept per triple; past
/// it, the handle is resolved for that sample alone.
pub const MAX_OUTCOMES: usize = 32;

/// The handles of one [`ClientMetrics`](super::ClientMetrics) and its clones.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    /// `server.address` and `server.port` of calls whose URI names no server.
    server: Option<(Box<str>, u16)>,
    /// The first triple seen.
    first: OnceLock<(Address, Arc<Downstream>)>,
    /// The others.
    downstreams: RwLock<HashMap<Address, Arc<Downstream>>>,
}

/// The labels known when a call starts.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Address {
    method: &'static str,
    server: Option<(Box<str>, u16)>,
}

/// An [`Address`] borrowed from the request: hashed as the owned one is (the derived `Hash`
/// of a `Box<str>` and of a `&str` are both the string's), so the map is searched without
/// copying the host.
#[derive(Hash)]
struct AddressRef<'a> {
    method: &'static str,
    server: Option<(&'a str, u16)>,
}

impl Equivalent<Address> for AddressRef<'_> {
    fn equivalent(&self, key: &Address) -> bool {
        self.method == key.method
            && match (&self.server, &key.server) {
                (Some((host, port)), Some((key_host, key_port))) => {
                    port == key_port && *host == &**key_host
                }
                (None, None) => true,
                _ => false,
            }
    }
}

impl Handles {
    pub(crate) fn new(server: Option<(Box<str>, u16)>) -> Self {
        Self {
            server,
            ..Self::default()
        }
    }

    /// The server given for calls whose URI names none.
    pub(crate) fn server(&self) -> Option<(&str, u16)> {
        self.server.as_ref().map(|(host, port)| (&**host, *port))
    }

    /// The handles of calls with this method to this server (host and port).
    pub(crate) fn downstream(
        &self,
        method: &'static str,
        server: Option<(&str, u16)>,
    ) -> Arc<Downstream> {
        let borrowed = AddressRef { method, server };
        if let Some((address, downstream)) = self.first.get()
            && borrowed.equivalent(address)
        {
            return Arc::clone(downstream);
        }
        let full = {
            let map = self
                .downstreams
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(downstream) = map.get(&borrowed) {
                return Arc::clone(downstream);
            }
            self.first.get().is_some() && map.len() + 1 >= MAX_DOWNSTREAMS
        };
        let address = Address {
            method,
            server: server.map(|(host, port)| (host.into(), port)),
        };
        // Made outside the lock; past the bound, for this call alone, without the exclusive
        // lock (which would stall every other caller's lookup).
        let downstream = Arc::new(Downstream::new(&address));
        if full {
            return downstream;
        }
        let mut map = self
            .downstreams
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another caller may have kept it since the reads above.
        if let Some((address, downstream)) = self.first.get()
            && borrowed.equivalent(address)
        {
            return Arc::clone(downstream);
        }
        if let Some(downstream) = map.get(&borrowed) {
            return Arc::clone(downstream);
        }
        if self.first.get().is_none() {
            // Under the write lock: no other caller is making a triple.
            let _ = self.first.set((address, Arc::clone(&downstream)));
        } else if map.len() + 1 < MAX_DOWNSTREAMS {
            map.insert(address, Arc::clone(&downstream));
        }
        downstream
    }

    /// How many triples are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        usize::from(self.first.get().is_some())
            + self
                .downstreams
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
    }
}

/// How a call ended: the labels known only then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response head with this status.
    Answered(StatusCode),
    /// No answer: `error.type`.
    Failed(&'static str),
}

/// The handles of one method, host and port: one per outcome seen.
#[derive(Debug)]
pub(crate) struct Downstream {
    /// The labels every sample of these calls carries.
    labels: Vec<Label>,
    /// The first outcome seen.
    first: OnceLock<(Outcome, Histogram)>,
    /// The others.
    outcomes: RwLock<Vec<(Outcome, Histogram)>>,
}

impl Downstream {
    fn new(address: &Address) -> Self {
        let mut labels = Vec::with_capacity(5);
        labels.push(Label::from_static_parts(
            semconv::HTTP_REQUEST_METHOD,
            address.method,
        ));
        if let Some((host, port)) = &address.server {
            labels.push(Label::new(semconv::SERVER_ADDRESS, host.to_string()));
            labels.push(Label::new(semconv::SERVER_PORT, port.to_string()));
        }
        Self {
            labels,
            first: OnceLock::new(),
            outcomes: RwLock::default(),
        }
    }

    /// Records a call's duration in seconds under its outcome.
    pub(crate) fn record(&self, outcome: Outcome, seconds: f64) {
        if let Some((first, histogram)) = self.first.get()
            && *first == outcome
        {
            histogram.record(seconds);
            return;
        }
        let full = {
            let outcomes = self.outcomes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, histogram)) = outcomes.iter().find(|(seen, _)| *seen == outcome) {
                histogram.record(seconds);
                return;
            }
            self.first.get().is_some() && outcomes.len() + 1 >= MAX_OUTCOMES
        };
        let histogram = self.register(outcome);
        histogram.record(seconds);
        if full {
            // Resolved for this sample alone, without the exclusive lock.
            return;
        }
        let mut outcomes = self
            .outcomes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let known = |seen: &Outcome| *seen == outcome;
        if self.first.get().is_some_and(|(seen, _)| known(seen))
            || outcomes.iter().any(|(seen, _)| known(seen))
        {
            return;
        }
        if self.first.get().is_none() {
            // Under the write lock: no other caller is keeping an outcome.
            let _ = self.first.set((outcome, histogram));
        } else if outcomes.len() + 1 < MAX_OUTCOMES {
            outcomes.push((outcome, histogram));
        }
    }

    /// The recorder's handle of these labels and `outcome`'s.
    fn register(&self, outcome: Outcome) -> Histogram {
        let mut labels = self.labels.clone();
        match outcome {
            Outcome::Answered(status) => {
                let code = status.as_str();
                labels.push(Label::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    code.to_owned(),
                ));
                if status.is_client_error() || status.is_server_error() {
                    labels.push(Label::new(semconv::ERROR_TYPE, code.to_owned()));
                }
            }
            Outcome::Failed(error_type) => {
                labels.push(Label::from_static_parts(semconv::ERROR_TYPE, error_type));
            }
        }
        metrics::histogram!(semconv::HTTP_CLIENT_REQUEST_DURATION, labels)
    }

    /// How many outcomes are kept.
    #[cfg(test)]
    fn outcomes(&self) -> usize {
        usize::from(self.first.get().is_some())
            + self
                .outcomes
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    /// Each label set's samples, its labels sorted.
    fn samples(recorder: &DebuggingRecorder) -> Vec<(Vec<String>, usize)> {
        let mut samples: Vec<_> = recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let mut labels: Vec<String> = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                let DebugValue::Histogram(values) = value else {
                    panic!("not a histogram: {value:?}");
                };
                (labels, values.len())
            })
            .collect();
        samples.sort();
        samples
    }

    #[test]
    fn one_handle_per_label_set_and_every_sample_recorded() {
        let recorder = DebuggingRecorder::new();
        let handles = Handles::default();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..3 {
                let payment = handles.downstream("POST", Some(("payment.internal", 8443)));
                payment.record(Outcome::Answered(StatusCode::OK), 0.01);
                payment.record(Outcome::Answered(StatusCode::SERVICE_UNAVAILABLE), 0.02);
                payment.record(Outcome::Failed("timeout"), 2.0);
            }
            handles
                .downstream("GET", Some(("payment.internal", 8443)))
                .record(Outcome::Answered(StatusCode::OK), 0.01);
            handles
                .downstream("GET", None)
                .record(Outcome::Answered(StatusCode::NOT_FOUND), 0.01);
        });
        assert_eq!(
            handles.len(),
            3,
            "POST and GET to the payment service, GET to none"
        );
        let payment = handles.downstream("POST", Some(("payment.internal", 8443)));
        assert_eq!(payment.outcomes(), 3);
        let server = ["server.address=payment.internal", "server.port=8443"];
        let set = |extra: &[&str]| {
            let mut labels: Vec<String> = server
                .iter()
                .chain(extra)
                .map(|l| (*l).to_owned())
                .collect();
            labels.sort();
            labels
        };
        let mut expected = vec![
            (
                set(&["http.request.method=GET", "http.response.status_code=200"]),
                1,
            ),
            (
                set(&["http.request.method=POST", "http.response.status_code=200"]),
                3,
            ),
            (
                set(&[
                    "error.type=503",
                    "http.request.method=POST",
                    "http.response.status_code=503",
                ]),
                3,
            ),
            (set(&["error.type=timeout", "http.request.method=POST"]), 3),
            (
                vec![
                    "error.type=404".to_owned(),
                    "http.request.method=GET".to_owned(),
                    "http.response.status_code=404".to_owned(),
                ],
                1,
            ),
        ];
        expected.sort();
        assert_eq!(samples(&recorder), expected);
    }

    #[test]
    fn a_borrowed_address_hashes_and_compares_as_the_kept_one() {
        use std::hash::BuildHasher;
        let hasher = hashbrown::DefaultHashBuilder::default();
        let triples = [
            ("GET", Some(("payment.internal", 8080))),
            ("GET", Some(("payment.internal", 8081))),
            ("POST", Some(("payment.internal", 8080))),
            ("GET", None),
        ];
        for (at, &(method, server)) in triples.iter().enumerate() {
            let borrowed = AddressRef { method, server };
            for (other_at, &(other_method, other_server)) in triples.iter().enumerate() {
                let kept = Address {
                    method: other_method,
                    server: other_server.map(|(host, port)| (host.into(), port)),
                };
                assert_eq!(borrowed.equivalent(&kept), at == other_at);
                if at == other_at {
                    assert_eq!(hasher.hash_one(&borrowed), hasher.hash_one(&kept));
                }
            }
        }
    }

    #[test]
    fn bounded_past_the_limits_and_still_recorded() {
        let recorder = DebuggingRecorder::new();
        let handles = Handles::default();
        metrics::with_local_recorder(&recorder, || {
            for port in 0..MAX_DOWNSTREAMS + 10 {
                let port = u16::try_from(port).unwrap_or(u16::MAX);
                handles
                    .downstream("GET", Some(("api.example", port)))
                    .record(Outcome::Answered(StatusCode::OK), 0.001);
            }
            let one = handles.downstream("GET", Some(("api.example", 0)));
            for status in 200..200 + u16::try_from(MAX_OUTCOMES).unwrap_or(0) + 10 {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                one.record(Outcome::Answered(status), 0.001);
            }
            assert_eq!(one.outcomes(), MAX_OUTCOMES);
        });
        assert_eq!(handles.len(), MAX_DOWNSTREAMS);
        let samples = samples(&recorder);
        assert_eq!(samples.len(), MAX_DOWNSTREAMS + 10 + MAX_OUTCOMES + 9);
        assert_eq!(
            samples.iter().map(|(_, n)| n).sum::<usize>(),
            MAX_DOWNSTREAMS + 10 + MAX_OUTCOMES + 10
        );
    }
}

//! `vitals-trace-context`: W3C trace-context propagation, request ids, and spans that reach OTLP backends.
//!
//! Status: planned. This crate is an empty placeholder so the workspace layout is in place;
//! it will hold a W3C Trace Context (Level 2) parser and formatter, a server layer that extracts or starts a trace, request ids, OpenTelemetry-semconv request spans, and propagation to outgoing calls.

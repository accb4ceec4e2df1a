//! `vitals`: The Vitals preset stack: every layer in the right order behind one builder.
//!
//! Status: planned. This crate is an empty placeholder so the workspace layout is in place;
//! it will hold re-exports of each layer crate behind a feature of the same name, the ordered preset stack `VitalsLayer`, and one-call telemetry setup.

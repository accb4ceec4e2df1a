//! `vitals-cache-headers`: Cache-Control by policy, ETags and conditional requests with safe defaults.
//!
//! Status: planned. This crate is an empty placeholder so the workspace layout is in place;
//! it will hold typed Cache-Control policies per route, safe defaults for authenticated and error responses, ETags computed from small bodies, and 304/412 answers to conditional requests.

//! Placeholder: the benchmark comes with the layer.
fn main() {}

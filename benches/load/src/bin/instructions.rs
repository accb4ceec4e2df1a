//! `instructions VARIANT ROUTE N`: sends N requests in-process (tower `oneshot`, body read to its
//! end) through the variant's app, on one thread. `scripts/loadtest` runs it under callgrind
//! twice (two values of N) and divides the difference in instructions by the difference in
//! requests: the per-request count, with start-up cancelled out.

use std::process::ExitCode;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;
use vitals_load::Variant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(variant), Some(route), Some(count)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: instructions bare|bare-layer|vitals|vitals-otlp|vitals-off|peer /json/42 N");
        return ExitCode::FAILURE;
    };
    let (variant, count) = match (variant.parse::<Variant>(), count.parse::<u64>()) {
        (Ok(variant), Ok(count)) => (variant, count),
        (Err(error), _) => {
            eprintln!("instructions: {error}");
            return ExitCode::FAILURE;
        }
        (_, Err(error)) => {
            eprintln!("instructions: N: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match vitals_load::single_thread_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("instructions: {error}");
            return ExitCode::FAILURE;
        }
    };
    // OTLP export goes nowhere here: the batch exporter's cost is off the request path.
    let otlp = (variant == Variant::VitalsOtlp).then_some("http://127.0.0.1:9");
    let result = runtime.block_on(async {
        let telemetry = vitals_load::install_telemetry(variant, otlp)?;
        let (pool, _file) = vitals_load::database().await.map_err(|e| e.to_string())?;
        let app = vitals_load::app(variant, pool);
        for _ in 0..count {
            let request = Request::get(route.as_str())
                .body(Body::empty())
                .map_err(|e| e.to_string())?;
            let response = app
                .clone()
                .oneshot(request)
                .await
                .map_err(|e| e.to_string())?;
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map_err(|e| e.to_string())?;
        }
        drop(telemetry);
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("instructions: {error}");
            ExitCode::FAILURE
        }
    }
}

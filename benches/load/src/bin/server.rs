//! `server --variant bare|bare-layer|vitals|vitals-otlp|vitals-off|peer --listen ADDR [--otlp URL] [--workers N]`
//! serves the load test's app; `server --discard-otlp ADDR` is an OTLP/HTTP receiver that reads
//! and drops every export (the collector of the `vitals-otlp` variant).

use std::process::ExitCode;

use vitals_load::{MAX_RUN, Variant};

struct Args {
    variant: Option<Variant>,
    listen: String,
    otlp: Option<String>,
    workers: usize,
    discard: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        variant: None,
        listen: "127.0.0.1:8080".to_owned(),
        otlp: None,
        workers: 1,
        discard: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--variant" => args.variant = Some(value()?.parse()?),
            "--listen" => args.listen = value()?,
            "--otlp" => args.otlp = Some(value()?),
            "--workers" => {
                args.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?;
            }
            "--discard-otlp" => args.discard = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        match (&args.discard, args.variant) {
            (Some(addr), _) => discard(addr).await,
            (None, Some(variant)) => serve(variant, &args).await,
            (None, None) => Err("give --variant or --discard-otlp".to_owned()),
        }
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(variant: Variant, args: &Args) -> Result<(), String> {
    let telemetry = vitals_load::install_telemetry(variant, args.otlp.as_deref())?;
    let (pool, _file) = vitals_load::database().await.map_err(|e| e.to_string())?;
    let app = vitals_load::app(variant, pool);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!("serving {variant:?} on {}", args.listen);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop())
        .await
        .map_err(|e| e.to_string())?;
    drop(telemetry);
    Ok(())
}

async fn discard(addr: &str) -> Result<(), String> {
    let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
        let _ = body.len();
        axum::http::StatusCode::OK
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!("discarding OTLP on {addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(stop())
        .await
        .map_err(|e| e.to_string())
}

/// SIGINT, SIGTERM, or the time limit.
async fn stop() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(term) => { term.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
        () = tokio::time::sleep(MAX_RUN) => {}
    }
}

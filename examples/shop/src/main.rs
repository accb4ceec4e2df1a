//! `shop`: the Vitals example service. `cargo run -p shop -- --help` lists the options.

use std::process::ExitCode;

use clap::Parser;
use shop::{Config, Shop, db::Backend, logging};

fn main() -> ExitCode {
    let config = Config::parse();
    // Outside the runtime: the OTLP exporter's blocking client is built and shut down here.
    let endpoint = logging::otlp_endpoint(config.otlp_endpoint.as_deref());
    let telemetry = match logging::init(config.log_format, endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("shop: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shop: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "shop stopped");
            eprintln!("shop: {error}");
            ExitCode::FAILURE
        }
    };
    drop(runtime);
    // Flushes the logs and exports the last spans.
    drop(telemetry);
    code
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let listen = config.listen;
    let database = match Backend::of_url(&config.database_url) {
        Some(Backend::Postgres) => "PostgreSQL",
        _ if config.database_url.contains(":memory:") => "in-memory SQLite",
        _ => "SQLite file",
    };
    let shop = Shop::start(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    tracing::info!(%url, database, workload_rounds = shop.workload().rounds(), "shop listening");
    // The banner goes to stderr so stdout stays pure JSON logs when piped.
    eprintln!(
        "\nshop listening on {url} ({database})\n\nTry:\n  \
         curl -s {url}/products/1\n  \
         curl -s {url}/orders | head -c 300\n  \
         curl -s {url}/orders/n-plus-one | head -c 300   # same JSON, one query per order\n  \
         curl -s {url}/report                            # CPU work off the executor\n  \
         curl -s {url}/report/blocking                   # the same work blocking the executor\n  \
         curl -s '{url}/slow?ms=1500'\n  \
         curl -s -H 'Authorization: Bearer demo' {url}/me\n  \
         curl -s {url}/checkout\n"
    );
    axum::serve(listener, shop.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await?;
    shop.db().close().await;
    Ok(())
}

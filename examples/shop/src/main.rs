//! `shop`: the Vitals example service. `cargo run -p shop -- --help` lists the options.

use std::process::ExitCode;

use clap::Parser;
use shop::{Config, LogFormat, Shop, db::Backend};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    // Logs with trace ids, a Prometheus recorder for `/metrics`, and request spans exported by
    // OTLP when `--otlp-endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT names a collector.
    let mut telemetry = vitals::telemetry::builder().with_service_name("shop");
    if let Some(format) = config.log_format {
        telemetry = telemetry.with_log_format(match format {
            LogFormat::Json => vitals::telemetry::LogFormat::Json,
            LogFormat::Pretty => vitals::telemetry::LogFormat::Pretty,
        });
    }
    if let Some(endpoint) = &config.otlp_endpoint {
        telemetry = telemetry.with_otlp_endpoint(endpoint);
    }
    // sqlx's query events do not name the database: say which, for the fingerprints.
    if Backend::of_url(&config.database_url) == Some(Backend::Sqlite) {
        telemetry = telemetry.with_sql_dialect(vitals::queries::fingerprint::SqlDialect::Sqlite);
    }
    let telemetry = match telemetry.install() {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("shop: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "shop stopped");
            eprintln!("shop: {error}");
            ExitCode::FAILURE
        }
    };
    // Flushes the logs and exports the last spans.
    drop(telemetry);
    code
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let listen = config.listen;
    let demo_traffic = config.demo_traffic;
    let database = match Backend::of_url(&config.database_url) {
        Some(Backend::Postgres) => "PostgreSQL",
        _ if config.database_url.contains(":memory:") => "in-memory SQLite",
        _ => "SQLite file",
    };
    // The database, the payment stub, and the router behind `VitalsLayer` (see `shop::vitals_layer`).
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
         curl -s {url}/checkout\n  \
         curl -s {url}/metrics | grep http_server\n\n\
         Dashboard: {url}/_vitals   (add --demo-traffic to see it move)\n"
    );
    if demo_traffic {
        shop::demo::spawn(
            url.clone(),
            shop.payment_stub().map(shop::payment::PaymentStub::control),
        );
        eprintln!("driving demo traffic: open {url}/_vitals");
    }
    axum::serve(
        listener,
        shop.router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await?;
    shop.db().close().await;
    Ok(())
}

//! Write your own saga: an order-fulfilment saga registered with the orchestrator library in
//! your own binary. The README's walkthrough explains it line by line.
//!
//! Run it like the `orchestrator` binary (same flags and environment variables):
//! `cargo run -p sagaflow-orchestrator --example my_saga -- --namespace shop`

use clap::Parser;
use sagaflow_orchestrator::{Config, Orchestrator, SagaContext, SagaError, SagaRegistry};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    order_id: String,
    sku: String,
    quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reservation {
    reservation_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Invoice {
    invoice_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Fulfilment {
    reservation_id: String,
    invoice_id: String,
    shipment_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Shipment {
    shipment_id: String,
}

/// Reserves stock and writes the invoice in parallel, then ships. Each `ctx.activity` is one
/// step, run by whichever activity service consumes `<namespace>.activity.<name>`.
async fn fulfil_order(ctx: SagaContext, order: Order) -> Result<Fulfilment, SagaError> {
    let (reservation, invoice) = futures::join!(
        ctx.activity::<Reservation, _>("ReserveStock", &order),
        ctx.activity::<Invoice, _>("CreateInvoice", &order),
    );
    let (reservation, invoice) = (reservation?, invoice?);
    if order.quantity == 0 {
        return Err(SagaError::new("an order of nothing cannot ship"));
    }
    let shipment: Shipment = ctx.activity("ShipOrder", &reservation).await?;
    Ok(Fulfilment {
        reservation_id: reservation.reservation_id,
        invoice_id: invoice.invoice_id,
        shipment_id: shipment.shipment_id,
    })
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

/// Exits with the error printed once per cause (`Report`).
#[tokio::main]
async fn main() -> Result<(), sagaflow_process::Report> {
    Ok(run().await?)
}

async fn run() -> anyhow::Result<()> {
    let _traces = sagaflow_orchestrator::init_tracing();
    let mut registry = SagaRegistry::new();
    registry.register("FulfilOrder", fulfil_order)?;
    let shutdown = sagaflow_orchestrator::shutdown_on_signals()?;
    Orchestrator::new(registry)
        .run(Cli::parse().config, shutdown)
        .await?;
    Ok(())
}

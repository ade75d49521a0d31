//! A complete activity service: `ReserveStock` reserves items of a product, once per saga step.
//!
//! Run it against a local RabbitMQ with `cargo run -p sagaflow-sdk --example my_activity`; send it
//! commands by starting a saga that calls `ctx.activity("ReserveStock", …)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use clap::Parser;
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use serde::{Deserialize, Serialize};

/// The activity's input: the saga's command payload.
#[derive(Debug, Deserialize)]
struct ReserveStock {
    sku: String,
    quantity: u32,
}

/// The activity's output: what the saga gets back.
#[derive(Debug, Clone, Serialize)]
struct Reservation {
    reservation_id: String,
    sku: String,
    quantity: u32,
}

/// The service's state. A real service keeps it in its own database, with the idempotency key
/// as a unique column.
#[derive(Default)]
struct Warehouse {
    reservations: Mutex<HashMap<String, Reservation>>,
}

impl Warehouse {
    /// Reserves once per idempotency key: a redelivered command gets the first answer again.
    async fn reserve(
        &self,
        ctx: ActivityContext,
        request: ReserveStock,
    ) -> Result<Reservation, ActivityError> {
        if request.quantity == 0 {
            // Permanent: another attempt would fail the same way, so the saga compensates.
            return Err(ActivityError::permanent(
                "InvalidQuantity",
                "reserve at least one item",
            ));
        }
        let mut reservations = self
            .reservations
            .lock()
            .map_err(|_| ActivityError::transient("WarehouseUnavailable", "state lock poisoned"))?;
        let reservation = reservations
            .entry(ctx.idempotency_key().to_string())
            .or_insert_with(|| Reservation {
                reservation_id: format!("res-{}-{}", ctx.saga_id(), ctx.step()),
                sku: request.sku,
                quantity: request.quantity,
            });
        tracing::info!(reservation = reservation.reservation_id, "stock reserved");
        Ok(reservation.clone())
    }
}

#[derive(Parser)]
#[command(about = "Reserves stock for sagas")]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,
}

/// Exits with the error printed once per cause (`Report`).
#[tokio::main]
async fn main() -> Result<(), sagaflow_sdk::Report> {
    Ok(run().await?)
}

async fn run() -> anyhow::Result<()> {
    let _crash_points = sagaflow_sdk::init_process()?;
    let args = Args::parse();

    let warehouse = Arc::new(Warehouse::default());
    ActivityWorker::new(args.worker.into_config("stock-service"))
        .register("ReserveStock", move |ctx, request: ReserveStock| {
            let warehouse = Arc::clone(&warehouse);
            async move { warehouse.reserve(ctx, request).await }
        })
        .run_until_signalled()
        .await?;
    Ok(())
}

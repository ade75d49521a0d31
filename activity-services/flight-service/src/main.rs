//! `flight-service`: the activity service behind `ReserveFlight` and its compensation
//! `CancelFlight`, for the demo `BookTrip` saga. Reservations are rows in its own
//! `flight_reservations` table, one per idempotency key; a cancel marks one at most once.
//!
//! `--reserve-delay-ms` makes every reservation wait first (the branch is still in flight when
//! another fails); a cancelled attempt stops waiting and reserves nothing.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::error_kinds;
use sagaflow_sdk::contracts::travel::{
    Cancellation, Reservation, TripRequest, CANCEL_FLIGHT, RESERVE_FLIGHT,
};
use sagaflow_sdk::postgres::{DatabaseArgs, ReservationTable};
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use sqlx::PgPool;

/// Reserves flights for the BookTrip saga, once per saga step (ReserveFlight), and cancels a
/// reservation once when the saga compensates (CancelFlight; an unknown reservation fails
/// permanently with UnknownReservation).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Args {
    #[command(flatten)]
    worker: WorkerArgs,

    #[command(flatten)]
    database: DatabaseArgs,

    /// Wait this long before each reservation, for demos and tests of a slow branch. A cancelled
    /// attempt stops waiting and reserves nothing.
    #[arg(long, env = "RESERVE_DELAY_MS", default_value_t = 0, value_name = "MS")]
    reserve_delay_ms: u64,
}

/// What every attempt needs.
#[derive(Clone)]
struct FlightService {
    pool: PgPool,
    table: ReservationTable,
    reserve_delay: Duration,
}

impl FlightService {
    async fn reserve_flight(
        self,
        ctx: ActivityContext,
        trip: TripRequest,
    ) -> Result<Reservation, ActivityError> {
        if !self.reserve_delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(self.reserve_delay) => {}
                () = ctx.cancelled() => return Err(cancelled(&ctx)),
            }
        }
        self.table
            .reserve_once(&self.pool, &ctx, &trip)
            .await
            .map_err(database_unavailable)
    }

    async fn cancel_flight(
        self,
        ctx: ActivityContext,
        reservation: Reservation,
    ) -> Result<Cancellation, ActivityError> {
        self.table
            .cancel_once(&self.pool, &ctx, &reservation)
            .await
            .map_err(database_unavailable)?
            .ok_or_else(|| {
                ActivityError::permanent(
                    "UnknownReservation",
                    format!(
                        "no flight reservation {} of trip {:?} exists; nothing is cancelled",
                        reservation.reservation_id, reservation.trip_id
                    ),
                )
            })
    }
}

fn cancelled(ctx: &ActivityContext) -> ActivityError {
    ActivityError::permanent(
        error_kinds::CANCELLED,
        format!(
            "cancelled before the flight was reserved; nothing was reserved: {}",
            ctx.cancellation_reason().unwrap_or_default()
        ),
    )
}

fn database_unavailable(error: sqlx::Error) -> ActivityError {
    ActivityError::transient(
        "DatabaseUnavailable",
        format!("could not use the flight reservations: {error}"),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _crash_points = sagaflow_sdk::init_process()?;
    let args = Args::parse();

    let pool = args
        .database
        .connect(args.worker.concurrency.into())
        .await?;
    let table = ReservationTable::new("flight_reservations");
    table.create(&pool).await?;

    let service = FlightService {
        pool,
        table,
        reserve_delay: Duration::from_millis(args.reserve_delay_ms),
    };
    let canceller = service.clone();
    ActivityWorker::new(args.worker.into_config("flight-service"))
        .register(RESERVE_FLIGHT, move |ctx, trip| {
            service.clone().reserve_flight(ctx, trip)
        })
        .register(CANCEL_FLIGHT, move |ctx, reservation| {
            canceller.clone().cancel_flight(ctx, reservation)
        })
        .run_until_signalled()
        .await
        .context("flight-service stopped")?;
    Ok(())
}

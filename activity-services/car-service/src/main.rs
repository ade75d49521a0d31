//! `car-service`: the activity service behind `ReserveCar` and its compensation
//! `CancelCar`, for the demo `BookTrip` saga. Reservations are rows in its own
//! `car_reservations` table, one per idempotency key; a cancel marks one at most once.
//!
//! It has no limousines: `ReserveCar` of `car_class` `"limousine"` fails permanently with
//! `NoCarAvailable` (the demo's failing branch) and reserves nothing.
//!
//! `--reserve-delay-ms` makes every reservation wait first (the branch is still in car when
//! another fails); a cancelled attempt stops waiting and reserves nothing.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::error_kinds;
use sagaflow_sdk::contracts::travel::{
    Cancellation, Reservation, TripRequest, CANCEL_CAR, RESERVE_CAR,
};
use sagaflow_sdk::postgres::{DatabaseArgs, ReservationTable};
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use sqlx::PgPool;

/// Reserves cars for the BookTrip saga, once per saga step (ReserveCar), and cancels a
/// reservation once when the saga compensates (CancelCar; an unknown reservation fails
/// permanently with UnknownReservation).
///
/// For demos of compensation it has no limousines: a ReserveCar of car_class "limousine" fails
/// permanently with NoCarAvailable, at once and without reserving anything.
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
struct CarService {
    pool: PgPool,
    table: ReservationTable,
    reserve_delay: Duration,
}

impl CarService {
    async fn reserve_car(
        self,
        ctx: ActivityContext,
        trip: TripRequest,
    ) -> Result<Reservation, ActivityError> {
        if trip.car_class == NO_SUCH_CLASS {
            return Err(ActivityError::permanent(
                "NoCarAvailable",
                format!(
                    "no {NO_SUCH_CLASS} is available for trip {:?}; nothing was reserved",
                    trip.trip_id
                ),
            ));
        }
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

    async fn cancel_car(
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
                        "no car reservation {} of trip {:?} exists; nothing is cancelled",
                        reservation.reservation_id, reservation.trip_id
                    ),
                )
            })
    }
}

/// The car class the demo car service never has.
const NO_SUCH_CLASS: &str = "limousine";

fn cancelled(ctx: &ActivityContext) -> ActivityError {
    ActivityError::permanent(
        error_kinds::CANCELLED,
        format!(
            "cancelled before the car was reserved; nothing was reserved: {}",
            ctx.cancellation_reason().unwrap_or_default()
        ),
    )
}

fn database_unavailable(error: sqlx::Error) -> ActivityError {
    ActivityError::transient(
        "DatabaseUnavailable",
        format!("could not use the car reservations: {error}"),
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
    let table = ReservationTable::new("car_reservations");
    table.create(&pool).await?;

    let service = CarService {
        pool,
        table,
        reserve_delay: Duration::from_millis(args.reserve_delay_ms),
    };
    let canceller = service.clone();
    ActivityWorker::new(args.worker.into_config("car-service"))
        .register(RESERVE_CAR, move |ctx, trip| {
            service.clone().reserve_car(ctx, trip)
        })
        .register(CANCEL_CAR, move |ctx, reservation| {
            canceller.clone().cancel_car(ctx, reservation)
        })
        .run_until_signalled()
        .await
        .context("car-service stopped")?;
    Ok(())
}

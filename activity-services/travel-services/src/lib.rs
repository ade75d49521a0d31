//! The three demo services of the `BookTrip` saga — `flight-service`, `hotel-service`,
//! `car-service` — are one shape: `Reserve<Thing>` reserves once per idempotency key in the
//! service's own `<thing>_reservations` table, and its compensation `Cancel<Thing>` cancels a
//! reservation at most once. Each binary is a [`Reservations`] with its names and, for the
//! car service, a rule that refuses some trips.
//!
//! `--reserve-delay-ms` makes every reservation wait first (the branch is still in flight when
//! another fails); a cancelled attempt stops waiting and reserves nothing.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sagaflow_sdk::contracts::error_kinds;
use sagaflow_sdk::contracts::travel::{Cancellation, Reservation, TripRequest};
use sagaflow_sdk::postgres::{within_deadline, DatabaseArgs, ReservationTable};
use sagaflow_sdk::{ActivityContext, ActivityError, ActivityWorker, WorkerArgs};
use sqlx::PgPool;

/// A demo activity service of the BookTrip saga: reserves once per saga step, and cancels a
/// reservation once when the saga compensates (an unknown reservation fails permanently with
/// UnknownReservation). The car service has no limousines (NoCarAvailable).
#[derive(Parser)]
#[command(version, about, long_about)]
pub struct Args {
    #[command(flatten)]
    pub worker: WorkerArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Wait this long before each reservation, for demos and tests of a slow branch. A cancelled
    /// attempt stops waiting and reserves nothing.
    #[arg(long, env = "RESERVE_DELAY_MS", default_value_t = 0, value_name = "MS")]
    pub reserve_delay_ms: u64,
}

/// A rule that refuses a trip before anything is reserved (the car service has no limousines).
pub type Refusal = fn(&TripRequest) -> Option<ActivityError>;

/// One travel service: what it reserves and under which names.
pub struct Reservations {
    /// What is reserved, in words and in the table name: `flight`, `hotel`, `car`.
    pub thing: &'static str,
    pub reserve_activity: &'static str,
    pub cancel_activity: &'static str,
    /// Refuses some trips permanently; `None` reserves every trip.
    pub refuse: Option<Refusal>,
}

/// What every attempt needs.
#[derive(Clone)]
struct Service {
    thing: &'static str,
    pool: PgPool,
    table: ReservationTable,
    reserve_delay: Duration,
    refuse: Option<Refusal>,
}

impl Reservations {
    /// Parses the flags, creates the table, and serves both activities until SIGTERM/SIGINT.
    pub async fn run(self, table: &'static str) -> anyhow::Result<()> {
        let _crash_points = sagaflow_sdk::init_process()?;
        let args = Args::parse();
        let pool = args
            .database
            .connect(args.worker.concurrency.into())
            .await?;
        let table = ReservationTable::new(table);
        table.create(&pool).await?;
        let service = Service {
            thing: self.thing,
            pool,
            table,
            reserve_delay: Duration::from_millis(args.reserve_delay_ms),
            refuse: self.refuse,
        };
        let canceller = service.clone();
        let name = format!("{}-service", self.thing);
        ActivityWorker::new(args.worker.into_config(&name))
            .register(self.reserve_activity, move |ctx, trip| {
                service.clone().reserve(ctx, trip)
            })
            .register(self.cancel_activity, move |ctx, reservation| {
                canceller.clone().cancel(ctx, reservation)
            })
            .run_until_signalled()
            .await
            .with_context(|| format!("{name} stopped"))
    }
}

impl Service {
    async fn reserve(
        self,
        ctx: ActivityContext,
        trip: TripRequest,
    ) -> Result<Reservation, ActivityError> {
        if let Some(refused) = self.refuse.and_then(|refuse| refuse(&trip)) {
            return Err(refused);
        }
        if !self.reserve_delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(self.reserve_delay) => {}
                () = ctx.cancelled() => return Err(self.cancelled(&ctx)),
            }
        }
        within_deadline(self.table.reserve_once(&self.pool, &ctx, &trip))
            .await
            .map_err(|e| self.database_unavailable(e))
    }

    async fn cancel(
        self,
        ctx: ActivityContext,
        reservation: Reservation,
    ) -> Result<Cancellation, ActivityError> {
        within_deadline(self.table.cancel_once(&self.pool, &ctx, &reservation))
            .await
            .map_err(|e| self.database_unavailable(e))?
            .ok_or_else(|| {
                ActivityError::permanent(
                    "UnknownReservation",
                    format!(
                        "no {} reservation {} of trip {:?} exists; nothing is cancelled",
                        self.thing, reservation.reservation_id, reservation.trip_id
                    ),
                )
            })
    }

    fn cancelled(&self, ctx: &ActivityContext) -> ActivityError {
        ActivityError::permanent(
            error_kinds::CANCELLED,
            format!(
                "cancelled before the {} was reserved; nothing was reserved: {}",
                self.thing,
                ctx.cancellation_reason().unwrap_or_default()
            ),
        )
    }

    fn database_unavailable(&self, error: sqlx::Error) -> ActivityError {
        ActivityError::transient(
            "DatabaseUnavailable",
            format!("could not use the {} reservations: {error}", self.thing),
        )
    }
}

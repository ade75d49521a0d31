//! [`ReservationTable`]: reservations kept in PostgreSQL, made once per idempotency key and
//! cancelled at most once — the store of the demo `BookTrip` services (`flight-service`,
//! `hotel-service`, `car-service`), one table each.

use sagaflow_contracts::travel::{Cancellation, Reservation, TripRequest};
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{create_table_once, DatabaseError};
use crate::ActivityContext;

/// One service's reservations table: one row per reservation, at most one per idempotency key
/// of the `Reserve…` step, cancelled at most once (by the first `Cancel…` step that reaches it).
#[derive(Debug, Clone, Copy)]
pub struct ReservationTable {
    name: &'static str,
}

impl ReservationTable {
    /// The table `name`, e.g. `"flight_reservations"`. It goes into SQL as it is, so it must be
    /// a constant of your code: lower-case letters, digits and `_`, starting with a letter.
    ///
    /// # Panics
    ///
    /// If `name` is not such an identifier (a bug in the calling code, never input).
    pub fn new(name: &'static str) -> Self {
        let identifier = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(identifier, "{name:?} is not a plain SQL table name");
        ReservationTable { name }
    }

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Creates the table if it does not exist (see [`create_table_once`]).
    pub async fn create(&self, pool: &PgPool) -> Result<(), DatabaseError> {
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                reservation_id uuid PRIMARY KEY,
                idempotency_key text NOT NULL UNIQUE,
                saga_id uuid NOT NULL,
                trip_id text NOT NULL,
                request jsonb NOT NULL,
                reserved_at timestamptz NOT NULL DEFAULT now(),
                cancelled_at timestamptz,
                cancel_idempotency_key text
            )",
            table = self.name
        );
        create_table_once(pool, self.name, &create).await
    }

    /// Reserves `trip` once per idempotency key of `ctx`: the first call inserts the reservation,
    /// every later call (a retry, a redelivery) returns that same reservation.
    pub async fn reserve_once(
        &self,
        pool: &PgPool,
        ctx: &ActivityContext,
        trip: &TripRequest,
    ) -> Result<Reservation, sqlx::Error> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO {} (reservation_id, idempotency_key, saga_id, trip_id, request)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (idempotency_key) DO NOTHING",
            self.name
        ))
        .bind(Uuid::new_v4())
        .bind(&ctx.idempotency_key().0)
        .bind(ctx.saga_id().0)
        .bind(&trip.trip_id)
        .bind(Json(trip))
        .execute(pool)
        .await?
        .rows_affected()
            == 1;
        let (reservation_id, trip_id) = sqlx::query_as::<_, (Uuid, String)>(&format!(
            "SELECT reservation_id, trip_id FROM {} WHERE idempotency_key = $1",
            self.name
        ))
        .bind(&ctx.idempotency_key().0)
        .fetch_one(pool)
        .await?;
        if inserted {
            tracing::info!(table = self.name, %reservation_id, trip_id, "reserved");
        } else {
            tracing::info!(table = self.name, %reservation_id, "already reserved for this step; returning the same reservation");
        }
        Ok(Reservation {
            reservation_id,
            trip_id,
        })
    }

    /// Cancels `reservation` if it is not cancelled yet. `cancelled_now` is `true` for the step
    /// (idempotency key of `ctx`) that cancelled it — also when that step's command is
    /// redelivered — and `false` for any other. `None` when no reservation of this table has
    /// that id and trip: nothing to cancel.
    pub async fn cancel_once(
        &self,
        pool: &PgPool,
        ctx: &ActivityContext,
        reservation: &Reservation,
    ) -> Result<Option<Cancellation>, sqlx::Error> {
        sqlx::query(&format!(
            "UPDATE {} SET cancelled_at = now(), cancel_idempotency_key = $3
             WHERE reservation_id = $1 AND trip_id = $2 AND cancelled_at IS NULL",
            self.name
        ))
        .bind(reservation.reservation_id)
        .bind(&reservation.trip_id)
        .bind(&ctx.idempotency_key().0)
        .execute(pool)
        .await?;
        let cancelled_by = sqlx::query_scalar::<_, Option<String>>(&format!(
            "SELECT cancel_idempotency_key FROM {} WHERE reservation_id = $1 AND trip_id = $2",
            self.name
        ))
        .bind(reservation.reservation_id)
        .bind(&reservation.trip_id)
        .fetch_optional(pool)
        .await?;
        let Some(cancelled_by) = cancelled_by else {
            return Ok(None);
        };
        let cancelled_now = cancelled_by.as_deref() == Some(ctx.idempotency_key().0.as_str());
        if cancelled_now {
            tracing::info!(table = self.name, reservation_id = %reservation.reservation_id, "reservation cancelled");
        } else {
            tracing::info!(table = self.name, reservation_id = %reservation.reservation_id, "reservation was cancelled before; nothing to do");
        }
        Ok(Some(Cancellation {
            reservation_id: reservation.reservation_id,
            cancelled_now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert_eq!(
            ReservationTable::new("car_reservations").name(),
            "car_reservations"
        );
        for bad in ["", "1cars", "cars; DROP TABLE x", "Cars", "cars-2"] {
            let made = std::panic::catch_unwind(|| ReservationTable::new(bad));
            assert!(made.is_err(), "{bad:?} was accepted");
        }
    }
}

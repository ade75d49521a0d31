//! `flight-service`: `ReserveFlight` and its compensation `CancelFlight` for the demo `BookTrip`
//! saga, in its own `flight_reservations` table (see the crate's docs for the flags).

use sagaflow_sdk::contracts::travel::{CANCEL_FLIGHT, RESERVE_FLIGHT};
use travel_services::Reservations;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Reservations {
        thing: "flight",
        reserve_activity: RESERVE_FLIGHT,
        cancel_activity: CANCEL_FLIGHT,
        refuse: None,
    }
    .run("flight_reservations")
    .await
}

//! `hotel-service`: `ReserveHotel` and its compensation `CancelHotel` for the demo `BookTrip`
//! saga, in its own `hotel_reservations` table (see the crate's docs for the flags).

use sagaflow_sdk::contracts::travel::{CANCEL_HOTEL, RESERVE_HOTEL};
use travel_services::Reservations;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Reservations {
        thing: "hotel",
        reserve_activity: RESERVE_HOTEL,
        cancel_activity: CANCEL_HOTEL,
        refuse: None,
    }
    .run("hotel_reservations")
    .await
}

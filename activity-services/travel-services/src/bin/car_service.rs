//! `car-service`: `ReserveCar` and its compensation `CancelCar` for the demo `BookTrip` saga, in
//! its own `car_reservations` table (see the crate's docs for the flags). It has no limousines:
//! a `ReserveCar` of `car_class` `"limousine"` fails permanently with `NoCarAvailable`, at once and
//! without reserving anything — the demo's failing branch.

use sagaflow_sdk::contracts::travel::{TripRequest, CANCEL_CAR, RESERVE_CAR};
use sagaflow_sdk::ActivityError;
use travel_services::Reservations;

/// The car class the demo car service never has.
const NO_SUCH_CLASS: &str = "limousine";

fn no_limousines(trip: &TripRequest) -> Option<ActivityError> {
    (trip.car_class == NO_SUCH_CLASS).then(|| {
        ActivityError::permanent(
            "NoCarAvailable",
            format!(
                "no {NO_SUCH_CLASS} is available for trip {:?}; nothing was reserved",
                trip.trip_id
            ),
        )
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Reservations {
        thing: "car",
        reserve_activity: RESERVE_CAR,
        cancel_activity: CANCEL_CAR,
        refuse: Some(no_limousines),
    }
    .run("car_reservations")
    .await
}

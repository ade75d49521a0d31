//! Payloads of the demo `BookTrip` saga and its three activity services: flights, hotels and
//! cars, each reserved in parallel and cancelled as the compensation of its reservation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The saga type name of the demo trip saga.
pub const BOOK_TRIP: &str = "BookTrip";
/// Activities of the flight service.
pub const RESERVE_FLIGHT: &str = "ReserveFlight";
pub const CANCEL_FLIGHT: &str = "CancelFlight";
/// Activities of the hotel service.
pub const RESERVE_HOTEL: &str = "ReserveHotel";
pub const CANCEL_HOTEL: &str = "CancelHotel";
/// Activities of the car service.
pub const RESERVE_CAR: &str = "ReserveCar";
pub const CANCEL_CAR: &str = "CancelCar";

/// Input of `BookTrip`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TripRequest {
    pub trip_id: String,
    pub traveller: String,
    /// Where and when: e.g. `"LIS"`, `"2027-03-01"`.
    pub destination: String,
    pub date: String,
    pub nights: u32,
    /// The car class, e.g. `"compact"`; the demo car service has no `"limousine"`.
    pub car_class: String,
}

/// Output of each `Reserve…` activity, and input of its `Cancel…` compensation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub trip_id: String,
}

/// Output of each `Cancel…` activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cancellation {
    pub reservation_id: Uuid,
    /// `false` when the reservation was cancelled before (the cancel is idempotent).
    pub cancelled_now: bool,
}

/// Output of `BookTrip`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Itinerary {
    pub trip_id: String,
    pub flight: Reservation,
    pub hotel: Reservation,
    pub car: Reservation,
}

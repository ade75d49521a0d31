use sagaflow_contracts::travel::{
    Itinerary, Reservation, TripRequest, CANCEL_CAR, CANCEL_FLIGHT, CANCEL_HOTEL, RESERVE_CAR,
    RESERVE_FLIGHT, RESERVE_HOTEL,
};

use crate::engine::{SagaContext, SagaError};

/// Reserves the flight, the hotel and the car in parallel. The first that fails fails the
/// trip: the reservations that completed are cancelled, newest first, and one still in flight
/// is cancelled once it completes.
pub async fn book_trip(ctx: SagaContext, trip: TripRequest) -> Result<Itinerary, SagaError> {
    let reserve = |activity: &str, cancel: &str| {
        ctx.activity::<Reservation, _>(activity, &trip)
            .compensate_with_output(cancel, |reservation: Reservation| reservation)
    };
    let (flight, hotel, car) = futures::try_join!(
        reserve(RESERVE_FLIGHT, CANCEL_FLIGHT),
        reserve(RESERVE_HOTEL, CANCEL_HOTEL),
        reserve(RESERVE_CAR, CANCEL_CAR),
    )?;
    Ok(Itinerary {
        trip_id: trip.trip_id.clone(),
        flight,
        hotel,
        car,
    })
}

//! BookTrip: flight, hotel and car reserved in parallel; the car fails; what was reserved is
//! cancelled — also a reservation still in flight when the car failed, once it completes.

use std::time::Duration;

use sagaflow_contracts::travel::{TripRequest, BOOK_TRIP};
use sagaflow_e2e::{Bin, Deployment};

const END: Duration = Duration::from_secs(60);

fn trip(trip_id: &str, car_class: &str) -> serde_json::Value {
    serde_json::to_value(TripRequest {
        trip_id: trip_id.into(),
        traveller: "ada".into(),
        destination: "LIS".into(),
        date: "2027-03-01".into(),
        nights: 3,
        car_class: car_class.into(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_car_cancels_the_hotel_at_once_and_the_slow_flight_once_it_is_reserved() {
    let mut deployment = Deployment::new().await;
    let _orchestrator = deployment.spawn(Bin::Orchestrator, &[]);
    // The flight takes long: it is still in flight when the car fails.
    let _flights = deployment.spawn(Bin::FlightService, &[("RESERVE_DELAY_MS", "2000")]);
    let _hotels = deployment.spawn(Bin::HotelService, &[]);
    let _cars = deployment.spawn(Bin::CarService, &[]);

    deployment
        .start_saga(BOOK_TRIP, trip("trip-limo", "limousine"), "trip-limo")
        .await;
    let saga = deployment
        .wait_for_status("trip-limo", "compensated", END)
        .await;
    let history = deployment.history(saga).await;
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    // The hotel is cancelled before the flight completes; the flight right after.
    let position = |activity: &str| {
        history
            .iter()
            .position(|e| e.kind == "ActivityScheduled" && e.event["activity"] == activity)
            .unwrap_or_else(|| panic!("{activity} was not scheduled: {kinds:?}"))
    };
    let flight_completed = history
        .iter()
        .position(|e| e.kind == "ActivityCompleted" && e.event["step"] == 1)
        .expect("the flight completed");
    assert!(position("CancelHotel") < flight_completed, "{kinds:?}");
    assert!(position("CancelFlight") > flight_completed, "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"SagaCompensated"));

    let cancelled =
        |table: &str| format!("SELECT count(*) FROM {table} WHERE cancelled_at IS NOT NULL");
    assert_eq!(deployment.count(&cancelled("flight_reservations")).await, 1);
    assert_eq!(deployment.count(&cancelled("hotel_reservations")).await, 1);
    assert_eq!(
        deployment
            .count("SELECT count(*) FROM car_reservations")
            .await,
        0
    );

    // A trip with a car the service has completes.
    deployment
        .start_saga(BOOK_TRIP, trip("trip-compact", "compact"), "trip-compact")
        .await;
    deployment
        .wait_for_status("trip-compact", "completed", END)
        .await;
}

//! The load generator: a small run completes every saga with one charge and reports the figures
//! BENCHMARKS.md quotes. Only correctness is asserted here; the figures are not timed.

use std::time::Duration;

use sagaflow_e2e::Bin;

#[tokio::test]
async fn bench_drives_sagas_through_the_reply_path_and_reports_every_figure() {
    let mut command = tokio::process::Command::new(Bin::Bench.path());
    command
        .args([
            "--sagas",
            "20",
            "--concurrency",
            "1,5",
            "--floor-seconds",
            "0.3",
            "--db-connections",
            "4",
            "--process-concurrency",
            "4",
            "--json",
        ])
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the bench finishes within three minutes")
        .expect("the bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the bench fails: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&stdout).expect("--json prints one JSON document");
    let runs = report["runs"].as_array().expect("runs is a list");
    assert_eq!(runs.len(), 2, "one run per concurrency level: {report}");
    for run in runs {
        assert_eq!(run["check"]["sagas"], 20, "{run}");
        assert_eq!(run["check"]["completed"], 20, "{run}");
        assert_eq!(run["check"]["not_charged_once"], 0, "{run}");
        assert_eq!(run["not_completed"], 0, "{run}");
        for figure in ["sagas_per_s", "postgres_commits_per_saga"] {
            assert!(run[figure].as_f64().unwrap_or(0.0) > 0.0, "{figure}: {run}");
        }
        let latency = &run["latency_ms"];
        assert!(latency["p50"].as_f64() <= latency["max"].as_f64(), "{run}");
        let processes: Vec<&str> = run["cpu_ms_per_saga"]
            .as_array()
            .expect("CPU per process")
            .iter()
            .filter_map(|entry| entry[0].as_str())
            .collect();
        for process in ["orchestrator", "charger", "postgresql", "rabbitmq"] {
            assert!(processes.contains(&process), "{process} in {processes:?}");
        }
        assert!(
            run["orchestrator_rss_mib"].as_f64().unwrap_or(0.0) > 0.0,
            "{run}"
        );
    }
    let floors = report["floors"].as_array().expect("floors is a list");
    assert!(
        floors
            .iter()
            .all(|f| f["postgres_commits_per_s"].as_f64().is_some()
                && f["rabbitmq_messages_per_s"].as_f64().is_some()),
        "the floor is measured at 1 and 5: {report}"
    );
}

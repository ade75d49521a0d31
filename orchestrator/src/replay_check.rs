//! Replaying exported histories against the saga code of this build: run it in CI (or a
//! `#[test]`) over histories of sagas that are running in production, and a change that would
//! make them diverge is caught before it is deployed.

use std::path::{Path, PathBuf};

use chrono::Utc;
use sagaflow_contracts::{ActivityOptions, ExportedHistory};
use sagaflow_engine::{SagaRegistry, SagaRun};

/// One history file, replayed.
#[derive(Debug)]
pub struct Replayed {
    pub file: PathBuf,
    /// The saga's type and id, when the file could be read.
    pub saga: Option<(String, sagaflow_contracts::SagaId)>,
    /// Why it would diverge (the engine's diagnostic), if it would.
    pub divergence: Option<String>,
}

/// Reading the directory of histories failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the histories in {dir}: {source}")]
pub struct ReplayCheckError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Replays every `*.json` history in `dir` (files written by `sagaflow export`) against the
/// sagas of `registry`, in file name order. A file that cannot be read or parsed counts as
/// diverging, with the reason.
pub fn replay_check(
    registry: &SagaRegistry,
    dir: &Path,
) -> Result<Vec<Replayed>, ReplayCheckError> {
    let error = |source| ReplayCheckError {
        dir: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|file| {
            let exported = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::from_str::<ExportedHistory>(&text).map_err(|e| e.to_string())
                });
            match exported {
                Err(reason) => Replayed {
                    file,
                    saga: None,
                    divergence: Some(format!("not a saga history: {reason}")),
                },
                Ok(exported) => {
                    let replay = SagaRun::replay(
                        registry,
                        exported.saga_id,
                        &exported.history,
                        ActivityOptions::default(),
                        Utc::now(),
                    );
                    Replayed {
                        file,
                        saga: Some((exported.saga_type, exported.saga_id)),
                        divergence: replay.err().map(|e| e.to_string()),
                    }
                }
            }
        })
        .collect())
}

//! Services written in Python (`activity-services/python-example/`), run by the tests with the
//! Python of a virtual environment that has the example's requirements installed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The example's directory.
pub fn python_example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../activity-services/python-example")
}

/// The virtual environment's Python: `SAGAFLOW_PYTHON`, or `target/python-venv/bin/python`,
/// which `scripts/test` (and so `.ci/run`) creates with the example's requirements.
pub fn venv_python() -> PathBuf {
    let python = std::env::var_os("SAGAFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python-venv/bin/python")
        });
    assert!(
        python.exists(),
        "{} does not exist: run scripts/test (it creates the venv and installs \
         activity-services/python-example/requirements.txt), or set SAGAFLOW_PYTHON",
        python.display()
    );
    python
}

/// A Python script of the example, run as a process with `env`, logging to `log`. Dropping it
/// kills it.
pub struct PythonService {
    pub log: PathBuf,
    child: Child,
}

impl PythonService {
    pub fn spawn(script: &str, args: &[&str], env: &[(String, String)], log: &Path) -> Self {
        let out = File::create(log).expect("the log file can be created");
        let err = out.try_clone().expect("the log file handle can be cloned");
        let child = Command::new(venv_python())
            .arg(python_example_dir().join(script))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
        PythonService {
            log: log.to_owned(),
            child,
        }
    }

    /// The process's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("the process can be polled")
    }
}

impl Drop for PythonService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Python script of the example to its end; returns its output.
pub async fn run_python(
    script: &str,
    args: &[&str],
    env: &[(String, String)],
) -> std::process::Output {
    tokio::process::Command::new(venv_python())
        .arg(python_example_dir().join(script))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"))
}

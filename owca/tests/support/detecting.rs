//! A `!DetectionRunner` agent as the detection and plug-in tests start it, and small
//! helpers of theirs.

use std::path::{Path, PathBuf};

use super::{PlacedTask, agent::Agent, placed, sample, sleep_s, wait_until, workload::busy};

/// The controllers the detection tests' tasks are placed in.
pub const CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory"];

/// An agent with a detection runner writing metrics and anomalies to two files.
pub struct Detecting {
    pub agent: Agent,
    pub metrics: PathBuf,
    pub anomalies: PathBuf,
}

impl Detecting {
    /// `append`: anomalies are appended per iteration instead of replaced.
    pub fn start(
        dir: &Path,
        tasks: &[&PlacedTask],
        detector: &str,
        register: &[String],
        append: bool,
    ) -> Self {
        let metrics = dir.join("metrics.prom");
        let anomalies = dir.join("anomalies.prom");
        let tasks: Vec<&str> = tasks.iter().map(|t| t.rel.as_str()).collect();
        let args: Vec<&str> = register.iter().flat_map(|r| ["-r", r.as_str()]).collect();
        let agent = Agent::start_with(
            dir,
            &format!(
                "runner: !DetectionRunner\n  node: !StaticNode\n    tasks: {tasks:?}\n  action_delay: 0.4\n  \
                 metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n  \
                 anomalies_storage: !LogStorage {{output_filename: {}, overwrite: {}}}\n  \
                 extra_labels: {{env_id: detection-test}}\n  detector: {detector}\n",
                metrics.display(),
                anomalies.display(),
                !append,
            ),
            &args,
            &[],
        );
        Self {
            agent,
            metrics,
            anomalies,
        }
    }

    /// Waits for the anomalies file to satisfy `ok`; see [`Agent::wait_for`].
    pub fn wait_anomalies(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.agent.wait_for(&self.anomalies, what, ok)
    }

    /// Waits for the metrics file to satisfy `ok`; see [`Agent::wait_for`].
    pub fn wait_metrics(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.agent.wait_for(&self.metrics, what, ok)
    }
}

/// `owca_errors_total{component="detector"}` in a metrics text.
pub fn detector_errors(text: &str) -> Option<f64> {
    sample(text, "owca_errors_total", &["component=\"detector\""])
}

/// A script file in `dir`.
pub fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Live processes whose command line mentions `needle`.
pub fn processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
}

/// A failing plug-in: the agent keeps measuring, counts the failure every iteration it
/// costs, logs it once, and restarts the plug-in.
pub fn failing_plugin(
    name: &str,
    detector: &str,
    register: Option<&str>,
    plugin: &str,
    logged: &str,
) {
    let pid = std::process::id().to_string();
    // A child of the plug-in that must die with it (see the hanging plug-in).
    let child = format!("sleep 100{pid}");
    let plugin = plugin.replace("{child}", &child);
    let task = placed(&format!("det-{name}"), CONTROLLERS, busy());
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let plugin = script(
        dir.path(),
        &format!("{name}-{}.sh", std::process::id()),
        &format!("echo started >> {}\n{plugin}", starts.display()),
    );
    let detector = detector.replace("PLUGIN", plugin.to_str().unwrap());
    let register: Vec<String> = register
        .map(|r| format!("{r}=sh {}", plugin.display()))
        .into_iter()
        .collect();
    let mut agent = Detecting::start(dir.path(), &[&task], &detector, &register, false);

    let oncpu = format!("task_id=\"{}\"", task.rel);
    let text = agent.wait_metrics("detector errors", |t| {
        detector_errors(t).is_some_and(|n| n >= 2.0)
            && sample(t, "task_oncpu_seconds_total", &[&oncpu]).is_some()
    });
    // Measuring goes on: the task's time keeps growing, errors keep being counted.
    let before = sample(&text, "task_oncpu_seconds_total", &[&oncpu]).unwrap();
    let errors = detector_errors(&text).unwrap();
    agent.wait_metrics("more measurements", |t| {
        sample(t, "task_oncpu_seconds_total", &[&oncpu]).is_some_and(|v| v > before + 0.2)
            && detector_errors(t).is_some_and(|n| n > errors)
    });
    // Restarted with backoff (1 s, then 2 s): at least twice within a few seconds.
    wait_until(&starts, "a restart of the plug-in", |t| {
        t.lines().count() >= 2
    });
    assert!(agent.agent.alive(), "the agent exited");
    // Each failed plug-in was killed: at most the current one runs.
    let running = processes_with(plugin.file_name().unwrap().to_str().unwrap());
    assert!(running <= 1, "{running} plug-in processes alive");
    let anomalies = std::fs::read_to_string(&agent.anomalies).unwrap();
    assert_eq!(
        sample(&anomalies, "anomaly_count", &[]),
        Some(0.0),
        "{anomalies}"
    );

    let (status, stderr) = agent.agent.terminate();
    assert!(status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("component=\"detector\""))
        .collect();
    assert_eq!(warnings.len(), 1, "{name}: {warnings:#?}\n{stderr}");
    let logged = logged.replace("{pid}", &pid);
    assert!(warnings[0].contains(&logged), "{name}: {}", warnings[0]);
    // Nothing is left behind once the agent stopped.
    sleep_s(0.3);
    assert_eq!(
        processes_with(plugin.file_name().unwrap().to_str().unwrap()),
        0
    );
}

//! `!MesosNode` settings: OWCA's and WCA's example configs, defaults, and the errors of
//! building the client (files are checked then, not while parsing).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::*;
use crate::{config::from_str, nodes::NodeConfig};

const CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/owca-configs");

/// The parts of an example config this test looks at; the rest (storages, Python
/// detectors) is ignored.
#[derive(Deserialize)]
struct Example {
    runner: Runner,
}

#[derive(Deserialize)]
enum Runner {
    DetectionRunner(RunnerPart),
    AllocationRunner(RunnerPart),
}

#[derive(Deserialize)]
struct RunnerPart {
    node: NodeConfig,
}

fn example_node(name: &str) -> MesosNode {
    let example: Example = crate::config::from_file(Path::new(CONFIGS).join(name)).unwrap();
    let (Runner::DetectionRunner(r) | Runner::AllocationRunner(r)) = example.runner;
    match r.node {
        NodeConfig::MesosNode(n) => n,
        other => panic!("{name}: not a MesosNode: {other:?}"),
    }
}

fn node(yaml: &str) -> Result<MesosNode, crate::config::ConfigError> {
    match from_str::<NodeConfig>(yaml, Path::new("node.yaml"))? {
        NodeConfig::MesosNode(n) => Ok(n),
        other => panic!("not a MesosNode: {other:?}"),
    }
}

#[test]
fn owca_and_wca_examples_load() {
    let n = example_node("01_mesos_external_detector_owca03.yaml");
    assert_eq!(n.mesos_agent_endpoint, "http://127.0.0.1:5051");
    assert_eq!(
        (n.timeout, &n.ssl_verify, &n.ssl),
        (Duration::from_secs(5), &None, &None)
    );
    assert_eq!(n.proc_root, Path::new("/proc"));
    n.client().unwrap();

    let n = example_node("03_mesos_example_allocator_wca107.yaml");
    assert_eq!(n.timeout, Duration::from_secs(5));
    n.client().unwrap();

    let n = example_node("04_install_rst_owca03.yaml");
    assert_eq!(n.ssl_verify, Some(ServerVerify::SystemRoots));
    assert_eq!(n.mesos_agent_endpoint, "https://127.0.0.1:5051");
    n.client().unwrap();

    // WCA's `server_verify: True` and a client certificate whose path is a placeholder:
    // the config loads; the client cannot be built, and the error names the file.
    let n = example_node("02_mesos_external_detector_wca107.yaml");
    let ssl = n.ssl.clone().unwrap();
    assert_eq!(ssl.server_verify, ServerVerify::SystemRoots);
    assert_eq!(
        ssl.client_cert_path.as_deref(),
        Some(Path::new("$PATH/apiserver-aurora-client.crt"))
    );
    assert_eq!(
        ssl.client_key_path.as_deref(),
        Some(Path::new("$PATH/apiserver-aurora-client.key"))
    );
    let err = n.client().unwrap_err();
    assert!(
        matches!(
            err,
            MesosError::ReadFile {
                field: "ssl.client_cert_path",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("$PATH/apiserver-aurora-client.crt"),
        "{err}"
    );
}

#[test]
fn defaults_and_forms() {
    let n = node("!MesosNode {}").unwrap();
    assert_eq!(n.mesos_agent_endpoint, "https://127.0.0.1:5051");
    assert_eq!(n.api_url(), "https://127.0.0.1:5051/api/v1");
    assert_eq!(n.timeout, Duration::from_secs(5));
    assert_eq!(
        (
            n.cgroups_root.as_str(),
            n.max_answer_bytes,
            n.task_list_ttl_iterations
        ),
        ("mesos", 64 << 20, 10)
    );
    let n = node(
        "!MesosNode\ncgroups_root: /agent/mesos\nmax_answer_bytes: 1000\ntask_list_ttl_iterations: 0\n",
    )
    .unwrap();
    assert_eq!(
        (
            n.cgroups_root.as_str(),
            n.max_answer_bytes,
            n.task_list_ttl_iterations
        ),
        ("/agent/mesos", 1000, 0)
    );
    let n = node("!MesosNode\nssl_verify: false\ntimeout: 0.5\n").unwrap();
    assert_eq!(
        (n.ssl_verify, n.timeout),
        (Some(ServerVerify::Disabled), Duration::from_millis(500))
    );
    let n = node("!MesosNode\nssl_verify: no\nssl: !SSL {server_verify: yes}\n").unwrap();
    assert_eq!(n.ssl_verify, Some(ServerVerify::Disabled));
    assert_eq!(n.ssl.unwrap().server_verify, ServerVerify::SystemRoots);
    let n = node("!MesosNode\nssl_verify: /etc/ca.pem\n").unwrap();
    assert_eq!(
        n.ssl_verify,
        Some(ServerVerify::CaBundle(PathBuf::from("/etc/ca.pem")))
    );
    // `!SSL` alone, untagged, and null.
    assert_eq!(
        node("!MesosNode\nssl: !SSL\n").unwrap().ssl,
        Some(Ssl::default())
    );
    let n = node("!MesosNode\nssl:\n  server_verify: false\n").unwrap();
    assert_eq!(n.ssl.unwrap().server_verify, ServerVerify::Disabled);
    assert_eq!(node("!MesosNode\nssl: null\n").unwrap().ssl, None);
}

#[test]
fn settings_errors_name_the_field() {
    let cases = [
        ("!MesosNode\nendpoint: x\n", "unknown field `endpoint`"),
        (
            "!MesosNode\nssl_verify: 5\n",
            "true, false or the path of a CA bundle",
        ),
        (
            "!MesosNode\nssl_verify: ''\n",
            "true, false or the path of a CA bundle",
        ),
        ("!MesosNode\ntimeout: -1\n", "non-negative"),
        ("!MesosNode\nmax_answer_bytes: -1\n", "max_answer_bytes"),
        (
            "!MesosNode\ntask_list_ttl_iterations: x\n",
            "task_list_ttl_iterations",
        ),
        ("!MesosNode\nssl: !SLL {}\n", "tag !SLL"),
        (
            "!MesosNode\nssl: !SSL\n  server_verify: true\n  cert: x\n",
            "unknown field `cert`",
        ),
    ];
    for (yaml, expected) in cases {
        let err = node(yaml).unwrap_err().to_string();
        assert!(err.contains(expected), "{yaml}: {err}");
    }
}

#[test]
fn client_errors_name_the_setting_and_file() {
    let dir = tempfile::TempDir::new().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let cases = [
        (
            format!("ssl_verify: {}", missing.display()),
            "ssl_verify",
            missing.display().to_string(),
        ),
        (
            format!("ssl: !SSL {{server_verify: {}}}", missing.display()),
            "ssl.server_verify",
            missing.display().to_string(),
        ),
        (
            format!("ssl_verify: {}", garbage.display()),
            "no PEM certificate",
            garbage.display().to_string(),
        ),
        (
            format!("ssl: !SSL {{client_cert_path: {}}}", garbage.display()),
            "ssl.client_cert_path",
            garbage.display().to_string(),
        ),
        (
            "ssl: !SSL {client_key_path: /k.pem}".into(),
            "needs ssl.client_cert_path",
            String::new(),
        ),
        (
            "ssl_verify: true\nssl: !SSL {}".into(),
            "either ssl_verify or ssl",
            String::new(),
        ),
        (
            "timeout: 0".into(),
            "timeout must be greater than 0",
            String::new(),
        ),
        (
            "cgroups_root: /".into(),
            "cgroups_root must name",
            String::new(),
        ),
        (
            "max_answer_bytes: 0".into(),
            "max_answer_bytes must be greater than 0",
            String::new(),
        ),
        (
            "mesos_agent_endpoint: 127.0.0.1:5051".into(),
            "not a valid http(s) URL",
            String::new(),
        ),
        (
            "mesos_agent_endpoint: 'http://'".into(),
            "not a valid http(s) URL",
            String::new(),
        ),
    ];
    for (settings, field, file) in cases {
        let n = node(&format!("!MesosNode\n{settings}\n")).unwrap();
        let err = n
            .client()
            .map(|_| ())
            .map_err(|e| e.to_string())
            .expect_err(&settings);
        assert!(
            err.contains(field) && err.contains(&file),
            "{settings}: {err}"
        );
    }
    // A client is built once and kept.
    let n = node("!MesosNode\nssl_verify: false\n").unwrap();
    n.client().unwrap();
    assert!(n.state.client.lock().unwrap().is_some());
}

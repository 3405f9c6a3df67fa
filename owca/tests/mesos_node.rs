//! `!MesosNode` against real local stand-ins of a Mesos agent (plain HTTP, HTTPS from an
//! untrusted CA, mutual TLS) on 127.0.0.1, and a real process in a real `/mesos/<id>`
//! cgroup. The cgroup test needs root; the others do not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use support::{
    TestCgroup,
    mesos_agent::{Agent, Answer, get_state},
    workload::sleeper,
};

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use owca::{
    cgroups::Mounts,
    nodes::{
        NodeConfig,
        mesos::{MesosError, MesosNode, SkipReason},
    },
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_rustls::rustls::{
    self, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
};

const TASK_ID: &str = "root-staging14-cassandra--9043-0-9ee9fbf1-b51b-4bb3-9748-6a4327fd7e0e";
/// A pid no process has (above the kernel's pid_max limit).
const GONE_PID: u32 = 4_000_000_000;

fn node_config(settings: &str) -> NodeConfig {
    owca::config::from_str(&format!("!MesosNode\n{settings}\n"), Path::new("test.yaml"))
        .expect("node config")
}

fn mesos_node(settings: &str) -> MesosNode {
    match node_config(settings) {
        NodeConfig::MesosNode(n) => n,
        other => panic!("not a MesosNode: {other:?}"),
    }
}

/// The call's error, checked to name the agent.
async fn error_of(node: &MesosNode, agent: &Agent) -> MesosError {
    let err = node.tasks().await.expect_err("the call should fail");
    assert!(err.to_string().contains(&agent.endpoint()), "{err}");
    err
}

// ---------------------------------------------------------------- a real task

#[tokio::test]
async fn task_in_a_real_mesos_cgroup_and_one_without_isolation() {
    require_root!();
    let mounts = Mounts::discover().expect("reading mountinfo");
    let id = support::unique("mesos-task");
    let rel = format!("mesos/{id}");
    // Declared before the processes, so dropped after them; each removes the `mesos`
    // parent it had to create once that is empty.
    let (cgroup, cpu_root) = match (mounts.v1("cpu"), mounts.v1("cpuacct")) {
        (Some(cpu), Some(_)) => (
            TestCgroup::create(&mounts, &["cpu", "cpuacct"], &rel)
                .expect("creating the task cgroup"),
            cpu.to_path_buf(),
        ),
        _ => {
            let root = mounts.v2().expect("cgroup v2 mounted when v1 cpu is not");
            (
                TestCgroup::create_v2(&mounts, &rel).expect("creating the task cgroup"),
                root.to_path_buf(),
            )
        }
    };
    let task_process = sleeper();
    cgroup
        .add_pid(task_process.pid())
        .expect("moving the task process");
    // As under an agent without the cgroups/cpu isolator: the executor stays in the root.
    let unisolated = sleeper();
    std::fs::write(cpu_root.join("cgroup.procs"), unisolated.pid().to_string())
        .expect("moving to the root cgroup");

    let mut answer = get_state(task_process.pid(), &id);
    let mut second = answer["get_state"]["get_tasks"]["launched_tasks"][0].clone();
    for status in second["statuses"].as_array_mut().unwrap() {
        status["task_id"]["value"] = json!("unisolated");
        status["container_status"]["executor_pid"] = json!(unisolated.pid());
    }
    answer["get_state"]["get_tasks"]["launched_tasks"]
        .as_array_mut()
        .unwrap()
        .push(second);
    let agent = Agent::start(Answer::Json(answer), None).await;
    let config = node_config(&format!("mesos_agent_endpoint: {}", agent.endpoint()));

    let tasks = config.tasks(&mounts).await.expect("tasks from the agent");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].task_id, TASK_ID);
    assert_eq!(tasks[0].cgroup_path, format!("/{rel}"));
    assert_eq!(tasks[0].labels["initial_task_cpu_assignment"], "8.0");
    let NodeConfig::MesosNode(node) = &config else {
        unreachable!()
    };
    let skipped = node.skipped();
    assert_eq!(
        skipped.get("unisolated"),
        Some(&SkipReason::RootCgroup {
            pid: unisolated.pid()
        }),
        "{skipped:?}"
    );

    let seen = agent.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/api/v1")
    );
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(seen[0].accept.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[0].body).unwrap(),
        json!({"type": "GET_STATE"})
    );

    // The same answer again, but the skip came from /proc, which changed: looked at anew.
    let rel2 = format!("mesos/{}", support::unique("isolated-later"));
    let later = TestCgroup::create(&mounts, &["cpu", "cpuacct"], &rel2)
        .or_else(|_| TestCgroup::create_v2(&mounts, &rel2))
        .expect("creating the second task cgroup");
    later
        .add_pid(unisolated.pid())
        .expect("moving the unisolated process");
    for _ in 0..2 {
        let tasks = config.tasks(&mounts).await.expect("tasks from the agent");
        let paths: Vec<_> = tasks.iter().map(|t| t.cgroup_path.as_str()).collect();
        assert_eq!(paths, [format!("/{rel}"), format!("/{rel2}")], "{tasks:?}");
    }
    assert_eq!(agent.seen().len(), 3);
}

// ---------------------------------------------------------------- broken answers

#[tokio::test]
async fn http_error_status_is_an_error() {
    let agent = Agent::start(Answer::Status(500), None).await;
    let err = error_of(
        &mesos_node(&format!("mesos_agent_endpoint: {}", agent.endpoint())),
        &agent,
    )
    .await;
    assert!(
        matches!(err, MesosError::Status { status: 500, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Agent is recovering"), "{err}");
}

#[tokio::test]
async fn garbage_and_shapeless_answers_are_errors() {
    let agent = Agent::start(Answer::Garbage, None).await;
    let err = error_of(
        &mesos_node(&format!("mesos_agent_endpoint: {}", agent.endpoint())),
        &agent,
    )
    .await;
    assert!(matches!(err, MesosError::NotJson { .. }), "{err}");
    let agent = Agent::start(Answer::Json(json!({"type": "GET_STATE"})), None).await;
    let err = error_of(
        &mesos_node(&format!("mesos_agent_endpoint: {}", agent.endpoint())),
        &agent,
    )
    .await;
    assert!(matches!(err, MesosError::BadAnswer { .. }), "{err}");
}

#[tokio::test]
async fn a_slow_agent_times_out() {
    let agent = Agent::start(
        Answer::SlowJson(Duration::from_secs(3), get_state(GONE_PID, "c")),
        None,
    )
    .await;
    let node = mesos_node(&format!(
        "mesos_agent_endpoint: {}\ntimeout: 1",
        agent.endpoint()
    ));
    let started = Instant::now();
    let err = error_of(&node, &agent).await;
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, MesosError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn an_answer_over_max_answer_bytes_is_an_error() {
    // With a Content-Length: refused before the body is read.
    let big = get_state(GONE_PID, "c");
    let size = big.to_string().len();
    let agent = Agent::start(Answer::Json(big), None).await;
    let settings = |limit: usize| {
        format!(
            "mesos_agent_endpoint: {}\nmax_answer_bytes: {limit}",
            agent.endpoint()
        )
    };
    let err = error_of(&mesos_node(&settings(size - 1)), &agent).await;
    assert!(
        matches!(err, MesosError::TooLarge { limit, .. } if limit == size as u64 - 1),
        "{err}"
    );
    assert!(err.to_string().contains("max_answer_bytes"), "{err}");
    // Exactly the limit is fine.
    mesos_node(&settings(size)).tasks().await.unwrap();

    // Chunked, without a length: reading stops at the limit.
    let limit = 1 << 20;
    let endpoint = support::mesos_agent::serve_chunked(limit + 1).await;
    let node = mesos_node(&format!(
        "mesos_agent_endpoint: {endpoint}\nmax_answer_bytes: {limit}"
    ));
    let err = node.tasks().await.unwrap_err();
    assert!(matches!(err, MesosError::TooLarge { .. }), "{err}");
    let endpoint = support::mesos_agent::serve_chunked(limit).await;
    let node = mesos_node(&format!(
        "mesos_agent_endpoint: {endpoint}\nmax_answer_bytes: {limit}"
    ));
    // Read whole: only spaces, so not JSON.
    let err = node.tasks().await.unwrap_err();
    assert!(matches!(err, MesosError::NotJson { .. }), "{err}");
}

#[tokio::test]
async fn an_answer_with_bytes_that_are_not_utf8_is_read() {
    let mut answer = get_state(GONE_PID, "c");
    support::mesos_agent::set_labels(&mut answer, 0, &[("tier", "@@")]);
    let mut body = answer.to_string().into_bytes();
    let at = body.windows(2).position(|w| w == b"@@").unwrap();
    body[at..at + 2].copy_from_slice(&[0xc3, 0x28]);
    let agent = Agent::start(Answer::Bytes(body), None).await;
    let node = mesos_node(&format!("mesos_agent_endpoint: {}", agent.endpoint()));
    // The answer is read: its one task is there, skipped for its (gone) executor only.
    assert!(node.tasks().await.unwrap().is_empty());
    assert_eq!(
        node.skipped()[TASK_ID],
        SkipReason::ProcessGone { pid: GONE_PID }
    );
}

#[tokio::test]
async fn nobody_listening_is_an_error() {
    // The listener is dropped at the end of the statement: the port refuses connections.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let node = mesos_node(&format!("mesos_agent_endpoint: http://{closed}"));
    let err = node.tasks().await.expect_err("nothing listens");
    assert!(matches!(err, MesosError::Request { .. }), "{err}");
    assert!(err.to_string().contains(&closed.to_string()), "{err}");
}

// ---------------------------------------------------------------- TLS

/// A CA unknown to the system, a server certificate for 127.0.0.1 and a client
/// certificate it signed, as PEM files.
struct Pki {
    dir: TempDir,
    server: Arc<ServerConfig>,
    mutual: Arc<ServerConfig>,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "OWCA test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf = |usage| {
            let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            p.subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            p.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            (p.signed_by(&key, &ca).unwrap(), key)
        };
        let (server_cert, server_key) = leaf(ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", &ca.pem());
        write("client.crt", &client_cert.pem());
        write("client.key", &client_key.serialize_pem());
        write(
            "client.pem",
            &format!("{}{}", client_cert.pem(), client_key.serialize_pem()),
        );

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = |client_auth: bool| {
            let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .unwrap();
            let builder = if client_auth {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der().clone()).unwrap();
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_no_client_auth()
            };
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
            let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
            Arc::new(builder.with_single_cert(chain, key).unwrap())
        };
        Self {
            server: config(false),
            mutual: config(true),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

#[tokio::test]
async fn https_with_an_untrusted_ca() {
    let pki = Pki::new();
    let agent = Agent::start(
        Answer::Json(get_state(GONE_PID, "c")),
        Some(Arc::clone(&pki.server)),
    )
    .await;
    let endpoint = format!("mesos_agent_endpoint: {}", agent.endpoint());

    for settings in [format!("{endpoint}\nssl_verify: true"), endpoint.clone()] {
        let err = error_of(&mesos_node(&settings), &agent).await;
        assert!(matches!(err, MesosError::Request { .. }), "{err}");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );
    }
    for settings in [
        format!("{endpoint}\nssl_verify: {}", pki.path("ca.pem")),
        format!("{endpoint}\nssl_verify: false"),
        format!(
            "{endpoint}\nssl: !SSL\n  server_verify: {}",
            pki.path("ca.pem")
        ),
    ] {
        let node = mesos_node(&settings);
        assert_eq!(node.tasks().await.expect(&settings), vec![], "{settings}");
        assert_eq!(
            node.skipped()[TASK_ID],
            SkipReason::ProcessGone { pid: GONE_PID }
        );
    }
}

#[tokio::test]
async fn agent_requiring_a_client_certificate() {
    let pki = Pki::new();
    let agent = Agent::start(
        Answer::Json(get_state(GONE_PID, "c")),
        Some(Arc::clone(&pki.mutual)),
    )
    .await;
    let endpoint = format!("mesos_agent_endpoint: {}", agent.endpoint());

    let err = error_of(
        &mesos_node(&format!("{endpoint}\nssl_verify: {}", pki.path("ca.pem"))),
        &agent,
    )
    .await;
    assert!(matches!(err, MesosError::Request { .. }), "{err}");
    let separate = format!(
        "{endpoint}\nssl: !SSL\n  server_verify: {}\n  client_cert_path: {}\n  client_key_path: {}",
        pki.path("ca.pem"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let combined = format!(
        "{endpoint}\nssl: !SSL\n  server_verify: {}\n  client_cert_path: {}",
        pki.path("ca.pem"),
        pki.path("client.pem"),
    );
    for settings in [separate, combined] {
        let node = mesos_node(&settings);
        assert_eq!(node.tasks().await.expect(&settings), vec![], "{settings}");
        // The same client serves later iterations.
        assert_eq!(node.tasks().await.expect(&settings), vec![], "{settings}");
    }
    assert_eq!(agent.seen().len(), 4);
}

/// Every real capture and documentation example, served over HTTP as it is: no call fails
/// and no task is taken that should not be, each skip has its reason.
#[tokio::test]
async fn every_fixture_served_over_http() {
    type Expected = fn(&SkipReason) -> bool;
    let cases: [(&str, Expected); 6] = [
        // The captured executor pid 32620 is no process here.
        ("mesos_get_state.json", |r| {
            matches!(
                r,
                SkipReason::ProcessGone { .. } | SkipReason::RootCgroup { .. }
            )
        }),
        ("missing_executor_pid_in_mesos_response.json", |r| {
            matches!(r, SkipReason::NoExecutorPid)
        }),
        ("missing_statuses_in_mesos_response.json", |r| {
            matches!(r, SkipReason::NoStatuses)
        }),
        ("empty_statuses_in_mesos_response.json", |r| {
            matches!(r, SkipReason::NoStatuses)
        }),
        ("mesos_invalid_response.json", |r| {
            matches!(r, SkipReason::WrongType { .. })
        }),
        ("docs_agent_get_state_response.json", |_| true),
    ];
    for (file, expected) in cases {
        let text =
            std::fs::read_to_string(Path::new(support::mesos_agent::FIXTURES).join(file)).unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        let agent = Agent::start(Answer::Json(answer), None).await;
        let node = mesos_node(&format!("mesos_agent_endpoint: {}", agent.endpoint()));
        let tasks = node.tasks().await.unwrap_or_else(|e| panic!("{file}: {e}"));
        let skipped = node.skipped();
        assert!(
            tasks.is_empty(),
            "{file}: no executor here runs in a task cgroup: {tasks:?}"
        );
        assert!(!skipped.is_empty(), "{file}: skipped tasks are explained");
        for (task, reason) in &skipped {
            assert!(expected(reason), "{file}: {task} skipped as {reason:?}");
        }
    }
}

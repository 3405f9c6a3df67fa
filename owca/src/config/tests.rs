//! Tests of YAML loading: tags, aliases, durations, and error positions and paths.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{ConfigError, from_file, from_str};

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticNodeCfg {
    tasks: Vec<String>,
    #[serde(default, deserialize_with = "option_duration_secs")]
    timeout: Option<Duration>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct MesosNodeCfg {
    mesos_agent_endpoint: String,
}

#[derive(Debug, PartialEq, Deserialize)]
enum Node {
    StaticNode(StaticNodeCfg),
    MesosNode(MesosNodeCfg),
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunnerCfg {
    node: Node,
    #[serde(deserialize_with = "super::duration_secs")]
    action_delay: Duration,
    #[serde(default)]
    extra_nodes: Vec<Node>,
}

#[derive(Debug, PartialEq, Deserialize)]
enum Runner {
    MeasurementRunner(RunnerCfg),
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Root {
    runner: Runner,
}

const FILE: &str = "configs/x.yaml";

fn load(text: &str) -> Result<Root, ConfigError> {
    from_str(text, Path::new(FILE))
}

/// The error's Display, asserting it is a Parse error at `line:column` for `field`.
fn parse_error(text: &str, line: usize, column: usize, field: &str) -> String {
    let err = load(text).expect_err("config should not load");
    let shown = err.to_string();
    match &err {
        ConfigError::Parse {
            path,
            line: l,
            column: c,
            field: f,
            ..
        } => {
            assert_eq!(
                (path.as_path(), *l, *c, f.as_str()),
                (Path::new(FILE), line, column, field),
                "{shown}"
            );
        }
        ConfigError::Read { .. } => panic!("expected a parse error, got {shown}"),
    }
    shown
}

fn static_node(tasks: &[&str], timeout: Option<Duration>) -> Node {
    Node::StaticNode(StaticNodeCfg {
        tasks: tasks.iter().map(|t| (*t).to_owned()).collect(),
        timeout,
    })
}

#[test]
fn tags_select_variants() {
    let root =
        load("runner: !MeasurementRunner\n  node: !StaticNode {tasks: [a]}\n  action_delay: 1.\n")
            .expect("valid config");
    assert_eq!(
        root,
        Root {
            runner: Runner::MeasurementRunner(RunnerCfg {
                node: static_node(&["a"], None),
                action_delay: Duration::from_secs(1),
                extra_nodes: vec![],
            })
        }
    );
}

#[test]
fn anchors_and_aliases_work() {
    let text = "runner: !MeasurementRunner\n  node: &tester !StaticNode\n    tasks: [a, b]\n    timeout: 5\n  action_delay: 0.5\n  extra_nodes: [*tester, *tester]\n";
    let Runner::MeasurementRunner(runner) = load(text).expect("valid config").runner;
    let node = static_node(&["a", "b"], Some(Duration::from_secs(5)));
    assert_eq!(
        runner.extra_nodes,
        [node, static_node(&["a", "b"], Some(Duration::from_secs(5)))]
    );
    assert_eq!(runner.action_delay, Duration::from_millis(500));
}

#[test]
fn wrong_type_names_file_line_and_field() {
    let text = "runner: !MeasurementRunner\n  node: !StaticNode\n    tasks: [a]\n    timeout: x\n  action_delay: 1.\n";
    let shown = parse_error(text, 4, 14, "runner.node.timeout");
    assert_eq!(
        shown,
        "configs/x.yaml:4:14: runner.node.timeout: invalid type: string \"x\", expected a non-negative number of seconds up to 86400 (one day), e.g. 5 or 0.5"
    );
}

#[test]
fn unknown_field_names_the_field_and_its_line() {
    let text = "runner: !MeasurementRunner\n  node: !StaticNode\n    tasks: [a]\n    bogus: 1\n  action_delay: 1.\n";
    let shown = parse_error(text, 4, 5, "runner.node.bogus");
    assert_eq!(
        shown,
        "configs/x.yaml:4:5: runner.node.bogus: unknown field `bogus`, expected `tasks` or `timeout`"
    );
}

#[test]
fn unknown_tag_names_the_tag_and_the_expected_ones() {
    let text = "runner: !MeasurementRunner\n  action_delay: 1.\n  node: !Nope\n    tasks: [a]\n";
    let shown = parse_error(text, 3, 9, "runner.node");
    assert_eq!(
        shown,
        "configs/x.yaml:3:9: runner.node: unknown variant `Nope`, expected `StaticNode` or `MesosNode`"
    );
}

#[test]
fn missing_tag_is_explained() {
    let text = "runner: !MeasurementRunner\n  node: {tasks: [a]}\n  action_delay: 1\n";
    let shown = parse_error(text, 2, 9, "runner.node");
    assert!(
        shown.ends_with("runner.node: invalid type: map, expected a YAML tag starting with '!'"),
        "{shown}"
    );
}

#[test]
fn missing_field_names_the_struct() {
    let text = "runner: !MeasurementRunner\n  node: !MesosNode {mesos_agent_endpoint: x}\n";
    let shown = parse_error(text, 1, 9, "runner");
    assert_eq!(
        shown,
        "configs/x.yaml:1:9: runner: missing field `action_delay`"
    );
    let shown = parse_error("other: 1\n", 1, 1, "other");
    assert_eq!(
        shown,
        "configs/x.yaml:1:1: other: unknown field `other`, expected `runner`"
    );
}

#[test]
fn errors_in_sequences_show_the_index() {
    let text = "runner: !MeasurementRunner\n  node: !StaticNode {tasks: []}\n  action_delay: 1\n  extra_nodes:\n    - !StaticNode {tasks: []}\n    - !MesosNode {mesos_agent_endpoint: [1]}\n";
    let shown = parse_error(text, 6, 41, "runner.extra_nodes[1].mesos_agent_endpoint");
    assert!(
        shown.ends_with("mesos_agent_endpoint: invalid type: sequence, expected a string"),
        "{shown}"
    );
}

#[test]
fn syntax_error_keeps_libyaml_context() {
    let text =
        "runner: !MeasurementRunner\n  node: !StaticNode\n    tasks: [a\n  action_delay: 5\n";
    let shown = parse_error(text, 4, 15, "runner.node.tasks");
    assert_eq!(
        shown,
        "configs/x.yaml:4:15: runner.node.tasks: did not find expected ',' or ']', while parsing a flow sequence at line 3 column 12"
    );
}

#[test]
fn durations_accept_ints_and_floats_and_reject_the_rest() {
    #[derive(Debug, Deserialize)]
    struct D {
        #[serde(deserialize_with = "super::duration_secs")]
        d: Duration,
    }
    let ok = |yaml: &str| from_str::<D>(yaml, Path::new("d.yaml")).map(|d| d.d);
    assert_eq!(ok("d: 5").ok(), Some(Duration::from_secs(5)));
    assert_eq!(ok("d: 1.").ok(), Some(Duration::from_secs(1)));
    assert_eq!(ok("d: 0.25").ok(), Some(Duration::from_millis(250)));
    assert_eq!(ok("d: 0").ok(), Some(Duration::ZERO));
    assert_eq!(ok("d: 1e1").ok(), Some(Duration::from_secs(10)));
    assert_eq!(ok("d: 86400").ok(), Some(super::MAX_DURATION));
    for (yaml, shown) in [
        (
            "d: -1",
            "d.yaml:1:4: d: invalid value: integer `-1`, expected a non-negative number of seconds up to",
        ),
        (
            "d: -0.5",
            "d.yaml:1:4: d: invalid value: floating point `-0.5`, expected a non-negative number of seconds up to",
        ),
        (
            "d: .nan",
            "d.yaml:1:4: d: invalid value: floating point `NaN`, expected a non-negative number of seconds up to",
        ),
        (
            "d: .inf",
            "d.yaml:1:4: d: invalid value: floating point `inf`, expected a non-negative number of seconds up to",
        ),
        (
            "d: 1e300",
            "d.yaml:1:4: d: invalid value: 1e300 seconds (too long), expected a non-negative number of seconds up to",
        ),
        (
            "d: '5'",
            "d.yaml:1:4: d: invalid type: string \"5\", expected a non-negative number of seconds up to",
        ),
    ] {
        let err = ok(yaml).expect_err(yaml).to_string();
        assert!(err.starts_with(shown), "{yaml}: {err}");
    }
}

#[test]
fn positive_durations_refuse_zero_and_what_rounds_to_it() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Runner {
        #[serde(deserialize_with = "super::positive_duration_secs")]
        action_delay: Duration,
    }
    let ok = |yaml: &str| from_str::<Runner>(yaml, Path::new(FILE)).map(|r| r.action_delay);
    assert_eq!(
        ok("action_delay: 0.001").ok(),
        Some(Duration::from_millis(1))
    );
    assert_eq!(
        ok("action_delay: 86400").ok(),
        Some(Duration::from_secs(86400))
    );
    assert_eq!(ok("action_delay: 2").ok(), Some(Duration::from_secs(2)));
    for (yaml, shown) in [
        (
            "action_delay: 0",
            "configs/x.yaml:1:15: action_delay: invalid value: 0 seconds (too short), expected a number of seconds from 0.001 to 86400 (one day), e.g. 5 or 0.5",
        ),
        (
            "action_delay: 0.0",
            "configs/x.yaml:1:15: action_delay: invalid value: 0e0 seconds (too short), expected a number of seconds from 0.001",
        ),
        (
            "action_delay: 1e-12",
            "configs/x.yaml:1:15: action_delay: invalid value: 1e-12 seconds (too short), expected",
        ),
        (
            "action_delay: 1e19",
            "configs/x.yaml:1:15: action_delay: invalid value: 1e19 seconds (too long), expected a number of seconds from 0.001 to 86400 (one day)",
        ),
        (
            "action_delay: -1",
            "configs/x.yaml:1:15: action_delay: invalid value: integer `-1`, expected a number of seconds from 0.001",
        ),
    ] {
        let err = ok(yaml).expect_err(yaml).to_string();
        assert!(err.starts_with(shown), "{yaml}: {err}");
    }
}

#[test]
fn from_file_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("owca.yaml");
    let err = from_file::<Root>(&path).expect_err("file is missing");
    assert!(
        matches!(&err, ConfigError::Read { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("owca.yaml"), "{err}");

    std::fs::write(
        &path,
        "runner: !MeasurementRunner\n  node: !StaticNode {tasks: [a]}\n  action_delay: 2\n",
    )
    .expect("write config");
    assert!(from_file::<Root>(&path).is_ok());
    std::fs::write(&path, "runner: 1\n").expect("write config");
    let err = from_file::<Root>(&path)
        .expect_err("bad config")
        .to_string();
    assert!(
        err.starts_with(&format!("{}:1:9: runner: ", path.display())),
        "{err}"
    );
}

/// Like [`duration_secs`] for an optional field; pair it with `#[serde(default)]` so that
/// a missing field is `None`.
fn option_duration_secs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Ok(Option::<Seconds>::deserialize(deserializer)?.map(|s| s.0))
}

/// A [`Duration`] read as seconds, so that `Option` can wrap it.
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::duration_secs(deserializer).map(Seconds)
    }
}

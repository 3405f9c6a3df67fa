//! The `owca` binary end to end on the real kernel: config, output checked by promtool and
//! node_exporter, values against cgroupfs, one warning for a missing PMU, clean shutdown.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    agent::OWCA,
    resctrl::{ResctrlTree, fill_mon_group},
    workload::{busy, sleeper},
    *,
};

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ids of the eBPF programs process `pid` holds (`prog_id:` in its fds' fdinfo).
fn program_ids_of(pid: u32) -> Vec<u64> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("reading fdinfo");
    fds.flatten()
        .filter_map(|fd| {
            let info = std::fs::read_to_string(fd.path()).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// Whether a program with this id is still loaded in the kernel.
fn program_loaded(id: u64) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool (Debian package bpftool)")
        .status
        .success()
}

#[test]
fn agent_measures_a_static_task_writes_valid_prometheus_text_and_stops_cleanly() {
    require_root!();
    // Allocates only once in the cgroup (v1 charges memory where it is first touched).
    let busy =
        Proc::python("import time\ntime.sleep(0.5)\nb = bytearray(64 << 20)\nwhile True: pass");
    let PlacedTask {
        rel,
        cgroup: cg,
        proc: _busy,
    } = placed("agent", &["cpu", "cpuacct", "memory"], busy);

    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("owca.prom");
    let mut agent = Agent::start_with(
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode\n    tasks: [{rel}]\n  action_delay: 0.5\n  \
             metrics_storage: !LogStorage\n    output_filename: {}\n    overwrite: true\n  \
             extra_labels:\n    env_id: test\n",
            prom.display()
        ),
        &["-l", "info"],
        &[],
    );
    agent.wait_for(&prom, "task_oncpu_seconds_total", |t| {
        t.contains("task_oncpu_seconds_total")
    });
    let task = format!("task_id=\"{rel}\"");
    // Memory is read when a task appears and then every 10 iterations (5 s here): wait
    // for the reading after the 64 MB were allocated. Meanwhile a repeated warning would
    // show.
    let text = agent.wait_for(&prom, "memory usage after the allocation", |t| {
        sample(t, "memory_usage_per_task_bytes", &[&task]).is_some_and(|m| m >= 64e6)
    });
    let usage = cgroup_value(&cg.dir("cpuacct").join("cpuacct.usage"), None) as f64;
    let reported =
        sample(&text, "cpu_usage_per_task", &[&task]).expect("cpu_usage_per_task of the task");
    assert!(
        reported > 0.0 && reported <= usage,
        "cpu_usage_per_task {reported} vs cpuacct.usage {usage}"
    );
    let oncpu = sample(&text, "task_oncpu_seconds_total", &[&task]).expect("on-CPU time") * 1e9;
    assert!(
        (oncpu - reported).abs() < 0.6e9,
        "eBPF {oncpu} ns vs cpuacct {reported} ns"
    );
    let mem = sample(&text, "memory_usage_per_task_bytes", &[&task]).expect("memory usage");
    let kernel_mem = cgroup_value(&cg.dir("memory").join("memory.usage_in_bytes"), None) as f64;
    assert!(
        mem >= 64e6 && (mem - kernel_mem).abs() < 0.1 * kernel_mem,
        "memory {mem} vs {kernel_mem}"
    );
    assert!(text.contains("env_id=\"test\"") && text.contains("owca_version="));
    assert!(
        sample(
            &text,
            "task_context_switches_total",
            &["kind=\"involuntary\""]
        )
        .is_some()
    );
    assert!(
        sample(&text, "owca_up", &[]).is_some() && sample(&text, "owca_tasks", &[]) == Some(1.0)
    );
    let has_pmu = Path::new("/sys/bus/event_source/devices/cpu").exists();
    assert_eq!(
        text.contains("\ninstructions{"),
        has_pmu,
        "no PMU → no instructions metric at all"
    );

    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&prom).unwrap())
        .output()
        .expect("promtool (Debian package prometheus)");
    let out = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    // Exit 3 is lint advice only (OWCA's names predate Prometheus naming rules).
    assert!(
        matches!(check.status.code(), Some(0 | 3)),
        "promtool: {out}"
    );
    assert!(!out.contains("error"), "promtool: {out}");

    let programs = program_ids_of(agent.pid());
    assert!(
        programs.len() >= 2,
        "the agent holds its programs: {programs:?}"
    );
    let (status, stderr) = agent.terminate();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    if !has_pmu {
        assert_eq!(
            stderr.matches("PMU lacks").count(),
            1,
            "one warning for the missing PMU:\n{stderr}"
        );
    }
    // The kernel frees released programs after an RCU grace period.
    let loaded = || programs.iter().copied().filter(|id| program_loaded(*id));
    let start = Instant::now();
    while loaded().next().is_some() && start.elapsed() < Duration::from_secs(5) {
        sleep_s(0.1);
    }
    let left: Vec<u64> = loaded().collect();
    assert!(
        left.is_empty(),
        "programs {left:?} of the agent still loaded 5 s after SIGTERM"
    );
}

#[test]
fn node_exporter_textfile_collector_reads_the_output_without_errors() {
    require_root!();
    let PlacedTask { rel, .. } = &placed("textfile", &["cpu", "cpuacct"], sleeper());
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("owca.prom");
    let mut agent = Agent::start(
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: [{rel}]}}\n  action_delay: 0.2\n  \
             event_names: []\n  metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n",
            prom.display()
        ),
    );
    agent.wait_for(&prom, "owca_tasks", |t| t.contains("owca_tasks"));
    let port = free_port();
    // Debian package prometheus-node-exporter.
    let _exporter = Proc::spawn(
        Command::new("prometheus-node-exporter")
            .args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                &format!("--collector.textfile.directory={}", dir.path().display()),
                "--collector.disable-defaults",
                "--collector.textfile",
            ])
            .stderr(Stdio::null()),
    );
    // Scrape repeatedly while the agent keeps replacing the file: never a torn read.
    let start = Instant::now();
    let mut scrapes = 0;
    while start.elapsed() < Duration::from_secs(3) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            sleep_s(0.1);
            continue;
        };
        drop(s.write_all(b""));
        let body = http_get(port, "/metrics");
        assert!(
            body.contains("node_textfile_scrape_error 0"),
            "textfile collector error:\n{body}"
        );
        assert!(
            body.contains(&format!("task_id=\"{rel}\"")),
            "our metrics are exported"
        );
        scrapes += 1;
        sleep_s(0.05);
    }
    assert!(scrapes > 10, "only {scrapes} scrapes");
    drop(agent);
}

#[test]
fn bad_config_and_root_without_flag_are_refused_with_clear_messages() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "runner: !MeasurementRunner\n  node: !StaticNode\n    tasks: [a]\n  action_delay: soon\n",
    )
    .unwrap();
    let out = Command::new(OWCA)
        .args(["-c", config.to_str().unwrap(), "-0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.yaml:4:") && err.contains("action_delay"),
        "{err}"
    );

    let out = Command::new(OWCA)
        .args(["-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("-0/--root"), "{err}");

    let out = Command::new(OWCA).arg("-v").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn real_prometheus_scrapes_the_exporter() {
    require_root!();
    let sleeper = Proc::sh("while :; do sleep 0.01; done", None);
    let PlacedTask { rel, .. } = &placed("scrape", &["cpu", "cpuacct"], sleeper);
    let dir = tempfile::tempdir().unwrap();
    let (exporter_port, prom_port) = (free_port(), free_port());
    let _agent = Agent::start(
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: [{rel}]}}\n  action_delay: 0.5\n  \
             metrics_storage: !PrometheusExporter {{listen: '127.0.0.1:{exporter_port}'}}\n"
        ),
    );
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: owca\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    )
    .unwrap();
    // Debian package prometheus.
    let _prometheus = Proc::spawn(
        Command::new("prometheus")
            .args([
                &format!("--config.file={}", prom_cfg.display()),
                &format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
                &format!("--web.listen-address=127.0.0.1:{prom_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let query = |q: &str| {
        let body = http_get(prom_port, &format!("/api/v1/query?query={q}"));
        body.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
    };
    let start = Instant::now();
    loop {
        let switches = TcpStream::connect(("127.0.0.1", prom_port))
            .ok()
            .map(|_| query("task_context_switches_total%7Bkind%3D%22voluntary%22%7D"));
        if let Some(body) = switches.filter(|b| b.contains(rel.as_str())) {
            let up = query("up%7Bjob%3D%22owca%22%7D");
            assert!(up.contains("\"1\"]"), "scrape target up: {up}");
            let health = http_get(prom_port, "/api/v1/targets");
            assert!(
                health.contains("\"health\":\"up\"") && !health.contains("\"lastError\":\"e"),
                "{health}"
            );
            assert!(body.contains("\"kind\":\"voluntary\""), "{body}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "Prometheus never stored our metrics"
        );
        sleep_s(0.5);
    }
}

#[test]
fn rdt_monitoring_through_a_resctrl_shaped_tree() {
    require_root!();
    let PlacedTask {
        rel, proc: busy, ..
    } = &placed("rdt", &["cpu", "cpuacct"], busy());
    // What the kernel shows at /sys/fs/resctrl on an RDT machine (this one has none).
    let dir = tempfile::tempdir().unwrap();
    let resctrl = ResctrlTree::new(&dir.path().join("resctrl")).with_monitoring(1);
    let prom = dir.path().join("owca.prom");
    let mut agent = Agent::start_with(
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: [{rel}]}}\n  action_delay: 0.2\n  rdt_enabled: true\n  \
             metrics_storage: !LogStorage {{output_filename: {}, overwrite: true}}\n",
            prom.display()
        ),
        &[],
        &[("OWCA_RESCTRL_ROOT", resctrl.path().as_os_str())],
    );
    // The agent makes the task's mon group; the kernel would then add its files.
    let group = resctrl
        .path()
        .join("mon_groups")
        .join(format!("owca-{}", rel.replace('/', "%2F")));
    let start = Instant::now();
    while !group.is_dir() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no mon group {}",
            group.display()
        );
        sleep_s(0.05);
    }
    fill_mon_group(&group, &[(1000, 5000), (24, 96)]);
    let text = agent.wait_for(&prom, "llc_occupancy{", |t| t.contains("llc_occupancy{"));
    let task = format!("task_id=\"{rel}\"");
    assert_eq!(
        sample(&text, "llc_occupancy", &[&task]),
        Some(1024.0),
        "summed over L3 domains"
    );
    assert_eq!(sample(&text, "memory_bandwidth", &[&task]), Some(5096.0));
    // The task's thread is written to the group's tasks file (one id per write) by the
    // first iteration that finds the file: the test made it just before mon_data, so that
    // may be the iteration after the one that first read mon_data.
    let pid = busy.pid().to_string();
    wait_until(&group.join("tasks"), "the task's thread", |t| {
        t.lines().any(|l| l.trim() == pid)
    });
}

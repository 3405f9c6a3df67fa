//! A `/proc` stand-in for `MesosNode::discover`: `<root>/<pid>/cgroup` for the executor
//! pids of the seed answers (`fixtures/mesos`) and for 1..=16, in every shape the parser
//! handles (v1 `cpu` line, v2 line, the root cgroup, no usable line, garbage, a directory
//! where the file should be). Other pids are absent, as for a process that is gone.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// Executor pids in the Mesos captures of `fixtures/mesos`.
const SEED_PIDS: &[u32] = &[
    19846, 27140, 32620, 48726, 48820, 48933, 49041, 49139, 49238, 49337, 49452, 49953, 50209,
    50314, 50424, 50550,
];

/// The fake root, made once per fuzzing process under the temporary directory.
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("owca-fuzz-proc-{}", std::process::id()));
        // A leftover of an earlier run with the same pid is replaced.
        let _ = std::fs::remove_dir_all(&root);
        for pid in (1..=16).chain(SEED_PIDS.iter().copied()) {
            let dir = root.join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let cgroup = dir.join("cgroup");
            let text = match pid % 6 {
                0 => format!(
                    "12:memory:/mesos/{pid}\n4:cpu,cpuacct:/mesos/{pid}\n1:name=systemd:/\n"
                ),
                1 => format!("0::/mesos/{pid}\n"),
                2 => "4:cpu,cpuacct:/\n0::/\n".to_owned(),
                3 => "12:memory:/mesos/x\n".to_owned(),
                4 => "not a cgroup line\n".to_owned(),
                _ => {
                    std::fs::create_dir_all(&cgroup).unwrap();
                    continue;
                }
            };
            std::fs::write(cgroup, text).unwrap();
        }
        root
    })
}

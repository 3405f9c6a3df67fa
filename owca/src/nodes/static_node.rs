//! `!StaticNode`: tasks given as cgroup paths in the config.

use serde::Deserialize;

use super::Task;

/// A fixed list of tasks, each named by its cgroup path (e.g. `mesos/abc`), which is also
/// its `task_id`, as in OWCA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNode {
    /// Cgroup paths relative to the hierarchy roots.
    pub tasks: Vec<String>,
}

impl StaticNode {
    /// The configured tasks.
    pub fn tasks(&self) -> Vec<Task> {
        self.tasks
            .iter()
            .map(|path| Task {
                task_id: path.clone(),
                name: path.clone(),
                cgroup_path: format!("/{}", path.trim_start_matches('/')),
                labels: Default::default(),
                resources: Default::default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_is_the_given_path() {
        let n = StaticNode {
            tasks: vec!["mesos/abc".into(), "/task1".into()],
        };
        let t = n.tasks();
        assert_eq!(t[0].task_id, "mesos/abc");
        assert_eq!(t[0].cgroup_path, "/mesos/abc");
        assert_eq!(t[1].cgroup_path, "/task1");
    }
}

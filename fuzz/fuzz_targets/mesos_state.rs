//! The GET_STATE parser: any answer body, as `MesosNode::tasks` reads it (JSON, then
//! `MesosNode::discover`), against a fake `/proc`. No panic; a second call on the same
//! node (cgroup cache, warn-once state) gives the same tasks and warns about nothing new;
//! task ids are unique and every task has a cgroup other than the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owca::nodes::MesosNode;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let node = MesosNode::default().with_proc_root(owca_fuzz::fake_proc::root());
    let first = node.discover(&answer);
    let second = node.discover(&answer);
    match (first, second) {
        (Ok(first), Ok(second)) => {
            assert_eq!(first.tasks, second.tasks);
            assert_eq!(first.skipped, second.skipped);
            assert!(
                second.warned.is_empty(),
                "warned twice: {:?}",
                second.warned
            );
            let mut ids = std::collections::BTreeSet::new();
            for task in &first.tasks {
                assert!(
                    ids.insert(&task.task_id),
                    "task {} listed twice",
                    task.task_id
                );
                assert!(!task.cgroup_path.is_empty() && task.cgroup_path != "/");
            }
        }
        (Err(first), Err(second)) => assert_eq!(first.to_string(), second.to_string()),
        (first, second) => panic!("two calls disagree: {first:?} then {second:?}"),
    }
});

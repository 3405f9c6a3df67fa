//! A resctrl mount as the kernel shows it at `/sys/fs/resctrl`, built in a directory of the
//! test's for the agent to use through `OWCA_RESCTRL_ROOT` (the test machines have no RDT).
//! Plain directories get no kernel-made files: where the kernel would act on its own (a
//! new group's files), the test calls [`fill_mon_group`] or builds the group beforehand.
//!
//! The layout (kernel docs, `Documentation/filesystems/resctrl.rst`):
//! ```text
//! info/last_cmd_status  info/L3_MON/  info/L3/  info/MB/    what the hardware offers
//! tasks  schemata  mon_groups/  mon_data/mon_L3_<NN>/       the root group
//! <control group>/{tasks,schemata,mon_groups/}              a control group
//! ```

use std::path::{Path, PathBuf};

/// A resctrl-shaped tree under construction; every `with_` method writes at once.
pub struct ResctrlTree {
    root: PathBuf,
}

impl ResctrlTree {
    /// resctrl mounted at `root` with nothing more: `info/last_cmd_status` (`ok`), the
    /// root group's empty `tasks`, and `mon_groups/`.
    pub fn new(root: &Path) -> Self {
        let tree = Self {
            root: root.to_owned(),
        };
        tree.write("info/last_cmd_status", "ok\n");
        tree.write("tasks", "");
        tree.dir("mon_groups");
        tree
    }

    /// L3 monitoring (CMT and MBM): `info/L3_MON/` and the root group's `mon_data/` with
    /// `domains` L3 domains (`mon_L3_00`, ...).
    pub fn with_monitoring(self, domains: usize) -> Self {
        self.write(
            "info/L3_MON/mon_features",
            "llc_occupancy\nmbm_total_bytes\nmbm_local_bytes\n",
        );
        self.write("info/L3_MON/num_rmids", "176\n");
        for d in 0..domains {
            self.dir(&format!("mon_data/mon_L3_{d:02}"));
        }
        self
    }

    /// L3 cache allocation (CAT): `info/L3/{cbm_mask,min_cbm_bits,num_closids}`.
    pub fn with_l3_allocation(self, cbm_mask: &str, min_cbm_bits: u32, num_closids: u32) -> Self {
        self.write("info/L3/cbm_mask", &format!("{cbm_mask}\n"));
        self.write("info/L3/min_cbm_bits", &format!("{min_cbm_bits}\n"));
        self.write("info/L3/num_closids", &format!("{num_closids}\n"));
        self
    }

    /// Memory bandwidth allocation (MBA): `info/MB/{min_bandwidth,bandwidth_gran,num_closids}`.
    pub fn with_mb_allocation(
        self,
        min_bandwidth: u32,
        bandwidth_gran: u32,
        num_closids: u32,
    ) -> Self {
        self.write("info/MB/min_bandwidth", &format!("{min_bandwidth}\n"));
        self.write("info/MB/bandwidth_gran", &format!("{bandwidth_gran}\n"));
        self.write("info/MB/num_closids", &format!("{num_closids}\n"));
        self
    }

    /// The root group's `schemata`, e.g. `"L3:0=fff;1=fff\nMB:0=100;1=100\n"`.
    pub fn with_schemata(self, schemata: &str) -> Self {
        self.write("schemata", schemata);
        self
    }

    /// A control group `name` as the kernel makes it on mkdir: empty `tasks`, `mon_groups/`
    /// and the root group's `schemata`.
    pub fn with_control_group(self, name: &str) -> Self {
        let schemata = std::fs::read_to_string(self.root.join("schemata")).unwrap_or_default();
        self.dir(&format!("{name}/mon_groups"));
        self.write(&format!("{name}/schemata"), &schemata);
        self.write(&format!("{name}/tasks"), "");
        self
    }

    /// The mount root, for `OWCA_RESCTRL_ROOT`.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn dir(&self, rel: &str) {
        let dir = self.root.join(rel);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// What the kernel puts in a monitoring group made with mkdir: an empty `tasks`, and per
/// L3 domain `mon_data/mon_L3_<NN>/` with `(llc_occupancy, mbm_total_bytes)`.
pub fn fill_mon_group(group: &Path, domains: &[(u64, u64)]) {
    std::fs::write(group.join("tasks"), "").expect("writing the group's tasks");
    for (i, (occupancy, bandwidth)) in domains.iter().enumerate() {
        let d = group.join(format!("mon_data/mon_L3_{i:02}"));
        std::fs::create_dir_all(&d).expect("creating the group's mon_data");
        std::fs::write(d.join("llc_occupancy"), format!("{occupancy}\n")).unwrap();
        std::fs::write(d.join("mbm_total_bytes"), format!("{bandwidth}\n")).unwrap();
    }
}

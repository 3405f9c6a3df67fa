//! RDT allocation through resctrl control groups: L3 cache ways and memory bandwidth.
//!
//! ```text
//! <root>/info/L3/{cbm_mask,min_cbm_bits,num_closids}   L3 cache allocation (CAT)
//! <root>/info/MB/{min_bandwidth,bandwidth_gran,num_closids}   memory bandwidth (MBA)
//! <root>/schemata, tasks                               the root (default) group
//! <root>/<group>/schemata, tasks, mon_groups/          a control group (mkdir makes it;
//!                                                      each uses one CLOSID)
//! ```
//! A task's group is `owca-<task>` (the name its monitoring group has) unless the
//! allocation names one (`""` = the root group). Nothing is remembered across restarts:
//! where a task is and what its group holds are read back from the files.
//!
//! The agent writes and removes only its own groups: those named `owca-...` and those
//! it created in this run. An allocation naming another existing group (an operator's,
//! another agent's) is refused, so that its schemata are not rewritten nor the group
//! removed once empty.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::{
    GROUP_PREFIX, MON_DATA, MON_GROUPS, ResctrlError, TASKS,
    files::{kernel_status, move_threads, read_pids, remove_group},
    group_name,
    schemata::{self, Resource},
};

const INFO: &str = "info";
/// Value per domain id of a schemata line.
type Domains = BTreeMap<u32, u64>;
const SCHEMATA: &str = "schemata";

/// A task's RDT allocation as allocators give it (OWCA's `RDTAllocation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdtAllocation {
    /// Control group: `None` = the task's own group (`owca-<task>`), `""` = root group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Schemata line, e.g. `L3:0=fff;1=fff`; `None` = leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3: Option<String>,
    /// Schemata line, e.g. `MB:0=50;1=50`; `None` = leave as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mb: Option<String>,
}

impl RdtAllocation {
    /// L3 mask per domain id of the `l3` line (`L3:0=fff;1=ff` → {0: 0xfff, 1: 0xff}).
    pub fn l3_masks(&self) -> Option<BTreeMap<u32, u64>> {
        schemata::parse(Resource::L3, self.l3.as_deref()?).ok()
    }

    /// MB value per domain id of the `mb` line (`MB:0=50;1=60` → {0: 50, 1: 60}).
    pub fn mb_values(&self) -> Option<BTreeMap<u32, u64>> {
        schemata::parse(Resource::Mb, self.mb.as_deref()?).ok()
    }

    /// The directory name of the task's control group (`""` for the root group).
    pub fn group(&self, task_id: &str) -> String {
        self.name.clone().unwrap_or_else(|| group_name(task_id))
    }
}

/// What `info/` says the hardware can do. Allocators get it as the platform's
/// `rdt_information` (OWCA's name) while RDT allocation is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RdtCapabilities {
    /// `info/L3/cbm_mask` when L3 allocation exists.
    pub cbm_mask: Option<u64>,
    /// `info/L3/min_cbm_bits`.
    pub min_cbm_bits: u32,
    /// Fewest of `info/L3/num_closids` and `info/MB/num_closids` (root group included).
    pub num_closids: u32,
    /// L3 domain ids found in the root `schemata`.
    pub l3_domains: Vec<u32>,
    /// MB allocation; `None` without it.
    pub mb: Option<MbCapabilities>,
    /// MB domain ids found in the root `schemata`.
    pub mb_domains: Vec<u32>,
}

/// What memory bandwidth allocation takes, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MbCapabilities {
    /// `info/MB/min_bandwidth`: the kernel refuses less.
    pub min_bandwidth: u32,
    /// `info/MB/bandwidth_gran`: the kernel rounds to a multiple of it.
    pub bandwidth_gran: u32,
}

/// Why a set of RDT allocations was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task_id}: {reason}")]
pub struct InvalidRdt {
    /// The task whose allocation is invalid.
    pub task_id: String,
    /// What is wrong, naming the value.
    pub reason: String,
}

/// resctrl control groups made or taken over by the agent.
#[derive(Debug)]
pub struct RdtControl {
    root: PathBuf,
    caps: RdtCapabilities,
    /// Groups allocations put tasks in (root excluded): removed once empty.
    used: BTreeSet<String>,
    /// Groups this run created: the agent's even without the `owca-` prefix.
    created: BTreeSet<String>,
}

impl RdtControl {
    /// Reads `info/` under `root`; an error when resctrl is not mounted there or offers
    /// neither L3 nor MB allocation. `remove_all_resctrl_groups` removes every control
    /// group found (not only the agent's), as OWCA did at start.
    pub fn open(root: &Path, remove_all_resctrl_groups: bool) -> Result<Self, ResctrlError> {
        let info = root.join(INFO);
        if !info.is_dir() {
            return Err(ResctrlError::NotMounted {
                root: root.to_owned(),
            });
        }
        let l3 = info.join("L3");
        let mb = info.join("MB");
        let (has_l3, has_mb) = (l3.is_dir(), mb.is_dir());
        if !has_l3 && !has_mb {
            return Err(ResctrlError::NoAllocation {
                root: root.to_owned(),
            });
        }
        let root_schemata = read(&root.join(SCHEMATA))?;
        let domains = |r| {
            schemata::find_line(&root_schemata, r)
                .and_then(|l| schemata::parse(r, l).ok())
                .map(|v| v.into_keys().collect())
                .unwrap_or_default()
        };
        let mut closids = Vec::new();
        let mut caps = RdtCapabilities {
            cbm_mask: None,
            min_cbm_bits: 1,
            num_closids: u32::MAX,
            l3_domains: Vec::new(),
            mb: None,
            mb_domains: Vec::new(),
        };
        if has_l3 {
            caps.cbm_mask = Some(read_number(&l3.join("cbm_mask"), 16)?);
            caps.min_cbm_bits = read_number(&l3.join("min_cbm_bits"), 10)? as u32;
            closids.push(read_number(&l3.join("num_closids"), 10)? as u32);
            caps.l3_domains = domains(Resource::L3);
        }
        if has_mb {
            caps.mb = Some(MbCapabilities {
                min_bandwidth: read_number(&mb.join("min_bandwidth"), 10)? as u32,
                bandwidth_gran: read_number(&mb.join("bandwidth_gran"), 10)? as u32,
            });
            closids.push(read_number(&mb.join("num_closids"), 10)? as u32);
            caps.mb_domains = domains(Resource::Mb);
        }
        caps.num_closids = closids.into_iter().min().unwrap_or(1);
        let mut control = Self {
            root: root.to_owned(),
            caps,
            used: BTreeSet::new(),
            created: BTreeSet::new(),
        };
        for group in control.groups()? {
            if remove_all_resctrl_groups {
                remove_group(&root.join(&group))?;
                info!(
                    group,
                    "removed a resctrl control group (remove_all_resctrl_groups)"
                );
            } else if group.starts_with(GROUP_PREFIX) {
                // Left by an earlier run: removed once empty, like those made from now on.
                control.used.insert(group);
            }
        }
        Ok(control)
    }

    /// Whether allocations may write into and remove `group` (root `""` excluded): it is
    /// named `owca-...`, was created in this run, or does not exist yet.
    fn may_use(&self, group: &str) -> bool {
        group.starts_with(GROUP_PREFIX)
            || self.created.contains(group)
            || !self.root.join(group).exists()
    }

    /// What the hardware offers.
    pub fn capabilities(&self) -> &RdtCapabilities {
        &self.caps
    }

    /// The mount root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks every task's allocation (all-or-nothing): masks contiguous, within
    /// `cbm_mask`, at least `min_cbm_bits`, known domains, MB in range, at most
    /// `num_closids` groups in all. Tasks absent from `desired` keep what they have.
    pub fn validate(&self, desired: &BTreeMap<String, RdtAllocation>) -> Result<(), InvalidRdt> {
        // Group → (task, allocation) that first set it: two tasks may share a group only
        // when they ask the same of it.
        let mut groups: BTreeMap<String, (&str, Domains, Domains)> = BTreeMap::new();
        for (task_id, a) in desired {
            let invalid = |reason: String| InvalidRdt {
                task_id: task_id.clone(),
                reason,
            };
            let group = a.group(task_id);
            check_group_name(&group).map_err(invalid)?;
            if !group.is_empty() && !self.may_use(&group) {
                return Err(invalid(format!(
                    "resctrl group {group:?} exists and was not made by the agent: allocations may name the root group (\"\"), groups named {GROUP_PREFIX}..., or new ones"
                )));
            }
            let l3 = match &a.l3 {
                Some(line) => self.check_l3(line).map_err(invalid)?,
                None => BTreeMap::new(),
            };
            let mb = match &a.mb {
                Some(line) => self.check_mb(line).map_err(invalid)?,
                None => BTreeMap::new(),
            };
            match groups.get(&group) {
                Some((other, l3_other, mb_other))
                    if (!l3.is_empty() && !l3_other.is_empty() && l3 != *l3_other)
                        || (!mb.is_empty() && !mb_other.is_empty() && mb != *mb_other) =>
                {
                    return Err(invalid(format!(
                        "group {group:?} is given other schemata than for task {other}"
                    )));
                }
                Some(_) => {}
                None => {
                    groups.insert(group, (task_id, l3, mb));
                }
            }
        }
        // Groups that exist stay (others' and tasks' not in `desired`): all need CLOSIDs.
        let mut all: BTreeSet<String> = self.groups().unwrap_or_default().into_iter().collect();
        all.extend(groups.into_keys().filter(|g| !g.is_empty()));
        let needed = all.len() as u64 + 1;
        if needed > u64::from(self.caps.num_closids) {
            let task_id = desired.keys().next().cloned().unwrap_or_default();
            return Err(InvalidRdt {
                task_id,
                reason: format!(
                    "{} control groups with the root one, more than the {} CLOSIDs the hardware has",
                    needed, self.caps.num_closids
                ),
            });
        }
        Ok(())
    }

    fn check_l3(&self, line: &str) -> Result<BTreeMap<u32, u64>, String> {
        let Some(cbm_mask) = self.caps.cbm_mask else {
            return Err(format!(
                "l3 {line:?}: {} offers no L3 cache allocation",
                self.root.display()
            ));
        };
        let masks = schemata::parse(Resource::L3, line)?;
        for (domain, mask) in &masks {
            if !self.caps.l3_domains.contains(domain) {
                return Err(format!(
                    "l3 {line:?}: no L3 domain {domain} (domains {:?})",
                    self.caps.l3_domains
                ));
            }
            if let Some(why) = schemata::check_mask(*mask, cbm_mask, self.caps.min_cbm_bits) {
                return Err(format!("l3 {line:?}: {why}"));
            }
        }
        Ok(masks)
    }

    fn check_mb(&self, line: &str) -> Result<BTreeMap<u32, u64>, String> {
        let Some(MbCapabilities {
            min_bandwidth: min, ..
        }) = self.caps.mb
        else {
            return Err(format!(
                "mb {line:?}: {} offers no memory bandwidth allocation",
                self.root.display()
            ));
        };
        let values = schemata::parse(Resource::Mb, line)?;
        for (domain, value) in &values {
            if !self.caps.mb_domains.contains(domain) {
                return Err(format!(
                    "mb {line:?}: no MB domain {domain} (domains {:?})",
                    self.caps.mb_domains
                ));
            }
            // The kernel rounds to bandwidth_gran itself; below the minimum it refuses.
            if *value < u64::from(min) || *value > 100 {
                return Err(format!(
                    "mb {line:?}: {value} is outside {min}..=100 (info/MB/min_bandwidth)"
                ));
            }
        }
        Ok(values)
    }

    /// Each task's current allocation, read from the kernel: the control group holding
    /// its first thread (`name`) and that group's schemata lines (`l3`, `mb`), normalized
    /// so that comparing with a desired allocation tells whether a write is needed.
    pub fn current(
        &self,
        threads: &BTreeMap<String, Vec<u32>>,
    ) -> Result<BTreeMap<String, RdtAllocation>, ResctrlError> {
        let mut group_of: HashMap<u32, String> = HashMap::new();
        for group in std::iter::once(String::new()).chain(self.groups()?) {
            let tasks = self.root.join(&group).join(TASKS);
            match read_pids(&tasks) {
                Ok(pids) => group_of.extend(pids.into_iter().map(|p| (p, group.clone()))),
                // A group removed meanwhile.
                Err(ResctrlError::Read { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut lines: HashMap<String, RdtAllocation> = HashMap::new();
        let mut out = BTreeMap::new();
        for (task_id, tids) in threads {
            let Some(group) = tids.first().and_then(|t| group_of.get(t)) else {
                continue;
            };
            if !lines.contains_key(group) {
                let text = read(&self.root.join(group).join(SCHEMATA))?;
                let line = |r| {
                    schemata::find_line(&text, r)
                        .and_then(|l| schemata::parse(r, l).ok())
                        .map(|v| schemata::format(r, &v))
                };
                lines.insert(
                    group.clone(),
                    RdtAllocation {
                        name: Some(group.clone()),
                        l3: line(Resource::L3),
                        mb: line(Resource::Mb),
                    },
                );
            }
            out.insert(task_id.clone(), lines[group].clone());
        }
        Ok(out)
    }

    /// Puts the task's threads in its control group (creating it), writes the schemata
    /// lines given, and moves its monitoring group along when it has one.
    pub fn apply(
        &mut self,
        task_id: &str,
        allocation: &RdtAllocation,
        threads: &[u32],
    ) -> Result<(), ResctrlError> {
        let group = allocation.group(task_id);
        let dir = self.root.join(&group);
        if !group.is_empty() {
            // Checked by `validate` already; an apply without it must not take over
            // someone else's group either.
            if !self.may_use(&group) {
                return Err(ResctrlError::ForeignControlGroup { path: dir });
            }
            match fs::create_dir(&dir) {
                Ok(()) => {
                    info!(task_id, group, "created a resctrl control group");
                    self.created.insert(group.clone());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    return Err(ResctrlError::NoClosids {
                        path: dir,
                        detail: kernel_status(&self.root),
                    });
                }
                Err(source) => {
                    return Err(ResctrlError::CreateControlGroup {
                        path: dir,
                        source,
                        detail: kernel_status(&self.root),
                    });
                }
            }
            self.used.insert(group.clone());
        }
        let lines: Vec<&str> = [&allocation.l3, &allocation.mb]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !lines.is_empty() {
            self.write_schemata(&dir, &lines)?;
        }
        move_threads(&self.root, &dir, threads)
    }

    /// Writes the group's whole schemata at once, `lines` replacing those of their
    /// resources: the kernel parses a write line by line and keeps resources not written,
    /// and a resctrl-shaped test tree (a plain file) then holds what the kernel would
    /// show. No `create` (see `move_threads`).
    fn write_schemata(&self, dir: &Path, lines: &[&str]) -> Result<(), ResctrlError> {
        use io::Write as _;
        let path = dir.join(SCHEMATA);
        let resource = |l: &str| l.split(':').next().unwrap_or("").trim().to_owned();
        let new: BTreeMap<String, &str> = lines.iter().map(|l| (resource(l), *l)).collect();
        let old = read(&path)?;
        let mut text = String::new();
        for line in old.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !new.contains_key(&resource(line)) {
                text.push_str(line);
                text.push('\n');
            }
        }
        for line in new.values() {
            text.push_str(line);
            text.push('\n');
        }
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| ResctrlError::WriteSchemata {
                path,
                line: lines.join("; "),
                source,
                detail: kernel_status(&self.root),
            })
    }

    /// Removes the agent's control groups that no longer hold any thread.
    pub fn remove_empty_groups(&mut self) -> Vec<ResctrlError> {
        let mut errors = Vec::new();
        let mut removed = Vec::new();
        for group in &self.used {
            let dir = self.root.join(group);
            match read_pids(&dir.join(TASKS)) {
                Ok(pids) if pids.is_empty() => match remove_group(&dir) {
                    Ok(()) => {
                        info!(group, "removed an empty resctrl control group");
                        removed.push(group.clone());
                    }
                    Err(e) => errors.push(e),
                },
                Ok(_) => {}
                // Gone already (or, on a test tree, left without its files).
                Err(ResctrlError::Read { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    match remove_group(&dir) {
                        Ok(()) => removed.push(group.clone()),
                        Err(e) => errors.push(e),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        for group in removed {
            self.used.remove(&group);
            self.created.remove(&group);
        }
        errors
    }

    /// Control groups at the root (directories other than `info`, `mon_groups`,
    /// `mon_data`).
    fn groups(&self) -> Result<Vec<String>, ResctrlError> {
        let entries = fs::read_dir(&self.root).map_err(|source| ResctrlError::Read {
            path: self.root.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && ![INFO, MON_GROUPS, MON_DATA].contains(&name.as_str())
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A control group name that resctrl takes and that names no kernel directory.
fn check_group_name(name: &str) -> Result<(), String> {
    if name.contains('/')
        || name.contains('\n')
        || [".", "..", INFO, MON_GROUPS, MON_DATA].contains(&name)
    {
        return Err(format!("{name:?} cannot be a resctrl control group name"));
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, ResctrlError> {
    fs::read_to_string(path).map_err(|source| ResctrlError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_number(path: &Path, radix: u32) -> Result<u64, ResctrlError> {
    let text = read(path)?;
    u64::from_str_radix(text.trim(), radix).map_err(|_| ResctrlError::Parse {
        path: path.to_owned(),
        value: text.trim().to_owned(),
    })
}

//! What the cpu and cpuset controllers enforce on a cgroup: read back and changed, on v1
//! (`cpu.cfs_quota_us`, `cpu.cfs_period_us`, `cpu.shares`, `cpu.idle`, `cpuset.cpus`) and
//! on v2 (`cpu.max`, `cpu.weight`, `cpu.idle`, `cpuset.cpus`). Values are the kernel's units; normalizing
//! them is the allocators' business.

use std::{
    collections::BTreeSet,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use super::{
    CgroupError, Hierarchy,
    cpu_list::{format_cpu_list, parse_cpu_list},
    read::{Cgroup, parse as number},
};

/// The kernel's bounds of `cpu.shares` (v1) and `cpu.weight` (v2).
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const MIN_WEIGHT: u64 = 1;
const MAX_WEIGHT: u64 = 10_000;

/// The cpu controller's limits of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimits {
    /// CPU time allowed per period in µs; `None` = no limit.
    pub quota_us: Option<u64>,
    /// The period in µs.
    pub period_us: u64,
    /// Relative weight in v1 `cpu.shares` units (v2 `cpu.weight` converted).
    pub shares: u64,
}

/// v1 shares → v2 weight, as systemd and runc convert them.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    (MIN_WEIGHT + (shares - MIN_SHARES) * 9_999 / (MAX_SHARES - MIN_SHARES))
        .clamp(MIN_WEIGHT, MAX_WEIGHT)
}

/// v2 weight → v1 shares, the inverse of [`shares_to_weight`] up to rounding.
pub fn weight_to_shares(weight: u64) -> u64 {
    let weight = weight.clamp(MIN_WEIGHT, MAX_WEIGHT);
    MIN_SHARES + ((weight - MIN_WEIGHT) * (MAX_SHARES - MIN_SHARES)).div_ceil(9_999)
}

impl Cgroup<'_> {
    /// Quota, period and shares; `None` when the cgroup has no directory in the hierarchy
    /// holding the cpu controller (not created there, or gone).
    pub fn cpu_limits(&self) -> Result<Option<CpuLimits>, CgroupError> {
        let Some((hierarchy, dir)) = self.dir("cpu") else {
            return Ok(None);
        };
        if hierarchy == Hierarchy::V2 {
            let (Some(max), Some(weight)) =
                (read(&dir.join("cpu.max"))?, read(&dir.join("cpu.weight"))?)
            else {
                return Ok(None);
            };
            let path = dir.join("cpu.max");
            let mut parts = max.split_whitespace();
            let (quota, period) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let quota_us = match quota {
                "max" => None,
                q => Some(number(&path, q)?),
            };
            return Ok(Some(CpuLimits {
                quota_us,
                period_us: number(&path, period)?,
                shares: weight_to_shares(number(&dir.join("cpu.weight"), &weight)?),
            }));
        }
        let files = ["cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"].map(|f| dir.join(f));
        let (Some(quota), Some(period), Some(shares)) =
            (read(&files[0])?, read(&files[1])?, read(&files[2])?)
        else {
            return Ok(None);
        };
        let quota: i64 = quota
            .trim()
            .parse()
            .map_err(|_| parse_error(&files[0], &quota))?;
        Ok(Some(CpuLimits {
            quota_us: u64::try_from(quota).ok(),
            period_us: number(&files[1], &period)?,
            shares: number(&files[2], &shares)?,
        }))
    }

    /// Sets the period and the quota (`None` = no limit), the period first so that the
    /// quota is never checked against a stale period.
    pub fn set_cpu_quota(&self, quota_us: Option<u64>, period_us: u64) -> Result<(), CgroupError> {
        match self.cpu_dir()? {
            (Hierarchy::V2, dir) => {
                let quota = quota_us.map_or_else(|| "max".to_owned(), |q| q.to_string());
                write(&dir.join("cpu.max"), &format!("{quota} {period_us}"))
            }
            (Hierarchy::V1 { .. }, dir) => {
                write(&dir.join("cpu.cfs_period_us"), &period_us.to_string())?;
                let quota = quota_us.map_or(-1, |q| i64::try_from(q).unwrap_or(i64::MAX));
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())
            }
        }
    }

    /// Sets `cpu.shares` (v2: the equivalent `cpu.weight`).
    pub fn set_cpu_shares(&self, shares: u64) -> Result<(), CgroupError> {
        match self.cpu_dir()? {
            (Hierarchy::V2, dir) => write(
                &dir.join("cpu.weight"),
                &shares_to_weight(shares).to_string(),
            ),
            (Hierarchy::V1 { .. }, dir) => write(&dir.join("cpu.shares"), &shares.to_string()),
        }
    }

    /// Whether the cgroup is `SCHED_IDLE` towards its siblings (`cpu.idle`, Linux 5.15+,
    /// v1 and v2); `None` when the file is absent (older kernel, or no cpu directory).
    pub fn cpu_idle(&self) -> Result<Option<bool>, CgroupError> {
        let Some((_, dir)) = self.dir("cpu") else {
            return Ok(None);
        };
        let path = dir.join("cpu.idle");
        let Some(text) = read(&path)? else {
            return Ok(None);
        };
        match text.trim() {
            "0" => Ok(Some(false)),
            "1" => Ok(Some(true)),
            _ => Err(parse_error(&path, &text)),
        }
    }

    /// Sets `cpu.idle`. The kernel gives an idle group the least weight and refuses
    /// `cpu.shares` writes while it is idle; clearing it sets the shares back to 1024.
    pub fn set_cpu_idle(&self, idle: bool) -> Result<(), CgroupError> {
        let (_, dir) = self.cpu_dir()?;
        write(&dir.join("cpu.idle"), if idle { "1" } else { "0" })
    }

    /// The CPUs the cgroup may run on; `None` without a cpuset directory. An empty v2
    /// `cpuset.cpus` means "the parent's", so the effective set is given instead.
    pub fn cpuset_cpus(&self) -> Result<Option<BTreeSet<u32>>, CgroupError> {
        let Some((hierarchy, dir)) = self.dir("cpuset") else {
            return Ok(None);
        };
        let mut path = dir.join("cpuset.cpus");
        let Some(mut text) = read(&path)? else {
            return Ok(None);
        };
        if hierarchy == Hierarchy::V2 && text.trim().is_empty() {
            path = dir.join("cpuset.cpus.effective");
            text = read(&path)?.unwrap_or_default();
        }
        parse_cpu_list(&text)
            .map(Some)
            .map_err(|_| parse_error(&path, &text))
    }

    /// Sets `cpuset.cpus`, and before it `cpuset.mems` only where it must change: to
    /// `online_mems` when it names a node no longer online, or when it is empty on v1 (a
    /// v1 cpuset with empty mems cannot hold processes; an empty v2 one uses its
    /// parent's). Otherwise the memory nodes Mesos or an operator chose are kept.
    pub fn set_cpuset(
        &self,
        cpus: &BTreeSet<u32>,
        online_mems: &BTreeSet<u32>,
    ) -> Result<(), CgroupError> {
        let (hierarchy, dir) = self.dir("cpuset").ok_or(CgroupError::NotMounted {
            hierarchy: Hierarchy::v1("cpuset"),
        })?;
        let mems = dir.join("cpuset.mems");
        // Absent: the cgroup is gone, which the cpus write reports.
        if let Some(text) = read(&mems)? {
            let keep = match parse_cpu_list(&text) {
                Ok(current) if current.is_empty() => hierarchy == Hierarchy::V2,
                Ok(current) => current.is_subset(online_mems),
                Err(_) => false,
            };
            if !keep {
                write(&mems, &format_cpu_list(online_mems))?;
            }
        }
        write(&dir.join("cpuset.cpus"), &format_cpu_list(cpus))
    }

    fn cpu_dir(&self) -> Result<(Hierarchy, PathBuf), CgroupError> {
        self.dir("cpu").ok_or(CgroupError::NotMounted {
            hierarchy: Hierarchy::v1("cpu"),
        })
    }
}

/// A file's text; `None` when it (or its cgroup) does not exist.
fn read(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) => {
            Ok(None)
        }
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// One write(2) of the whole value, as cgroupfs wants.
fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        source,
    })
}

fn parse_error(path: &Path, text: &str) -> CgroupError {
    CgroupError::Parse {
        path: path.to_owned(),
        content: text.chars().take(80).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Mounts, read::tests::tree};
    use super::*;

    #[test]
    fn reads_and_writes_v1_files() {
        let d = tree(&[
            ("cpu/mesos/a/cpu.cfs_quota_us", "-1\n"),
            ("cpu/mesos/a/cpu.cfs_period_us", "100000\n"),
            ("cpu/mesos/a/cpu.shares", "1024\n"),
            ("cpuset/mesos/a/cpuset.cpus", "0-1\n"),
            ("cpuset/mesos/a/cpuset.mems", "0\n"),
        ]);
        let root = d.path().display();
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {root}/cpu rw - cgroup cgroup rw,cpu\n2 1 0:2 / {root}/cpuset rw - cgroup cgroup rw,cpuset\n"
        ));
        let cg = Cgroup::new(&m, "/mesos/a");
        let want = CpuLimits {
            quota_us: None,
            period_us: 100_000,
            shares: 1024,
        };
        assert_eq!(cg.cpu_limits().unwrap(), Some(want));
        cg.set_cpu_quota(Some(50_000), 1000).unwrap();
        cg.set_cpu_shares(500).unwrap();
        let got = cg.cpu_limits().unwrap().unwrap();
        assert_eq!(
            (got.quota_us, got.period_us, got.shares),
            (Some(50_000), 1000, 500)
        );
        cg.set_cpu_quota(None, 1000).unwrap();
        let quota = std::fs::read_to_string(d.path().join("cpu/mesos/a/cpu.cfs_quota_us"));
        assert_eq!(quota.unwrap(), "-1");

        assert_eq!(cg.cpu_idle().unwrap(), None, "no cpu.idle: an older kernel");
        std::fs::write(d.path().join("cpu/mesos/a/cpu.idle"), "0\n").unwrap();
        assert_eq!(cg.cpu_idle().unwrap(), Some(false));
        cg.set_cpu_idle(true).unwrap();
        assert_eq!(cg.cpu_idle().unwrap(), Some(true));
        std::fs::write(d.path().join("cpu/mesos/a/cpu.idle"), "2\n").unwrap();
        assert!(cg.cpu_idle().unwrap_err().to_string().contains("cpu.idle"));

        assert_eq!(cg.cpuset_cpus().unwrap(), Some(BTreeSet::from([0, 1])));
        let mems = d.path().join("cpuset/mesos/a/cpuset.mems");
        let mems_now = || std::fs::read_to_string(&mems).unwrap();
        // Mems on online nodes are kept (node 1 only, of two online).
        std::fs::write(&mems, "1\n").unwrap();
        cg.set_cpuset(&BTreeSet::from([1]), &BTreeSet::from([0, 1]))
            .unwrap();
        assert_eq!(cg.cpuset_cpus().unwrap(), Some(BTreeSet::from([1])));
        assert_eq!(mems_now(), "1\n");
        // Empty, or naming a node gone offline: every online node.
        for before in ["\n", "0-2\n"] {
            std::fs::write(&mems, before).unwrap();
            cg.set_cpuset(&BTreeSet::from([0]), &BTreeSet::from([0, 1]))
                .unwrap();
            assert_eq!(mems_now(), "0-1", "{before:?}");
        }
        assert_eq!(cg.cpuset_cpus().unwrap(), Some(BTreeSet::from([0])));

        let gone = Cgroup::new(&m, "/mesos/gone");
        assert_eq!(gone.cpu_limits().unwrap(), None);
        assert_eq!(gone.cpuset_cpus().unwrap(), None);
        let err = gone.set_cpu_shares(2).unwrap_err().to_string();
        assert!(err.contains("mesos/gone/cpu.shares"), "{err}");
    }

    #[test]
    fn reads_and_writes_v2_files() {
        let d = tree(&[
            ("cg/t/cpu.max", "max 100000\n"),
            ("cg/t/cpu.weight", "100\n"),
            ("cg/t/cpuset.cpus", "\n"),
            ("cg/t/cpuset.cpus.effective", "0-3\n"),
            ("cg/t/cpuset.mems", "\n"),
        ]);
        let m = Mounts::parse(&format!(
            "1 1 0:1 / {}/cg rw - cgroup2 cgroup2 rw\n",
            d.path().display()
        ));
        let cg = Cgroup::new(&m, "/t");
        let got = cg.cpu_limits().unwrap().unwrap();
        assert_eq!((got.quota_us, got.period_us), (None, 100_000));
        assert_eq!(shares_to_weight(got.shares), 100);
        cg.set_cpu_quota(Some(25_000), 100_000).unwrap();
        cg.set_cpu_shares(1024).unwrap();
        let max = std::fs::read_to_string(d.path().join("cg/t/cpu.max")).unwrap();
        assert_eq!(max, "25000 100000");
        let weight = std::fs::read_to_string(d.path().join("cg/t/cpu.weight")).unwrap();
        assert_eq!(weight, "39");
        assert_eq!(
            cg.cpuset_cpus().unwrap(),
            Some(BTreeSet::from([0, 1, 2, 3]))
        );
        // An empty v2 cpuset.mems means the parent's: left so.
        cg.set_cpuset(&BTreeSet::from([1]), &BTreeSet::from([0]))
            .unwrap();
        let mems = std::fs::read_to_string(d.path().join("cg/t/cpuset.mems")).unwrap();
        assert_eq!(mems, "\n");
    }

    #[test]
    fn weight_conversion_round_trips_closely() {
        for shares in [2, 100, 1024, 5000, 262_144] {
            let back = weight_to_shares(shares_to_weight(shares));
            assert!(back.abs_diff(shares) <= 27, "{shares} -> {back}");
        }
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}

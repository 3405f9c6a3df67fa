//! The kernel's CPU list format (`0-3,6`), used by `cpuset.cpus`, `cpuset.mems` and
//! `/sys/devices/system/{cpu,node}/online`.

use std::{collections::BTreeSet, path::Path};

use thiserror::Error;

/// Largest CPU number accepted: far above any machine, low enough that `0-4000000000`
/// cannot make the agent build a set of billions.
pub const MAX_CPU: u32 = 65_535;

/// Why a CPU list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{list:?} is not a CPU list like '0-3,6': {reason}")]
pub struct CpuListError {
    /// The text as given.
    pub list: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses `0-3,6` into {0, 1, 2, 3, 6}; blanks around items are ignored and an empty text
/// is the empty set (an unset `cpuset.cpus`).
pub fn parse_cpu_list(list: &str) -> Result<BTreeSet<u32>, CpuListError> {
    let err = |reason: String| CpuListError {
        list: list.to_owned(),
        reason,
    };
    let number = |s: &str| -> Result<u32, CpuListError> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| err(format!("{s:?} is not a CPU number")))?;
        if n > MAX_CPU {
            return Err(err(format!("CPU {n} is above {MAX_CPU}")));
        }
        Ok(n)
    };
    let mut out = BTreeSet::new();
    for item in list.trim().split(',').filter(|i| !i.trim().is_empty()) {
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(err(format!("range {first}-{last} runs backwards")));
                }
                out.extend(first..=last);
            }
            None => {
                out.insert(number(item)?);
            }
        }
    }
    Ok(out)
}

/// Formats a set in the kernel's shortest form: {0, 1, 2, 3, 6} → `0-3,6`.
pub fn format_cpu_list(cpus: &BTreeSet<u32>) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        items.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    items.join(",")
}

/// The CPU (or node) list in a sysfs file such as `/sys/devices/system/cpu/online`.
pub fn read_cpu_list(path: &Path) -> Result<BTreeSet<u32>, super::CgroupError> {
    let text = std::fs::read_to_string(path).map_err(|source| super::CgroupError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_cpu_list(&text).map_err(|e| super::CgroupError::Parse {
        path: path.to_owned(),
        content: e.list,
    })
}

/// CPUs the kernel has online now.
pub fn online_cpus() -> Result<BTreeSet<u32>, super::CgroupError> {
    read_cpu_list(Path::new("/sys/devices/system/cpu/online"))
}

/// Memory nodes online now; `{0}` where the kernel has no NUMA support (no such file).
pub fn online_mems() -> Result<BTreeSet<u32>, super::CgroupError> {
    let path = Path::new("/sys/devices/system/node/online");
    if !path.exists() {
        return Ok(BTreeSet::from([0]));
    }
    read_cpu_list(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let set = parse_cpu_list("0-3,6\n").unwrap();
        assert_eq!(set, BTreeSet::from([0, 1, 2, 3, 6]));
        assert_eq!(format_cpu_list(&set), "0-3,6");
        assert_eq!(
            format_cpu_list(&parse_cpu_list("5, 1,2,3").unwrap()),
            "1-3,5"
        );
        assert_eq!(format_cpu_list(&parse_cpu_list("7-7").unwrap()), "7");
        assert!(parse_cpu_list("").unwrap().is_empty());
        assert!(parse_cpu_list("\n").unwrap().is_empty());
        assert_eq!(format_cpu_list(&BTreeSet::new()), "");
    }

    #[test]
    fn rejects_what_the_kernel_would() {
        for bad in ["3-1", "a", "1-", "0-99999999", "1,,x"] {
            let e = parse_cpu_list(bad).unwrap_err();
            assert_eq!(e.list, bad);
            assert!(e.to_string().contains("CPU list"), "{e}");
        }
    }

    #[test]
    fn reads_this_machine() {
        let online = online_cpus().unwrap();
        assert!(online.contains(&0), "{online:?}");
        assert!(online_mems().unwrap().contains(&0));
    }
}

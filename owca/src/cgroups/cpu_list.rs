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

/// Longest CPU list accepted, in bytes: the kernel's own lists are far shorter (every
/// other CPU of 8192 takes about 20 KiB), and a plug-in's `0-65535,0-65535,...` is
/// refused before it is read.
pub const MAX_LIST_BYTES: usize = 64 << 10;

/// Parses `0-3,6` into {0, 1, 2, 3, 6}; blanks around items are ignored and an empty text
/// is the empty set (an unset `cpuset.cpus`). CPUs above [`MAX_CPU`] are refused.
pub fn parse_cpu_list(list: &str) -> Result<BTreeSet<u32>, CpuListError> {
    parse_cpu_list_within(list, MAX_CPU)
}

/// [`parse_cpu_list`] refusing CPUs above `max_cpu` (e.g. the highest CPU online), so
/// that the set built is never larger than the machine. Ranges are merged before the set
/// is built: repeating a range costs no more than writing it once.
pub fn parse_cpu_list_within(list: &str, max_cpu: u32) -> Result<BTreeSet<u32>, CpuListError> {
    let err = |reason: String| CpuListError {
        // The whole text of a list refused for its length would be the problem again.
        list: match list.char_indices().nth(64) {
            Some((at, _)) => format!("{}...", &list[..at]),
            None => list.to_owned(),
        },
        reason,
    };
    if list.len() > MAX_LIST_BYTES {
        return Err(err(format!(
            "{} bytes long, more than {MAX_LIST_BYTES}",
            list.len()
        )));
    }
    let max_cpu = max_cpu.min(MAX_CPU);
    let number = |s: &str| -> Result<u32, CpuListError> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| err(format!("{s:?} is not a CPU number")))?;
        if n > max_cpu {
            return Err(err(format!("CPU {n} is above {max_cpu}")));
        }
        Ok(n)
    };
    let mut ranges = Vec::new();
    for item in list.trim().split(',').filter(|i| !i.trim().is_empty()) {
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(err(format!("range {first}-{last} runs backwards")));
                }
                ranges.push((first, last));
            }
            None => {
                let n = number(item)?;
                ranges.push((n, n));
            }
        }
    }
    ranges.sort_unstable();
    let mut out = BTreeSet::new();
    // The next CPU not yet in `out`: each CPU is inserted once whatever the overlaps.
    let mut next = 0u32;
    for (first, last) in ranges {
        let first = first.max(next);
        if first <= last {
            out.extend(first..=last);
            next = last.saturating_add(1);
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

/// The highest CPU number the machine can ever bring online (hot-plug included).
pub fn highest_possible_cpu() -> Result<u32, super::CgroupError> {
    let path = Path::new("/sys/devices/system/cpu/possible");
    Ok(read_cpu_list(path)?.last().copied().unwrap_or(0))
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
    fn overlong_lists_and_cpus_beyond_the_machine_are_refused_cheaply() {
        // 8 MiB of the widest range: refused on its length, before any parsing.
        let huge = "0-65535,".repeat(1 << 20);
        let start = std::time::Instant::now();
        let e = parse_cpu_list(&huge).unwrap_err();
        assert!(e.reason.contains("more than 65536"), "{e}");
        assert!(e.list.len() < 100, "{}", e.list);
        // Just under the length cap: overlapping ranges are merged, not re-inserted.
        let many = "0-65535,".repeat(MAX_LIST_BYTES / 8);
        assert_eq!(parse_cpu_list(&many).unwrap().len(), 65536);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // Against the machine: nothing above the highest CPU is built.
        let e = parse_cpu_list_within("0-65535", 3).unwrap_err();
        assert!(e.reason.contains("CPU 65535 is above 3"), "{e}");
        assert_eq!(
            parse_cpu_list_within("2-3,0-1,1", 3).unwrap(),
            BTreeSet::from([0, 1, 2, 3])
        );
    }

    #[test]
    fn reads_this_machine() {
        let online = online_cpus().unwrap();
        assert!(online.contains(&0), "{online:?}");
        assert!(highest_possible_cpu().unwrap() >= *online.last().unwrap());
        assert!(online_mems().unwrap().contains(&0));
    }
}

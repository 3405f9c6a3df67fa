//! Schemata lines as allocators write them and as the kernel prints them:
//! `L3:<domain>=<hex mask>;...` and `MB:<domain>=<percent>;...`.

use std::collections::BTreeMap;

/// The resource a schemata line sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// L3 cache ways, hexadecimal capacity bitmasks.
    L3,
    /// Memory bandwidth, decimal (percent, or MBps with the mba_MBps mount option).
    Mb,
}

impl Resource {
    fn prefix(self) -> &'static str {
        match self {
            Self::L3 => "L3",
            Self::Mb => "MB",
        }
    }
}

/// Value per domain id of a `resource` line; an error says what is wrong with it.
pub fn parse(resource: Resource, line: &str) -> Result<BTreeMap<u32, u64>, String> {
    let prefix = resource.prefix();
    let body = line
        .trim()
        .strip_prefix(prefix)
        .and_then(|rest| rest.trim_start().strip_prefix(':'))
        .ok_or_else(|| format!("{line:?} does not start with {prefix}:"))?;
    let mut out = BTreeMap::new();
    for item in body.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (domain, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{line:?}: {item:?} is not <domain>=<value>"))?;
        let domain: u32 = domain
            .trim()
            .parse()
            .map_err(|_| format!("{line:?}: domain {domain:?} is not a number"))?;
        let value = value.trim();
        let value = match resource {
            Resource::L3 => u64::from_str_radix(value, 16),
            Resource::Mb => value.parse(),
        }
        .map_err(|_| format!("{line:?}: {value:?} is not a valid {prefix} value"))?;
        if out.insert(domain, value).is_some() {
            return Err(format!("{line:?}: domain {domain} given twice"));
        }
    }
    if out.is_empty() {
        return Err(format!("{line:?} sets no domain"));
    }
    Ok(out)
}

/// The line for `values`, as the agent writes and compares it (`L3:0=f;1=ff`).
pub fn format(resource: Resource, values: &BTreeMap<u32, u64>) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|(d, v)| match resource {
            Resource::L3 => format!("{d}={v:x}"),
            Resource::Mb => format!("{d}={v}"),
        })
        .collect();
    format!("{}:{}", resource.prefix(), items.join(";"))
}

/// The `resource` line of a group's `schemata` file, if it has one.
pub fn find_line(schemata: &str, resource: Resource) -> Option<&str> {
    schemata.lines().map(str::trim).find(|l| {
        l.strip_prefix(resource.prefix())
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })
}

/// Why an L3 mask is refused, or `None` when the hardware takes it: non-zero, one run
/// of set bits, inside `cbm_mask`, at least `min_bits` bits.
pub fn check_mask(mask: u64, cbm_mask: u64, min_bits: u32) -> Option<String> {
    if mask == 0 {
        return Some("mask 0 gives no cache way".into());
    }
    if mask & !cbm_mask != 0 {
        return Some(format!(
            "mask {mask:#x} is wider than info/L3/cbm_mask {cbm_mask:#x}"
        ));
    }
    let shifted = mask >> mask.trailing_zeros();
    // Contiguous ones plus one is a power of two; all 64 bits set wrap to 0, also right.
    if shifted & shifted.wrapping_add(1) != 0 {
        return Some(format!("mask {mask:#x} is not contiguous"));
    }
    if mask.count_ones() < min_bits {
        return Some(format!(
            "mask {mask:#x} has fewer than info/L3/min_cbm_bits = {min_bits} bits"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_lines_the_way_the_kernel_and_allocators_write_them() {
        let l3 = parse(Resource::L3, "L3:0=00f;1=0FF").unwrap();
        assert_eq!(l3, BTreeMap::from([(0, 0xf), (1, 0xff)]));
        assert_eq!(format(Resource::L3, &l3), "L3:0=f;1=ff");
        let mb = parse(Resource::Mb, " MB:1=100; 0=50 ").unwrap();
        assert_eq!(format(Resource::Mb, &mb), "MB:0=50;1=100");
        for bad in ["MB:0=50", "L3:", "L3:0", "L3:x=f", "L3:0=g", "L3:0=f;0=f"] {
            assert!(parse(Resource::L3, bad).is_err(), "{bad}");
        }
        let schemata = "    L3:0=fffff;1=fffff\n    MB:0=100;1=100\n";
        assert_eq!(find_line(schemata, Resource::Mb), Some("MB:0=100;1=100"));
        assert_eq!(find_line("L3CODE:0=f\n", Resource::L3), None);
    }

    /// Found by the schemata fuzz target: a full 64-bit mask overflowed (a panic in debug
    /// builds).
    #[test]
    fn a_full_64_bit_mask_is_contiguous() {
        assert_eq!(check_mask(u64::MAX, u64::MAX, 64), None);
        assert_eq!(check_mask(u64::MAX << 4, u64::MAX, 1), None);
        assert!(check_mask(u64::MAX, u64::MAX >> 1, 1).is_some());
    }

    #[test]
    fn checks_masks_as_the_hardware_would() {
        assert_eq!(check_mask(0xf0, 0xfff, 1), None);
        assert!(check_mask(0, 0xfff, 1).unwrap().contains("no cache way"));
        assert!(
            check_mask(0x505, 0xfff, 1)
                .unwrap()
                .contains("not contiguous")
        );
        assert!(check_mask(0x1f000, 0xfff, 1).unwrap().contains("wider"));
        assert!(check_mask(0x1, 0xfff, 2).unwrap().contains("min_cbm_bits"));
    }
}

//! `!AllocationConfiguration`: how normalized allocations become kernel values.

use serde::Deserialize;

/// The kernel's smallest CFS quota in µs (1 ms); smaller quotas are raised to it, as OWCA did.
pub const MIN_QUOTA_US: u64 = 1000;
/// The kernel's smallest `cpu.shares`.
pub const MIN_SHARES: u64 = 2;
/// The kernel's largest `cpu.shares`.
pub const MAX_SHARES: u64 = 262_144;

/// OWCA's `AllocationConfiguration`, with its defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationConfiguration {
    /// `cpu.cfs_period_us` written with every quota, 1000 to 1000000 µs. OWCA's default,
    /// 1 ms, makes every quota below one CPU's worth the kernel minimum of 1 ms, i.e. one
    /// whole CPU: set e.g. 100000 for finer quotas.
    #[serde(default = "default_cpu_quota_period")]
    pub cpu_quota_period: u64,
    /// Shares per unit of `cpu_shares` (`cpu_shares: 2.0` → 2000 shares), 1000 to 1000000.
    #[serde(default = "default_cpu_shares_unit")]
    pub cpu_shares_unit: u64,
    /// Schemata `L3:` line of the root resctrl group set at start; unset = all ways.
    #[serde(default)]
    pub default_rdt_l3: Option<String>,
    /// Schemata `MB:` line of the root resctrl group set at start; unset = no limit.
    #[serde(default)]
    pub default_rdt_mb: Option<String>,
}

/// 1000 µs, OWCA's default.
pub fn default_cpu_quota_period() -> u64 {
    1000
}

/// 1000 shares, OWCA's default.
pub fn default_cpu_shares_unit() -> u64 {
    1000
}

impl Default for AllocationConfiguration {
    fn default() -> Self {
        Self {
            cpu_quota_period: default_cpu_quota_period(),
            cpu_shares_unit: default_cpu_shares_unit(),
            default_rdt_l3: None,
            default_rdt_mb: None,
        }
    }
}

impl AllocationConfiguration {
    /// Checks OWCA's ranges; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        for (field, v) in [
            ("cpu_quota_period", self.cpu_quota_period),
            ("cpu_shares_unit", self.cpu_shares_unit),
        ] {
            if !(1000..=1_000_000).contains(&v) {
                return Err(format!(
                    "allocation_configuration.{field}: {v} is out of range [1000, 1000000]"
                ));
            }
        }
        Ok(())
    }

    /// The quota in µs per period for a normalized quota on `cpus` CPUs; `None` (no
    /// limit) from 1.0 up.
    pub fn quota_us(&self, quota: f64, cpus: usize) -> Option<u64> {
        if quota >= 1.0 {
            return None;
        }
        let us = quota * self.cpu_quota_period as f64 * cpus as f64;
        Some((us as u64).max(MIN_QUOTA_US))
    }

    /// The normalized quota of a kernel quota and period; 1.0 without a limit.
    pub fn normalized_quota(quota_us: Option<u64>, period_us: u64, cpus: usize) -> f64 {
        match quota_us {
            None => 1.0,
            Some(q) => q as f64 / period_us.max(1) as f64 / cpus.max(1) as f64,
        }
    }

    /// What a normalized quota reads back as once written: differs from `quota` where
    /// the kernel minimum raised it, so comparing with it avoids rewriting every iteration.
    pub fn quota_as_written(&self, quota: f64, cpus: usize) -> f64 {
        Self::normalized_quota(self.quota_us(quota, cpus), self.cpu_quota_period, cpus)
    }

    /// `cpu.shares` for normalized shares, at least the kernel minimum.
    pub fn shares(&self, shares: f64) -> u64 {
        ((shares * self.cpu_shares_unit as f64) as u64).clamp(MIN_SHARES, MAX_SHARES)
    }

    /// Normalized shares of a `cpu.shares` value.
    pub fn normalized_shares(&self, shares: u64) -> f64 {
        shares as f64 / self.cpu_shares_unit as f64
    }

    /// The largest normalized shares the kernel accepts.
    pub fn max_cpu_shares(&self) -> f64 {
        self.normalized_shares(MAX_SHARES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_normalization_as_owca() {
        let c = AllocationConfiguration {
            cpu_quota_period: 100_000,
            ..Default::default()
        };
        assert_eq!(c.quota_us(0.25, 2), Some(50_000));
        assert_eq!(c.quota_us(1.0, 2), None);
        assert_eq!(c.quota_us(0.0, 2), Some(MIN_QUOTA_US));
        assert_eq!(
            AllocationConfiguration::normalized_quota(Some(50_000), 100_000, 2),
            0.25
        );
        assert_eq!(
            AllocationConfiguration::normalized_quota(None, 100_000, 2),
            1.0
        );
        // OWCA's default period: a quarter of two CPUs is below the kernel minimum.
        let d = AllocationConfiguration::default();
        assert_eq!(d.quota_us(0.25, 2), Some(MIN_QUOTA_US));
        assert_eq!(d.quota_as_written(0.25, 2), 0.5);
    }

    #[test]
    fn shares_normalization_as_owca() {
        let c = AllocationConfiguration::default();
        assert_eq!(c.shares(0.5), 500);
        assert_eq!(c.shares(0.0), MIN_SHARES);
        assert_eq!(c.normalized_shares(1024), 1.024);
        assert_eq!(c.max_cpu_shares(), 262.144);
    }

    #[test]
    fn ranges_are_checked() {
        let bad = AllocationConfiguration {
            cpu_quota_period: 10,
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().contains("cpu_quota_period: 10"));
        assert!(AllocationConfiguration::default().check().is_ok());
    }
}

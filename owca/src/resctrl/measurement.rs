//! A task's monitoring readings: `mbm_total_bytes` and `llc_occupancy` of its group,
//! summed over the L3 domains of `mon_data/`.

use std::{fs, io, path::Path};

use super::{L3_DOMAIN_PREFIX, LLC, MBM_TOTAL, NO_VALUE, ResctrlError};

/// One task's resctrl readings, each summed over all L3 domains. `None` when any domain
/// lacks the file (the feature is absent) or has no value: a partial sum would make the
/// `memory_bandwidth` counter look reset and understate `llc_occupancy`, so no sample is
/// better than a wrong one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResctrlMeasurement {
    pub memory_bandwidth_bytes: Option<u64>,
    pub llc_occupancy_bytes: Option<u64>,
}

/// Sums both readings over the `mon_L3_*` directories of a group's `mon_data`; a
/// missing `mon_data` gives two `None`s.
pub fn measure_mon_data(mon_data: &Path) -> Result<ResctrlMeasurement, ResctrlError> {
    let entries = match fs::read_dir(mon_data) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ResctrlMeasurement::default()),
        Err(source) => {
            return Err(ResctrlError::Read {
                path: mon_data.to_owned(),
                source,
            });
        }
    };
    let mut bandwidth = Sum::NoDomain;
    let mut occupancy = Sum::NoDomain;
    for entry in entries {
        let entry = entry.map_err(|source| ResctrlError::Read {
            path: mon_data.to_owned(),
            source,
        })?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(L3_DOMAIN_PREFIX)
        {
            continue;
        }
        let domain = entry.path();
        bandwidth.add(read_value(&domain.join(MBM_TOTAL))?);
        occupancy.add(read_value(&domain.join(LLC))?);
    }
    Ok(ResctrlMeasurement {
        memory_bandwidth_bytes: bandwidth.total(),
        llc_occupancy_bytes: occupancy.total(),
    })
}

/// A sum over domains that is void as soon as one domain has no value.
#[derive(Debug, Clone, Copy)]
enum Sum {
    NoDomain,
    Total(u64),
    Missing,
}

impl Sum {
    fn add(&mut self, value: Option<u64>) {
        *self = match (*self, value) {
            (Self::Missing, _) | (_, None) => Self::Missing,
            (Self::NoDomain, Some(v)) => Self::Total(v),
            (Self::Total(t), Some(v)) => Self::Total(t.saturating_add(v)),
        };
    }

    fn total(self) -> Option<u64> {
        match self {
            Self::Total(t) => Some(t),
            Self::NoDomain | Self::Missing => None,
        }
    }
}

/// A monitoring file's number; `None` when the file is absent or says [`NO_VALUE`].
fn read_value(path: &Path) -> Result<Option<u64>, ResctrlError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ResctrlError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let value = text.trim();
    if NO_VALUE.contains(&value) {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| ResctrlError::Parse {
        path: path.to_owned(),
        value: value.to_owned(),
    })
}

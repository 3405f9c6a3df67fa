//! A small reader of the kernel's BTF: just enough to find struct member offsets and enum
//! values, which aya-obj does not expose.

use std::path::Path;

use thiserror::Error;

/// Failures reading or querying BTF.
#[derive(Debug, Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("reading BTF from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The data is not BTF or is truncated.
    #[error("parsing BTF: {0}")]
    Malformed(&'static str),
    /// A type or member the collector needs is missing from this kernel.
    #[error("kernel BTF has no {0}")]
    Missing(String),
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

struct Type {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    /// Size, or referenced type id, depending on the kind.
    size_or_type: u32,
    /// Offset of the kind-specific data following the header, within `types`.
    data: usize,
    vlen: usize,
}

/// Parsed BTF: type headers by id and the string section.
pub struct Btf {
    bytes: Vec<u8>,
    strings_start: usize,
    strings_len: usize,
    types: Vec<Type>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    /// Reads the running kernel's BTF.
    #[cfg(test)]
    pub(crate) fn from_kernel() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    /// Reads BTF from a file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parses raw BTF (little-endian, as on the hosts OWCA runs on).
    pub fn parse(bytes: Vec<u8>) -> Result<Self, BtfError> {
        let magic = bytes
            .get(0..2)
            .ok_or(BtfError::Malformed("truncated header"))?;
        if magic != [0x9f, 0xeb] {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(&bytes, 4)? as usize;
        let type_off = u32_at(&bytes, 8)? as usize;
        let type_len = u32_at(&bytes, 12)? as usize;
        let str_off = u32_at(&bytes, 16)? as usize;
        let str_len = u32_at(&bytes, 20)? as usize;
        let types_start = hdr_len + type_off;
        let strings_start = hdr_len + str_off;
        if types_start + type_len > bytes.len() || strings_start + str_len > bytes.len() {
            return Err(BtfError::Malformed("sections out of bounds"));
        }
        let mut btf = Self {
            types: Vec::new(),
            strings_start,
            strings_len: str_len,
            bytes,
        };
        let mut pos = types_start;
        let end = types_start + type_len;
        while pos < end {
            let name_off = u32_at(&btf.bytes, pos)?;
            let info = u32_at(&btf.bytes, pos + 4)?;
            let size_or_type = u32_at(&btf.bytes, pos + 8)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let data = pos + 12;
            let extra = match kind {
                KIND_INT | 14 | 17 => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | 15 | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | 13 => 8 * vlen,
                _ => 0,
            };
            btf.types.push(Type {
                name_off,
                kind,
                kind_flag: info >> 31 == 1,
                size_or_type,
                data,
                vlen,
            });
            pos = data + extra;
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> Result<&str, BtfError> {
        let start = self.strings_start + off as usize;
        let strings = &self.bytes[start..self.strings_start + self.strings_len];
        let len = strings
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::Malformed("unterminated string"))?;
        std::str::from_utf8(&strings[..len]).map_err(|_| BtfError::Malformed("non-UTF-8 name"))
    }

    /// The first type of `kind` named `name`. A scan rather than an index by name: the
    /// agent asks for a handful of names once, and an index of every kernel type name
    /// would cost megabytes of memory at the agent's peak.
    fn find(&self, name: &str, kind: u32) -> Result<Option<u32>, BtfError> {
        for (i, t) in self.types.iter().enumerate() {
            if t.kind == kind && t.name_off != 0 && self.name(t.name_off)? == name {
                return Ok(Some(i as u32 + 1));
            }
        }
        Ok(None)
    }

    /// The type id of typedef `name`, e.g. `btf_trace_sched_switch`, the type a `tp_btf`
    /// program is loaded against.
    pub fn typedef_id(&self, name: &str) -> Result<u32, BtfError> {
        self.find(name, KIND_TYPEDEF)?
            .ok_or_else(|| BtfError::Missing(format!("typedef {name}")))
    }

    fn get(&self, id: u32) -> Result<&Type, BtfError> {
        id.checked_sub(1)
            .and_then(|i| self.types.get(i as usize))
            .ok_or(BtfError::Malformed("type id out of range"))
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn skip_aliases(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::Malformed("type alias chain too long"))
    }

    /// Byte offset of a member of a struct or union, looking into anonymous members; returns
    /// the offset and the member's type id.
    fn member(&self, id: u32, member: &str) -> Result<Option<(u32, u32)>, BtfError> {
        let t = self.get(self.skip_aliases(id)?)?;
        if t.kind != KIND_STRUCT && t.kind != KIND_UNION {
            return Ok(None);
        }
        for i in 0..t.vlen {
            let at = t.data + 12 * i;
            let name_off = u32_at(&self.bytes, at)?;
            let ty = u32_at(&self.bytes, at + 4)?;
            let raw = u32_at(&self.bytes, at + 8)?;
            let bits = if t.kind_flag { raw & 0xff_ffff } else { raw };
            if name_off == 0 {
                if let Some((inner, inner_ty)) = self.member(ty, member)? {
                    return Ok(Some((bits / 8 + inner, inner_ty)));
                }
            } else if self.name(name_off)? == member {
                return Ok(Some((bits / 8, ty)));
            }
        }
        Ok(None)
    }

    /// Byte offset of `path` (members separated by dots, e.g. `sched_info.run_delay`)
    /// within `struct name`.
    pub fn offset_of(&self, name: &str, path: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::Missing(format!("struct {name} member {path}"));
        let mut id = self
            .find(name, KIND_STRUCT)?
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))?;
        let mut total = 0;
        for part in path.split('.') {
            let (off, ty) = self.member(id, part)?.ok_or_else(missing)?;
            total += off;
            id = ty;
        }
        Ok(total)
    }

    /// Size in bytes of the element type of array member `path` of `struct name`.
    pub fn array_elem_size(&self, name: &str, path: &str) -> Result<u32, BtfError> {
        let id = self
            .find(name, KIND_STRUCT)?
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))?;
        let (_, ty) = self
            .member(id, path)?
            .ok_or_else(|| BtfError::Missing(format!("struct {name} member {path}")))?;
        let arr = self.get(self.skip_aliases(ty)?)?;
        if arr.kind != KIND_ARRAY {
            return Err(BtfError::Missing(format!("array {name}.{path}")));
        }
        let elem = self.get(self.skip_aliases(u32_at(&self.bytes, arr.data)?)?)?;
        // Pointers have no size field; every other element kind here carries one.
        Ok(if elem.kind == 2 { 8 } else { elem.size_or_type })
    }

    /// Value of `variant` in `enum name`.
    pub fn enum_value(&self, name: &str, variant: &str) -> Result<i64, BtfError> {
        let id = self
            .find(name, KIND_ENUM)?
            .ok_or_else(|| BtfError::Missing(format!("enum {name}")))?;
        let t = self.get(id)?;
        for i in 0..t.vlen {
            let at = t.data + 8 * i;
            if self.name(u32_at(&self.bytes, at)?)? == variant {
                return Ok(i64::from(u32_at(&self.bytes, at + 4)? as i32));
            }
        }
        Err(BtfError::Missing(format!("enum {name} value {variant}")))
    }

    /// Whether the type section was read up to a known kind for every type.
    #[cfg(test)]
    fn type_count(&self) -> usize {
        self.types.len()
    }
}

const KIND_PTR: u32 = 2;

/// The smallest BTF in which typedef `name` has type id `id`: `id - 1` pointers to void,
/// then the typedef. aya finds a `tp_btf` program's attach type by name in the BTF it is
/// given and loads with that type's id, so this stands in for the kernel's BTF there
/// without aya parsing all of it (tens of megabytes at the agent's peak).
pub fn with_typedef_at(name: &str, id: u32) -> Vec<u8> {
    const HDR_LEN: u32 = 24;
    let word = |v: u32| v.to_le_bytes();
    let mut types = Vec::with_capacity(12 * id as usize);
    for _ in 1..id {
        types.extend(word(0));
        types.extend(word(KIND_PTR << 24));
        types.extend(word(0));
    }
    types.extend(word(1));
    types.extend(word(KIND_TYPEDEF << 24));
    types.extend(word(1));
    let mut strings = vec![0];
    strings.extend(name.as_bytes());
    strings.push(0);
    let mut out = Vec::with_capacity(HDR_LEN as usize + types.len() + strings.len());
    out.extend([0x9f, 0xeb, 1, 0]); // magic, version 1, no flags
    out.extend(word(HDR_LEN));
    out.extend(word(0)); // type_off
    out.extend(word(types.len() as u32));
    out.extend(word(types.len() as u32)); // str_off
    out.extend(word(strings.len() as u32));
    out.extend(types);
    out.extend(strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offsets_of_the_running_kernel() {
        let btf = Btf::from_kernel().expect("this test needs /sys/kernel/btf/vmlinux");
        assert!(btf.type_count() > 10_000);
        // kernfs_node.__parent sits right after two atomic_t (8 bytes) on every 6.x kernel.
        let parent = btf
            .offset_of("kernfs_node", "__parent")
            .or_else(|_| btf.offset_of("kernfs_node", "parent"))
            .unwrap();
        assert_eq!(parent, 8);
        assert_eq!(btf.offset_of("css_set", "subsys").unwrap(), 0);
        assert_eq!(btf.array_elem_size("css_set", "subsys").unwrap(), 8);
        let run_delay = btf
            .offset_of("task_struct", "sched_info.run_delay")
            .unwrap();
        let sched_info = btf.offset_of("task_struct", "sched_info").unwrap();
        assert!(run_delay > sched_info && run_delay < sched_info + 64);
        let cpuacct = btf
            .enum_value("cgroup_subsys_id", "cpuacct_cgrp_id")
            .unwrap();
        let cpu = btf.enum_value("cgroup_subsys_id", "cpu_cgrp_id").unwrap();
        assert!(cpuacct >= 0 && cpu >= 0 && cpuacct != cpu);
        assert!(matches!(
            btf.offset_of("task_struct", "no_such_member"),
            Err(BtfError::Missing(m)) if m.contains("no_such_member")
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            Btf::parse(vec![1, 2, 3]),
            Err(BtfError::Malformed(_))
        ));
        assert!(matches!(
            Btf::parse(vec![0x9f, 0xeb, 1, 0]),
            Err(BtfError::Malformed(_))
        ));
    }

    #[test]
    fn the_stand_in_btf_gives_aya_the_kernels_id_of_the_tracepoint_type() {
        let name = "btf_trace_sched_switch";
        let id = Btf::from_kernel().unwrap().typedef_id(name).unwrap();
        let kernel = aya::Btf::from_sys_fs().unwrap();
        let kind = aya_obj::btf::BtfKind::Typedef;
        assert_eq!(kernel.id_by_type_name_kind(name, kind).unwrap(), id);
        let stand_in =
            aya::Btf::parse(&with_typedef_at(name, id), aya::Endianness::default()).unwrap();
        assert_eq!(stand_in.id_by_type_name_kind(name, kind).unwrap(), id);
    }
}

//! How a task id becomes the name of its monitoring group directory.

/// Prefix of every monitoring group OWCA creates; groups without it are never touched.
pub const GROUP_PREFIX: &str = "owca-";

/// Longest directory name the kernel accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Marks a name whose escaped task id was too long and was cut; never produced by escaping.
const TRUNCATED: char = '+';

/// Length of the hash appended to a cut name (16 hex digits of a 64-bit hash).
const HASH_LEN: usize = 16;

/// The monitoring group name of a task: [`GROUP_PREFIX`] followed by the task id with
/// every byte outside `[A-Za-z0-9._-]` escaped as `%XX` (upper-case hex of the UTF-8
/// byte; `%` itself becomes `%25`), e.g. `marathon/app.1` → `owca-marathon%2Fapp.1`.
///
/// The escaping is injective, so distinct ids get distinct names. A name longer than
/// `NAME_MAX` (255 bytes) keeps the start of the escaped id, cut between escapes, followed
/// by `+` and the 64-bit FNV-1a hash of the whole id in hex; `+` never comes out of the
/// escaping, so cut names cannot equal uncut ones, and two cut names collide only when
/// their prefixes and hashes both do (the caller still checks). The mapping depends on
/// nothing but the id, so an agent that restarts finds its groups under the same names.
pub fn group_name(task_id: &str) -> String {
    let mut name = String::with_capacity(GROUP_PREFIX.len() + task_id.len());
    name.push_str(GROUP_PREFIX);
    for b in task_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    if name.len() <= NAME_MAX {
        return name;
    }
    let mut cut = NAME_MAX - 1 - HASH_LEN;
    // Never split a `%XX` escape (the name is ASCII, so any cut is a char boundary).
    if let Some(i) = name[cut.saturating_sub(2)..cut].find('%') {
        cut = cut - 2 + i;
    }
    name.truncate(cut);
    name.push(TRUNCATED);
    name.push_str(&format!("{:016x}", fnv1a64(task_id.as_bytes())));
    name
}

/// FNV-1a, 64 bits: stable across Rust releases, unlike `DefaultHasher`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_keep_their_spelling() {
        assert_eq!(group_name("web.1f3e-42_a"), "owca-web.1f3e-42_a");
    }

    #[test]
    fn other_bytes_are_escaped_injectively() {
        assert_eq!(group_name("a/b"), "owca-a%2Fb");
        assert_eq!(group_name("a%2Fb"), "owca-a%252Fb");
        assert_eq!(group_name(".."), "owca-..");
        assert_eq!(group_name("a b\n"), "owca-a%20b%0A");
        assert_eq!(group_name("é"), "owca-%C3%A9");
        assert_ne!(group_name("a/b"), group_name("a%2Fb"));
    }

    #[test]
    fn long_ids_are_cut_with_a_hash() {
        let long = "x".repeat(300);
        let name = group_name(&long);
        assert_eq!(name.len(), NAME_MAX);
        assert!(name.starts_with("owca-xxx"));
        assert_eq!(name.as_bytes()[NAME_MAX - 1 - HASH_LEN], b'+');
        // Same id, same name; a different tail, a different name.
        assert_eq!(group_name(&long), name);
        assert_ne!(group_name(&format!("{long}y")), name);
        // Escapes are never split.
        let slashes = "/".repeat(100);
        let name = group_name(&slashes);
        assert!(name.len() <= NAME_MAX);
        let (kept, _) = name.split_once('+').unwrap();
        assert_eq!((kept.len() - GROUP_PREFIX.len()) % 3, 0, "{kept}");
        assert!(
            kept[GROUP_PREFIX.len()..]
                .chars()
                .collect::<Vec<_>>()
                .chunks(3)
                .all(|c| c == ['%', '2', 'F'])
        );
    }

    #[test]
    fn fnv_is_the_reference_function() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

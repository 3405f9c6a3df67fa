//! `get_state.get_tasks.launched_tasks` read straight from an answer's text, one task at a
//! time: the agent never holds a whole answer as a JSON tree, which at thousands of tasks
//! took several times the answer's own size and was most of the agent's peak memory.
//!
//! The result is the one [`super::parse::launched_tasks`] gives for the same text parsed
//! as a [`Value`]: the same shape problems, `null` taken as absent, and a key given twice
//! read as its last value (the tasks seen so far are then dropped, see [`Event::Restart`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What the reader hands on, in the answer's order.
pub(super) enum Event<'a> {
    /// The next launched task.
    Task(&'a Value),
    /// A key on the way to `launched_tasks` appeared again: forget the tasks so far.
    Restart,
}

/// Reads `text`, calling `on` for each launched task. `Err`: not JSON; `Ok(Err)`: JSON of
/// the wrong shape, saying what is wrong, as [`super::parse::launched_tasks`] does.
pub(super) fn launched_tasks(
    text: &str,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Result<(), String>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let seen = Level { depth: 0, on }.deserialize(&mut de)?;
    de.end()?;
    Ok(match seen {
        // The answer itself: not an object has no get_state either.
        Seen::Absent | Seen::Other => Err("has no get_state".into()),
        Seen::Object(problem) => problem,
    })
}

/// Keys from the answer down to the list, and the problems of each level's value.
const KEYS: [&str; 3] = ["get_state", "get_tasks", "launched_tasks"];
/// (missing or null, present but of the wrong type) at each level below the answer.
const PROBLEMS: [(Option<&str>, &str); 3] = [
    (
        Some("has no get_state"),
        "has get_state that is not an object",
    ),
    (None, "has get_state.get_tasks that is not an object"),
    (
        None,
        "has get_state.get_tasks.launched_tasks that is not a list",
    ),
];

/// What a value was: null, another type than wanted, or the wanted one with the result
/// of reading it.
enum Seen {
    Absent,
    Other,
    Object(Result<(), String>),
}

/// One level: the answer (0), get_state (1), get_tasks (2), or the list (3).
struct Level<'a> {
    depth: usize,
    on: &'a mut dyn FnMut(Event<'_>),
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = Seen;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Seen, D::Error> {
        d.deserialize_any(self)
    }
}

impl Level<'_> {
    /// The result of reading this level's value `seen`, for the level above.
    fn judge(depth: usize, seen: Option<Seen>) -> Result<(), String> {
        let (absent, other) = PROBLEMS[depth];
        match seen {
            None | Some(Seen::Absent) => absent.map_or(Ok(()), |p| Err(p.to_owned())),
            Some(Seen::Other) => Err(other.to_owned()),
            Some(Seen::Object(result)) => result,
        }
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = Seen;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seen, A::Error> {
        if self.depth == KEYS.len() {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Seen::Other);
        }
        let mut child = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != KEYS[self.depth] {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if child.is_some() {
                (self.on)(Event::Restart);
            }
            child = Some(map.next_value_seed(Level {
                depth: self.depth + 1,
                on: &mut *self.on,
            })?);
        }
        Ok(Seen::Object(Self::judge(self.depth, child)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seen, A::Error> {
        if self.depth != KEYS.len() {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Seen::Other);
        }
        while let Some(task) = seq.next_element::<Value>()? {
            (self.on)(Event::Task(&task));
        }
        Ok(Seen::Object(Ok(())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Seen, E> {
        Ok(Seen::Absent)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Seen, E> {
        Ok(Seen::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Seen, E> {
        Ok(Seen::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Seen, E> {
        Ok(Seen::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Seen, E> {
        Ok(Seen::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Seen, E> {
        Ok(Seen::Other)
    }
}

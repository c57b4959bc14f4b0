//! [`Scratch`]: the env's map for what states keep between steps, and
//! [`ScratchKey`], a key that carries its value's type.
//!
//! Values are JSON, so the env stays serializable whatever states keep in
//! it; a typed key makes the reader and the writer agree on the type.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A scratch key with the type of its value, so what is written and what
/// is read agree.
///
/// ```
/// use statewise::{Env, ScratchKey};
///
/// const ATTEMPTS: ScratchKey<u32> = ScratchKey::new("attempts");
/// let mut env = Env::new();
/// env.scratch.set(&ATTEMPTS, &3)?;
/// assert_eq!(env.scratch.get(&ATTEMPTS)?, Some(3));
/// // Keys made at run time, e.g. from a state's name:
/// let rounds = ScratchKey::<u32>::named(format!("{}.rounds", "reasoning"));
/// assert_eq!(rounds.name(), "reasoning.rounds");
/// # Ok::<(), statewise::ScratchError>(())
/// ```
pub struct ScratchKey<T> {
    name: Cow<'static, str>,
    value: PhantomData<fn() -> T>,
}

impl<T> ScratchKey<T> {
    /// A key named `name`.
    pub const fn new(name: &'static str) -> Self {
        ScratchKey {
            name: Cow::Borrowed(name),
            value: PhantomData,
        }
    }

    /// A key whose name is made at run time.
    pub fn named(name: impl Into<String>) -> Self {
        ScratchKey {
            name: Cow::Owned(name.into()),
            value: PhantomData,
        }
    }

    /// The key's name in the map.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T> Clone for ScratchKey<T> {
    fn clone(&self) -> Self {
        ScratchKey {
            name: self.name.clone(),
            value: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for ScratchKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ScratchKey({:?}: {})",
            self.name,
            std::any::type_name::<T>()
        )
    }
}

impl<T> AsRef<str> for ScratchKey<T> {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// What [`Scratch::get`] and [`Scratch::set`] take as a key: a
/// [`ScratchKey<T>`] for values of type `T`, or a plain name for any type.
pub trait ScratchName<T: ?Sized> {
    /// The key's name in the map.
    fn name(&self) -> &str;
}

impl<T> ScratchName<T> for ScratchKey<T> {
    fn name(&self) -> &str {
        &self.name
    }
}

impl<T: ?Sized> ScratchName<T> for str {
    fn name(&self) -> &str {
        self
    }
}

impl<T: ?Sized> ScratchName<T> for String {
    fn name(&self) -> &str {
        self
    }
}

/// A value in the scratch map could not be converted to or from the type asked for.
#[derive(Debug, thiserror::Error)]
#[error("scratch key `{key}`: {source}")]
pub struct ScratchError {
    /// The key that was read or written.
    pub key: String,
    /// What serde said.
    #[source]
    pub source: serde_json::Error,
}

/// A string-keyed map for custom states, with typed access through serde.
///
/// ```
/// let mut env = statewise::Env::new();
/// env.scratch.set("attempts", &3u32)?;
/// assert_eq!(env.scratch.get::<u32>("attempts")?, Some(3));
/// assert_eq!(env.scratch.get::<u32>("missing")?, None);
/// # Ok::<(), statewise::ScratchError>(())
/// ```
///
/// Entries are kept sorted by key in a vector: a run holds a handful, and a
/// tree's first node would cost a kilobyte per run (and again per snapshot).
/// It serializes as a JSON object, keys in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scratch(Vec<(String, Value)>);

impl Scratch {
    /// Reads `key` as a `T`; `Ok(None)` when the key is absent. The key is
    /// a [`ScratchKey<T>`] (the type comes with it) or a plain name.
    pub fn get<T: DeserializeOwned>(
        &self,
        key: &(impl ScratchName<T> + ?Sized),
    ) -> Result<Option<T>, ScratchError> {
        let key = key.name();
        self.raw(key)
            .map(T::deserialize)
            .transpose()
            .map_err(|source| ScratchError {
                key: key.to_owned(),
                source,
            })
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn set<T: Serialize + ?Sized>(
        &mut self,
        key: &(impl ScratchName<T> + ?Sized),
        value: &T,
    ) -> Result<(), ScratchError> {
        let key = key.name();
        let v = serde_json::to_value(value).map_err(|source| ScratchError {
            key: key.to_owned(),
            source,
        })?;
        match self.find(key) {
            Ok(at) => self.0[at].1 = v,
            Err(at) => self.0.insert(at, (key.to_owned(), v)),
        }
        Ok(())
    }

    /// Removes `key`, returning its raw value.
    pub fn remove(&mut self, key: impl AsRef<str>) -> Option<Value> {
        self.find(key.as_ref()).ok().map(|at| self.0.remove(at).1)
    }

    /// The raw JSON value under `key`.
    pub fn raw(&self, key: impl AsRef<str>) -> Option<&Value> {
        self.find(key.as_ref()).ok().map(|at| &self.0[at].1)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: impl AsRef<str>) -> bool {
        self.find(key.as_ref()).is_ok()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
}

impl Serialize for Scratch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Scratch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a tree, which sorts the keys (and keeps the last of a
        // repeated one, as a map does).
        let map = BTreeMap::<String, Value>::deserialize(deserializer)?;
        Ok(Scratch(map.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_plain_keys_name_the_same_entry() {
        const COUNT: ScratchKey<u32> = ScratchKey::new("count");
        let mut scratch = Scratch::default();
        scratch.set(&COUNT, &2).unwrap();
        assert_eq!(scratch.get::<u32>("count").unwrap(), Some(2));
        assert!(scratch.contains(&COUNT) && scratch.contains("count"));
        // A value of another type is a typed error naming the key.
        scratch.set("count", "two").unwrap();
        let err = scratch.get(&COUNT).unwrap_err();
        assert_eq!(err.key, "count");
        assert_eq!(scratch.remove(&COUNT), Some(Value::from("two")));
        assert_eq!(scratch.get(&COUNT).unwrap(), None);
        let named = ScratchKey::<bool>::named(String::from("a.b"));
        assert_eq!(format!("{named:?}"), "ScratchKey(\"a.b\": bool)");
    }
}

//! A key or value as the store keeps it: short ones inline in the hash map's slot, long ones
//! shared. Inline bytes cost no allocation and no pointer to chase: a put of a short key that
//! is present touches the map's control bytes and one slot, where a heap key and value added
//! a cache miss each for the key compare and the old value's free (a third of a node's CPU
//! under `cohort bench` went to those misses).

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// The longest run kept inline: what fits beside the length byte and the enum's tag in the
/// size of the shared variant (40 bytes in all).
pub(crate) const INLINE_BYTES_MAX: usize = 38;

#[derive(Clone)]
pub(crate) enum Blob {
    Inline {
        len: u8,
        bytes: [u8; INLINE_BYTES_MAX],
    },
    Shared(Bytes),
}

impl Blob {
    /// A copy of `bytes`: it never pins the buffer they came in (a whole received entry).
    pub(crate) fn copy_of(bytes: &[u8]) -> Blob {
        if bytes.len() <= INLINE_BYTES_MAX {
            let mut inline = [0u8; INLINE_BYTES_MAX];
            inline[..bytes.len()].copy_from_slice(bytes);
            Blob::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Blob::Shared(Bytes::copy_from_slice(bytes))
        }
    }

    /// The bytes as a `Bytes` for a reply: a copy of inline bytes, a shared handle otherwise.
    pub(crate) fn to_bytes(&self) -> Bytes {
        match self {
            Blob::Inline { .. } => Bytes::copy_from_slice(self),
            Blob::Shared(bytes) => bytes.clone(),
        }
    }
}

impl Deref for Blob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Blob::Inline { len, bytes } => &bytes[..*len as usize],
            Blob::Shared(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for Blob {
    fn borrow(&self) -> &[u8] {
        self
    }
}

/// Hashes exactly as `[u8]` does, as `Borrow<[u8]>` requires for lookups by slice.
impl Hash for Blob {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        **self == **other
    }
}

impl Eq for Blob {}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Bytes::copy_from_slice(self), f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn short_runs_are_inline_long_ones_shared_and_both_look_up_by_slice() {
        assert_eq!(std::mem::size_of::<Blob>(), 40);
        let short = vec![7u8; INLINE_BYTES_MAX];
        let long = vec![9u8; INLINE_BYTES_MAX + 1];
        assert!(matches!(Blob::copy_of(&short), Blob::Inline { .. }));
        assert!(matches!(Blob::copy_of(&long), Blob::Shared(_)));
        let mut map = HashMap::new();
        for (i, key) in [&b""[..], b"k", &short, &long].into_iter().enumerate() {
            map.insert(Blob::copy_of(key), i);
            assert_eq!(&*Blob::copy_of(key), key);
            assert_eq!(&Blob::copy_of(key).to_bytes()[..], key);
        }
        assert_eq!(map.get(&b""[..]), Some(&0));
        assert_eq!(map.get(&b"k"[..]), Some(&1));
        assert_eq!(map.get(&short[..]), Some(&2));
        assert_eq!(map.get(&long[..]), Some(&3));
        assert_eq!(map.get(&b"x"[..]), None);
        assert_ne!(Blob::copy_of(b"a"), Blob::copy_of(b"a\0"));
    }
}

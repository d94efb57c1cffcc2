//! A key or value as the store keeps it: short ones inline in the table's slot, long ones in
//! one shared allocation. Inline bytes cost no allocation and no pointer to chase: a put
//! of a short key that is present touches one slot (one cache line, see `table.rs`), where a
//! heap key and value added a cache miss each for the key compare and the old value's free.
//!
//! A key and a value share a 64-byte slot: a key keeps up to 38 bytes inline (a UUID in text
//! fits), a value up to 22 (counters, ids, small records); longer ones are an `Arc<[u8]>`:
//! one allocation, one pointer to follow, and a reply shares it instead of copying it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

/// Longest key kept inline: with its length byte and the tag, 40 bytes.
pub(crate) const KEY_INLINE_BYTES_MAX: usize = 38;
/// Longest value kept inline: with its length byte and the tag, 24 bytes.
pub(crate) const VALUE_INLINE_BYTES_MAX: usize = 22;

pub(crate) type Key = Blob<KEY_INLINE_BYTES_MAX>;
pub(crate) type Value = Blob<VALUE_INLINE_BYTES_MAX>;

/// Up to `N` bytes inline; longer runs shared, at 16 bytes of the slot (a `Bytes` would
/// take 32). `Arc`, not `Rc`: a snapshot's pairs are encoded on another thread.
#[derive(Clone)]
pub(crate) enum Blob<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Shared(Arc<[u8]>),
}

impl<const N: usize> Blob<N> {
    /// A copy of `bytes`: it never pins the buffer they came in (a whole received entry).
    pub(crate) fn copy_of(bytes: &[u8]) -> Blob<N> {
        const { assert!(N <= u8::MAX as usize, "the inline length is a byte") };
        if bytes.len() <= N {
            let mut inline = [0u8; N];
            inline[..bytes.len()].copy_from_slice(bytes);
            Blob::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Blob::Shared(Arc::from(bytes))
        }
    }

    /// The bytes as a `Bytes` for a reply: a copy of inline bytes, a shared handle otherwise.
    pub(crate) fn to_bytes(&self) -> Bytes {
        match self {
            Blob::Inline { .. } => Bytes::copy_from_slice(self),
            Blob::Shared(bytes) => Bytes::from_owner(Arc::clone(bytes)),
        }
    }
}

impl<const N: usize> Default for Blob<N> {
    fn default() -> Blob<N> {
        Blob::Inline {
            len: 0,
            bytes: [0; N],
        }
    }
}

impl<const N: usize> Deref for Blob<N> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Blob::Inline { len, bytes } => &bytes[..*len as usize],
            Blob::Shared(bytes) => bytes,
        }
    }
}

impl<const N: usize> PartialEq for Blob<N> {
    fn eq(&self, other: &Blob<N>) -> bool {
        **self == **other
    }
}

impl<const N: usize> Eq for Blob<N> {}

impl<const N: usize> fmt::Debug for Blob<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Bytes::copy_from_slice(self), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_runs_are_inline_long_ones_shared_and_both_read_back() {
        assert_eq!(std::mem::size_of::<Key>(), 40);
        assert_eq!(std::mem::size_of::<Value>(), 24);
        for n in [0, 1, 21, 22, 23, 38, 39, 1000] {
            let run: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let (key, value) = (Key::copy_of(&run), Value::copy_of(&run));
            assert_eq!(
                matches!(key, Blob::Inline { .. }),
                n <= KEY_INLINE_BYTES_MAX
            );
            assert_eq!(
                matches!(value, Blob::Inline { .. }),
                n <= VALUE_INLINE_BYTES_MAX
            );
            assert_eq!((&key[..], &value[..]), (&run[..], &run[..]));
            assert_eq!(
                (&key.to_bytes()[..], &value.to_bytes()[..]),
                (&run[..], &run[..])
            );
        }
        assert_ne!(Key::copy_of(b"a"), Key::copy_of(b"a\0"));
        assert_eq!(&Value::default()[..], b"");
    }
}

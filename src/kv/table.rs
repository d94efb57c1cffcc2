//! The store's hash table: each key with its value in one 64-byte slot (one cache line),
//! found by linear probing over a byte of tag per slot.
//!
//! Why not `HashMap<Key, Value>`: its 80-byte pairs straddle two cache lines, and a lookup's slot
//! is known only after its probe, so a batch cannot ask for its slots ahead. Here the tags (a byte
//! per slot) say which slot a key is in: [`Table::prefetch`] asks for a batch's lines of tags, then
//! for the slots they point to, without waiting for either, and the apply loop that follows finds
//! its slots in cache. Applying an entry of many puts to a table larger than the CPU's caches
//! waited on one miss after another; `cohort bench` spent a third of a node's CPU there.
//!
//! Layout: `tags[i]` is `EMPTY` or `0x80 | the top 7 bits of the key's hash`; `slots[i]` holds
//! the pair when the tag is set and a default (empty inline) pair otherwise. A key lives at
//! its home (`hash & mask`) or after it, with no empty slot between (linear probing); removal
//! shifts the run behind it back, so there are no tombstones.

use std::fmt;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use smallvec::SmallVec;

use super::blob::{Key, Value};

/// The table doubles before more than 3/4 of its slots are taken: probes stay short (about
/// 2.5 tags for a present key, 8.5 for an absent one), and tags are a byte each.
const LOAD_NUMERATOR: usize = 3;
const LOAD_DENOMINATOR: usize = 4;
const SLOTS_MIN: usize = 16;
/// The table halves (or less) once fewer than 1/8 of its slots are taken, to the fewest that
/// hold its keys within the load above: a group that deleted most of its keys gives their
/// memory back, and a table just resized is 3/8 to 3/4 full, far from both thresholds. Like
/// a growth, a shrink moves every pair at once, on the loop (a table of millions of keys
/// takes a noticeable part of a second).
const SHRINK_DENOMINATOR: usize = 8;
const EMPTY: u8 = 0;

/// A key and its value: exactly one cache line.
#[derive(Clone, Default)]
#[repr(C, align(64))]
struct Slot {
    key: Key,
    value: Value,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

#[derive(Clone, Default)]
pub(crate) struct Table {
    tags: Vec<u8>,
    /// As many as `tags`: zero or a power of two.
    slots: Vec<Slot>,
    len: usize,
    /// The bytes of the keys and values held.
    bytes: usize,
    hasher: RandomState,
}

/// The fewest slots, a power of two and at least [`SLOTS_MIN`], that hold `keys` within the
/// load.
fn slots_for(keys: usize) -> usize {
    let mut slots = SLOTS_MIN;
    while keys * LOAD_DENOMINATOR > slots * LOAD_NUMERATOR {
        slots *= 2;
    }
    slots
}

fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

impl Table {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the pairs weigh: their keys' and values' bytes, and a slot (64 bytes) each.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes + self.len * std::mem::size_of::<Slot>()
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Where `key` is (`Ok`), or the empty slot where it would go (`Err`). The table must
    /// have slots (it always has an empty one then).
    fn find(&self, hash: u64, key: &[u8]) -> Result<usize, usize> {
        let (mask, tag) = (self.mask(), tag_of(hash));
        let mut at = hash as usize & mask;
        loop {
            match self.tags[at] {
                EMPTY => return Err(at),
                found if found == tag && *self.slots[at].key == *key => return Ok(at),
                _ => at = (at + 1) & mask,
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&Value> {
        if self.slots.is_empty() {
            return None;
        }
        let at = self.find(self.hash(key), key).ok()?;
        Some(&self.slots[at].value)
    }

    /// Asks the CPU for the slots of many keys, without waiting: lookups of them soon after
    /// find them in cache. Two passes, so no miss is waited for: the first asks for the line
    /// of tags at each key's home, the second reads those tags (in cache by then) and asks
    /// for the slot the key is likely in (the first whose tag matches).
    pub(crate) fn prefetch<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) {
        if self.slots.is_empty() {
            return;
        }
        let hashes: SmallVec<[u64; 64]> = keys.map(|key| self.hash(key)).collect();
        let mask = self.mask();
        for &hash in &hashes {
            prefetch_line(&self.tags[hash as usize & mask]);
        }
        for &hash in &hashes {
            let (mut at, tag) = (hash as usize & mask, tag_of(hash));
            loop {
                match self.tags[at] {
                    EMPTY => break,
                    found if found == tag => {
                        prefetch_line(&self.slots[at]);
                        break;
                    }
                    _ => at = (at + 1) & mask,
                }
            }
        }
    }

    /// Sets `key` to `value`, copying the key in if it is new.
    pub(crate) fn insert(&mut self, key: &[u8], value: Value) {
        let hash = self.hash(key);
        let found = match self.slots.is_empty() {
            true => Err(0),
            false => self.find(hash, key),
        };
        match found {
            Ok(at) => {
                self.bytes = self.bytes - self.slots[at].value.len() + value.len();
                self.slots[at].value = value;
            }
            Err(mut at) => {
                self.bytes += key.len() + value.len();
                // Only a new key may grow the table (an overwrite at full load does not).
                if (self.len + 1) * LOAD_DENOMINATOR > self.slots.len() * LOAD_NUMERATOR {
                    self.reserve(1);
                    at = self.find(hash, key).expect_err("the key is new");
                }
                self.tags[at] = tag_of(hash);
                self.slots[at] = Slot {
                    key: Key::copy_of(key),
                    value,
                };
                self.len += 1;
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Value> {
        if self.slots.is_empty() {
            return None;
        }
        let mut hole = self.find(self.hash(key), key).ok()?;
        let Slot {
            key: gone,
            value: removed,
        } = std::mem::take(&mut self.slots[hole]);
        self.len -= 1;
        self.bytes -= gone.len() + removed.len();
        // Shift back every pair of the run behind the hole that may sit there (its home is
        // not between the hole and where it is), so no probe meets an empty slot early.
        let mask = self.mask();
        let mut at = (hole + 1) & mask;
        while self.tags[at] != EMPTY {
            let home = self.hash(&self.slots[at].key) as usize & mask;
            if at.wrapping_sub(home) & mask >= at.wrapping_sub(hole) & mask {
                self.tags[hole] = self.tags[at];
                self.slots[hole] = std::mem::take(&mut self.slots[at]);
                hole = at;
            }
            at = (at + 1) & mask;
        }
        self.tags[hole] = EMPTY;
        if self.slots.len() > SLOTS_MIN && self.len * SHRINK_DENOMINATOR < self.slots.len() {
            self.resize(slots_for(self.len));
        }
        Some(removed)
    }

    /// Makes room for `additional` more keys without growing meanwhile.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let wanted = self.len + additional;
        if wanted * LOAD_DENOMINATOR <= self.slots.len() * LOAD_NUMERATOR {
            return;
        }
        self.resize(slots_for(wanted));
    }

    /// Moves every pair into a table of `slots` slots (a power of two that holds them).
    fn resize(&mut self, slots: usize) {
        let old_tags = std::mem::replace(&mut self.tags, vec![EMPTY; slots]);
        let old_slots = std::mem::take(&mut self.slots);
        self.slots.resize_with(slots, Slot::default);
        for (tag, slot) in old_tags.into_iter().zip(old_slots) {
            if tag != EMPTY {
                let hash = self.hash(&slot.key);
                let at = self.find(hash, &slot.key).expect_err("keys are distinct");
                self.tags[at] = tag;
                self.slots[at] = slot;
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.tags
            .iter()
            .zip(&self.slots)
            .filter(|(tag, _)| **tag != EMPTY)
            .map(|(_, slot)| (&slot.key, &slot.value))
    }
}

/// A hint to the CPU to load `item`'s cache line; never waits, never faults.
#[allow(unsafe_code)]
fn prefetch_line<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault; the pointer comes
    // from a reference. SSE, which `_mm_prefetch` needs, is part of every x86_64 CPU.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        self.len == other.len
            && self
                .iter()
                .all(|(key, value)| other.get(key) == Some(value))
    }
}

impl Eq for Table {}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Step {
        Insert(u16, u8),
        Remove(u16),
        Reserve(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        // Few distinct keys, so inserts overwrite and removes hit; lengths cross the inline
        // limits of keys and values.
        prop_oneof![
            4 => (0..300u16, any::<u8>()).prop_map(|(k, v)| Step::Insert(k, v)),
            2 => (0..300u16).prop_map(Step::Remove),
            1 => any::<u8>().prop_map(Step::Reserve),
        ]
    }

    fn key(k: u16) -> Vec<u8> {
        format!("{k:0width$}", width = (k % 45) as usize).into_bytes()
    }

    fn value(k: u16, v: u8) -> Vec<u8> {
        vec![v; (k as usize * 7 + v as usize) % 40]
    }

    /// Checks the layout's invariant: every key is reachable from its home with no empty
    /// slot between, and its tag is its hash's.
    fn check_layout(table: &Table) {
        if table.slots.is_empty() {
            assert_eq!(table.len, 0);
            return;
        }
        let mask = table.mask();
        let mut count = 0;
        for at in 0..table.slots.len() {
            if table.tags[at] == EMPTY {
                continue;
            }
            count += 1;
            let hash = table.hash(&table.slots[at].key);
            assert_eq!(table.tags[at], tag_of(hash));
            let mut probe = hash as usize & mask;
            while probe != at {
                assert_ne!(table.tags[probe], EMPTY, "an empty slot before a key");
                probe = (probe + 1) & mask;
            }
        }
        assert_eq!(count, table.len);
        assert!(table.len * LOAD_DENOMINATOR <= table.slots.len() * LOAD_NUMERATOR);
        let held: usize = table.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert_eq!(
            table.bytes(),
            held + table.len * std::mem::size_of::<Slot>()
        );
    }

    proptest! {
        /// Goal: any sequence of inserts, removes and reserves leaves the table holding
        /// exactly what a `HashMap` does, with its probing invariant intact.
        #[test]
        fn matches_a_hash_map(steps in proptest::collection::vec(step(), 1..600)) {
            let (mut table, mut model) = (Table::default(), HashMap::new());
            for step in steps {
                match step {
                    Step::Insert(k, v) => {
                        table.insert(&key(k), Value::copy_of(&value(k, v)));
                        model.insert(key(k), value(k, v));
                    }
                    Step::Remove(k) => {
                        let removed = table.remove(&key(k)).map(|v| v.to_vec());
                        prop_assert_eq!(removed, model.remove(&key(k)));
                    }
                    Step::Reserve(n) => table.reserve(n as usize),
                }
                prop_assert_eq!(table.len(), model.len());
            }
            check_layout(&table);
            let keys: Vec<Vec<u8>> = (0..300).map(key).collect();
            table.prefetch(keys.iter().map(Vec::as_slice));
            for k in 0..300 {
                prop_assert_eq!(table.get(&key(k)).map(|v| v.to_vec()), model.get(&key(k)).cloned());
            }
            let listed: HashMap<Vec<u8>, Vec<u8>> =
                table.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(&listed, &model);
            prop_assert_eq!(table.clone(), table);
        }
    }

    /// Goal: a table at full load grows for a new key, never for an overwrite.
    #[test]
    fn only_a_new_key_grows_a_full_table() {
        let mut table = Table::default();
        let full = SLOTS_MIN * LOAD_NUMERATOR / LOAD_DENOMINATOR;
        for k in 0..full {
            table.insert(&k.to_le_bytes(), Value::copy_of(b"v"));
        }
        assert_eq!(table.slots.len(), SLOTS_MIN);
        table.insert(&0usize.to_le_bytes(), Value::copy_of(b"w"));
        assert_eq!(table.slots.len(), SLOTS_MIN);
        table.insert(&full.to_le_bytes(), Value::copy_of(b"v"));
        assert_eq!(table.slots.len(), 2 * SLOTS_MIN);
        assert_eq!(table.len(), full + 1);
        check_layout(&table);
    }

    /// Goal (found in review): a table gives back the memory of the keys removed from it,
    /// and keeps what it holds: one that held 10,000 keys held their 16,384 slots (1 MiB)
    /// forever. Method: 10,000 keys in, all but 10 removed, then 10,000 in again.
    #[test]
    fn a_table_shrinks_once_most_of_its_keys_are_removed() {
        let mut table = Table::default();
        for k in 0..10_000usize {
            table.insert(&k.to_le_bytes(), Value::copy_of(&k.to_le_bytes()));
        }
        assert_eq!(table.slots.len(), 16_384);
        for k in 10..10_000usize {
            assert!(table.remove(&k.to_le_bytes()).is_some());
            assert!(
                table.len * SHRINK_DENOMINATOR >= table.slots.len()
                    || table.slots.len() == SLOTS_MIN
            );
        }
        // 10 keys fill 64 slots past 1/8: no further.
        assert_eq!(table.slots.len(), 64);
        check_layout(&table);
        for k in 0..10usize {
            assert_eq!(
                &table.get(&k.to_le_bytes()).expect("kept")[..],
                k.to_le_bytes()
            );
        }
        for k in 10..10_000usize {
            table.insert(&k.to_le_bytes(), Value::copy_of(b"again"));
        }
        assert_eq!((table.len(), table.slots.len()), (10_000, 16_384));
        check_layout(&table);
    }

    /// Goal: removal shifts back a run that wraps past the table's end, and equality ignores
    /// where keys sit (two tables filled in different orders are equal).
    #[test]
    fn removal_in_a_wrapping_run_and_equality_by_content() {
        let mut table = Table::default();
        table.reserve(1);
        let slots = table.slots.len();
        // Keys whose home is the last slot: they wrap to the front.
        let homed_last: Vec<Vec<u8>> = (0u32..)
            .map(|i| i.to_le_bytes().to_vec())
            .filter(|k| table.hash(k) as usize & (slots - 1) == slots - 1)
            .take(4)
            .collect();
        for k in &homed_last {
            table.insert(k, Value::copy_of(k));
        }
        check_layout(&table);
        table.remove(&homed_last[0]);
        check_layout(&table);
        for k in &homed_last[1..] {
            assert_eq!(&table.get(k).unwrap()[..], &k[..]);
        }
        let mut other = Table::default();
        for k in homed_last[1..].iter().rev() {
            other.insert(k, Value::copy_of(k));
        }
        assert_eq!(other, table);
        other.insert(&homed_last[1], Value::copy_of(b"changed"));
        assert_ne!(other, table);
    }
}

//! A fast, non-cryptographic hasher (the Fx hash of rustc and Firefox) for the differ's maps,
//! which hash every line's kernel id and mount point on each re-read. The keys come from the
//! kernel's mount table, which only privileged users (and FUSE mounters, in their own
//! directories) shape, so hash flooding is not a concern here.

use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuildHasher = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuildHasher>;
pub type FxHashSet<K> = std::collections::HashSet<K, FxBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_work_and_distinguish_keys() {
        let mut m: FxHashMap<&str, u32> = FxHashMap::default();
        for (i, k) in ["/mnt/a", "/mnt/b", "/mnt/a/b", "", "/mnt/aaaaaaaaaaaaaaaaa"].iter().enumerate() {
            m.insert(k, i as u32);
        }
        assert_eq!(m.len(), 5);
        assert_eq!(m["/mnt/a/b"], 2);
        let mut a = FxHasher::default();
        a.write(b"/mnt/a");
        let mut b = FxHasher::default();
        b.write(b"/mnt/b");
        assert_ne!(a.finish(), b.finish());
    }
}

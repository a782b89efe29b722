//! Deterministic test data for haypack's tests, examples and benchmarks: the same seed always
//! gives the same bytes, on every machine, with no dependency.
//!
//! ```
//! use haypack_testkit::{XorShift, noise};
//!
//! assert_eq!(noise(1000, 7), noise(1000, 7));
//! assert_ne!(noise(1000, 7), noise(1000, 8));
//! let pick = XorShift::new(1).below(10);
//! assert!(pick < 10);
//! ```

/// A xorshift64 generator: fast, reproducible, and plenty random for picking keys and making
/// incompressible bytes (not for anything secret).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed`; every seed, 0 included, gives its own sequence.
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `len` incompressible bytes for `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

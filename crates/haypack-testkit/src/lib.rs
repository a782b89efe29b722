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

/// The process's peak resident memory since [`PeakMemory::start`], from Linux's
/// `/proc/self/status`: tests that bound what a read holds measure it with this. A test binary
/// that uses it should run one measurement at a time (a lock around each), since the peak is
/// the whole process's.
#[derive(Debug)]
pub struct PeakMemory {
    base: u64,
}

impl PeakMemory {
    /// Resets the peak to the current resident size (`/proc/self/clear_refs`, value 5) and
    /// remembers that size. `None` where the system does not keep these counts.
    pub fn start() -> Option<Self> {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        Some(PeakMemory { base: status_bytes("VmRSS")? })
    }

    /// How far the peak rose above the resident size at the start, in bytes.
    pub fn grown(&self) -> u64 {
        status_bytes("VmHWM").unwrap_or(0).saturating_sub(self.base)
    }
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kib: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

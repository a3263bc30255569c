//! Randomness from the operating system (through ring), and the [`RandomSource`] seam.
//!
//! Libraries that need random bytes (contract nonces, key generation) take a
//! `&dyn RandomSource` from their caller instead of reading the operating system
//! themselves, so protocol code stays deterministic under test: a simulation hands in a
//! seeded source, a node hands in [`SystemRandom`].

/// The operating system's generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no randomness available from the operating system")]
pub struct RandError;

/// A source of random bytes.
pub trait RandomSource: Send + Sync {
    /// Fills `out` with random bytes.
    fn fill(&self, out: &mut [u8]) -> Result<(), RandError>;
}

/// The operating system's cryptographic generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemRandom;

impl RandomSource for SystemRandom {
    fn fill(&self, out: &mut [u8]) -> Result<(), RandError> {
        use ring::rand::SecureRandom;
        ring::rand::SystemRandom::new()
            .fill(out)
            .map_err(|_| RandError)
    }
}

/// `N` random bytes from `source`.
pub fn random_array<const N: usize>(source: &dyn RandomSource) -> Result<[u8; N], RandError> {
    let mut out = [0u8; N];
    source.fill(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_random_fills_and_differs() {
        let a: [u8; 32] = random_array(&SystemRandom).unwrap();
        let b: [u8; 32] = random_array(&SystemRandom).unwrap();
        assert_ne!(a, b);
    }
}

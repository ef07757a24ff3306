//! The injected random source: everything whose behaviour depends on chance
//! draws from a [`Random`] it was given, as everything time-dependent reads
//! `service::Clock`, so a test can make it repeatable with
//! [`Random::seeded`].
//!
//! Owns: access tokens, device, user, filter and UIA session IDs, password
//! salts and the signing key's version (`service`); which forward
//! extremities beyond the newest a send names as `prev_events`
//! (`db::rooms`); the retry runner's backoff jitter (`kv::retry`); the
//! directory layer's prefix candidates (`kv::directory`).
//!
//! Invariants:
//! - [`Random::os`], the default, is rand's thread-local generator: a
//!   ChaCha12 CSPRNG seeded, and periodically reseeded, from the operating
//!   system, so tokens and salts stay cryptographically random in
//!   production. It is the only place outside tests that calls `rand::rng`.
//! - [`Random::seeded`] is a ChaCha12 `StdRng` behind a mutex shared by the
//!   handle's clones: the values drawn depend only on the seed and the order
//!   of the draws. Its tokens are predictable; it is for tests only.
//!
//! Who may import this: every layer (it is pure, like `keys`).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rand::distr::uniform::{SampleRange, SampleUniform};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// A source of randomness. Cheap to clone; clones share the source.
#[derive(Clone, Default)]
pub struct Random(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    Os,
    Seeded(Arc<Mutex<StdRng>>),
}

impl Random {
    /// The operating system's entropy through rand's thread-local CSPRNG
    /// (the default).
    pub fn os() -> Self {
        Random(Source::Os)
    }

    /// A deterministic source for tests: the same seed and the same order of
    /// draws give the same values.
    pub fn seeded(seed: u64) -> Self {
        Random(Source::Seeded(Arc::new(Mutex::new(StdRng::seed_from_u64(
            seed,
        )))))
    }

    /// Runs `f` with the generator (for rand's slice and distribution APIs).
    pub fn with<T>(&self, f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        match &self.0 {
            Source::Os => {
                // This is the module that owns randomness: the one call of
                // the ambient generator.
                #[allow(clippy::disallowed_methods)]
                let mut rng = rand::rng();
                f(&mut rng)
            }
            // A panic in `f` cannot leave the generator half-updated in a way
            // that matters (any state is a valid state), so poison is ignored.
            Source::Seeded(rng) => f(&mut *rng.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Fills `dest` with random bytes.
    pub fn fill(&self, dest: &mut [u8]) {
        self.with(|rng| rng.fill_bytes(dest));
    }

    /// A value drawn uniformly from `range` (which must not be empty).
    pub fn range<T, R>(&self, range: R) -> T
    where
        T: SampleUniform,
        R: SampleRange<T>,
    {
        self.with(|rng| rng.random_range(range))
    }

    /// `len` random lowercase ASCII letters (`a-z`).
    pub fn lowercase(&self, len: usize) -> String {
        self.letters(len, b'a')
    }

    /// `len` random uppercase ASCII letters (`A-Z`).
    pub fn uppercase(&self, len: usize) -> String {
        self.letters(len, b'A')
    }

    fn letters(&self, len: usize, first: u8) -> String {
        self.with(|rng| {
            (0..len)
                .map(|_| char::from(first + rng.random_range(0..26u8)))
                .collect()
        })
    }
}

impl fmt::Debug for Random {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Source::Os => "Random::os",
            Source::Seeded(_) => "Random::seeded",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(random: &Random) -> (Vec<u8>, u32, String, String) {
        let mut bytes = vec![0u8; 32];
        random.fill(&mut bytes);
        (
            bytes,
            random.range(0..1_000_000u32),
            random.lowercase(12),
            random.uppercase(10),
        )
    }

    #[test]
    fn the_same_seed_draws_the_same_values_and_another_seed_others() {
        let a = draws(&Random::seeded(7));
        assert_eq!(a, draws(&Random::seeded(7)));
        assert_ne!(a, draws(&Random::seeded(8)));
    }

    #[test]
    fn clones_share_one_sequence() {
        let random = Random::seeded(3);
        let first = draws(&random.clone());
        let second = draws(&random);
        assert_ne!(first, second);
        let replay = Random::seeded(3);
        assert_eq!((draws(&replay), draws(&replay)), (first, second));
    }

    #[test]
    fn letters_are_in_their_alphabet_and_length() {
        for random in [Random::os(), Random::seeded(1)] {
            let lower = random.lowercase(64);
            let upper = random.uppercase(64);
            assert_eq!((lower.len(), upper.len()), (64, 64));
            assert!(lower.bytes().all(|b| b.is_ascii_lowercase()), "{lower}");
            assert!(upper.bytes().all(|b| b.is_ascii_uppercase()), "{upper}");
        }
    }

    #[test]
    fn the_os_source_does_not_repeat() {
        // 256 random bits twice: equal only if the source is broken.
        let random = Random::os();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        random.fill(&mut a);
        random.fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}

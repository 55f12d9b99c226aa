//! A shared, seeded, checkpointable random number generator.

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard};

/// A cloneable handle on one seeded PCG-64 generator.
///
/// Clones share the generator, so every dropout layer of a model draws from
/// one sequence whose position is part of a checkpoint ([`Rng::state`]).
#[derive(Clone, Debug)]
pub struct Rng(Arc<Mutex<Pcg64Mcg>>);

/// The saved position of an [`Rng`] (serialises to JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState(Pcg64Mcg);

impl Rng {
    /// A generator seeded from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(Pcg64Mcg::seed_from_u64(seed))))
    }

    /// Locks the generator for a run of draws.
    pub fn lock(&self) -> MutexGuard<'_, Pcg64Mcg> {
        // A panic while holding the lock cannot leave a PCG state torn.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current position of the sequence.
    pub fn state(&self) -> RngState {
        RngState(self.lock().clone())
    }

    /// Moves the sequence (for every clone of this handle) to `state`.
    pub fn restore(&self, state: &RngState) {
        *self.lock() = state.0.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn clones_share_and_state_restores() {
        let a = Rng::new(7);
        let b = a.clone();
        let first: u64 = a.lock().random();
        let saved = b.state();
        let second: u64 = b.lock().random();
        assert_ne!(first, second);
        a.restore(&saved);
        assert_eq!(b.lock().random::<u64>(), second);
        let json = serde_json::to_string(&saved).unwrap();
        let back: RngState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, saved);
    }
}

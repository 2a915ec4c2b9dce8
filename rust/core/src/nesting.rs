//! The nesting rules of plaintext values: how deep a value may nest, and how
//! a walk over it tells a circular reference from a shared one.
//!
//! The native plaintext encoder (in the PyO3 glue) walks Python objects and
//! keeps the containers on its current path here; the pure-Python walker
//! (`jobpersist._conversion`) applies the same rules, so both backends refuse
//! the same values with the same error.

use std::collections::HashSet;

/// Containers allowed on one path, from a top-level value down: a value
/// nested deeper is refused. `jobpersist._schema.MAX_DEPTH` is the same
/// number (`jobpersist._native.MAX_DEPTH` exposes this one; a test checks
/// that they agree).
pub const MAX_DEPTH: usize = 512;

/// Containers on the path checked for cycles by a linear scan (cheap for the
/// shallow values most data is); deeper ones are also kept in a set.
const LINEAR_IDS: usize = 32;

/// Why a container cannot be entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NestingError {
    /// The container is already on the path: a circular reference.
    Cycle,
    /// The path already holds `MAX_DEPTH` containers.
    TooDeep,
}

/// The containers on the path being walked, by identity (an address that
/// stays unique while the container is alive, as Python's `id`).
#[derive(Debug, Default)]
pub struct Nesting {
    ids: Vec<usize>,
    deep_ids: HashSet<usize>,
}

impl Nesting {
    /// An empty path.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts the container `id` on the path. A cycle is reported before depth,
    /// as the Python walker does.
    pub fn enter(&mut self, id: usize) -> Result<(), NestingError> {
        if self.ids.iter().take(LINEAR_IDS).any(|&seen| seen == id) || self.deep_ids.contains(&id) {
            return Err(NestingError::Cycle);
        }
        if self.ids.len() >= MAX_DEPTH {
            return Err(NestingError::TooDeep);
        }
        if self.ids.len() >= LINEAR_IDS {
            self.deep_ids.insert(id);
        }
        self.ids.push(id);
        Ok(())
    }

    /// Takes the innermost container off the path.
    pub fn leave(&mut self) {
        if let Some(id) = self.ids.pop() {
            if self.ids.len() >= LINEAR_IDS {
                self.deep_ids.remove(&id);
            }
        }
    }

    /// How many containers are on the path.
    pub fn depth(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_level_after_max_depth() {
        let mut nesting = Nesting::new();
        for id in 0..MAX_DEPTH {
            nesting.enter(id + 1).unwrap();
        }
        assert_eq!(nesting.depth(), MAX_DEPTH);
        assert_eq!(nesting.enter(0), Err(NestingError::TooDeep));
        nesting.leave();
        nesting.enter(0).unwrap();
    }

    #[test]
    fn cycles_found_at_every_depth_and_reported_first() {
        let mut nesting = Nesting::new();
        for id in 1..=MAX_DEPTH {
            nesting.enter(id).unwrap();
        }
        for id in [1, LINEAR_IDS, LINEAR_IDS + 1, MAX_DEPTH] {
            assert_eq!(nesting.enter(id), Err(NestingError::Cycle), "{id}");
        }
    }

    #[test]
    fn shared_containers_are_not_cycles() {
        // The same container twice, side by side (not inside itself), at any depth.
        let mut nesting = Nesting::new();
        for id in 1..=100 {
            nesting.enter(id).unwrap();
        }
        for _ in 0..3 {
            nesting.enter(1000).unwrap();
            nesting.leave();
        }
        for _ in 0..100 {
            nesting.leave();
        }
        assert_eq!(nesting.depth(), 0);
        nesting.enter(50).unwrap();
    }
}

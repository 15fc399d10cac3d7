//! Invariant checkers, one per file, run after every step of the simulated world (and, for
//! liveness, at its end). Each pushes a one-line description of what broke.

mod generations;
mod lease;
mod recovery;
mod s1;

use crate::world::World;

/// The checks that hold after every step. (Generations are checked as entries are applied.)
pub fn check_step(world: &mut World) {
    generations::check(world);
    s1::check(world);
    lease::check(world);
}

/// The checks that hold once the faults have stopped and the cluster has had time to heal.
pub fn check_end(world: &mut World) {
    recovery::check(world);
}

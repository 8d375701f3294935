//! What only the old API can do: reach the guard an acquiring `EnsureGuard` owns
//! (`EnsureGuard::guard_mut`) and swap or replace it. Built with `--cfg gil_old_api` only, so
//! that the rest of the fuzzer builds against an API without it.

use gil_std::{EnsureGuard, GilGuard};

use super::program::Lock;
use super::world::World;

/// The lock of the guard an acquiring `ensure` guard owns, if it is one of the two.
pub(crate) fn inner_lock(world: &World, ensure: &mut EnsureGuard<'static>) -> Option<Lock> {
    ensure.guard_mut().and_then(|g| world.lock_of(g.gil()))
}

/// `mem::replace` of the guard `ensure` owns by `new`; the guard replaced is dropped.
pub(crate) fn replace_in_ensure(ensure: &mut EnsureGuard<'static>, new: GilGuard<'static>) {
    match ensure.guard_mut() {
        Some(own) => drop(std::mem::replace(own, new)),
        None => drop(new),
    }
}

/// `mem::swap` of the guard `ensure` owns with `other`.
pub(crate) fn swap_in_ensure(ensure: &mut EnsureGuard<'static>, other: &mut GilGuard<'static>) {
    if let Some(own) = ensure.guard_mut() {
        std::mem::swap(own, other);
    }
}

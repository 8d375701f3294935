//! Helpers shared by the loom models of gil-core and gil-std (gil-std includes this file by
//! path, so both suites use one copy).

use loom::cell::UnsafeCell;

/// Data that only the owner of the lock may touch. Loom's cell flags any two accesses that the
/// lock failed to order.
pub struct Protected(UnsafeCell<usize>);

impl Protected {
    pub fn new() -> Self {
        Self(UnsafeCell::new(0))
    }
    /// Must be called by the owner of the lock.
    pub fn bump(&self) -> usize {
        // SAFETY: the caller owns the lock; loom checks that it really orders the accesses.
        self.0.with_mut(|v| unsafe {
            *v += 1;
            *v
        })
    }
}

/// Runs `f` under loom with a default preemption bound; `LOOM_MAX_PREEMPTIONS` overrides it.
pub fn model(default_preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(default_preemptions);
    }
    builder.check(f);
}

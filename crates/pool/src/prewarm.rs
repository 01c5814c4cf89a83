//! Pre-warmed instances: per interpreter, K generic sandboxed instances whose interpreter
//! has started and said hello, waiting for code. A cold start takes one and only loads the
//! function's code into it; the launcher refills them in the background, one start at a
//! time per interpreter so that refilling competes little with the calls being served.

use std::sync::Mutex;

use ignis_core::Runtime;

use crate::instance::Generic;

/// The interpreters instances are pre-warmed for: Bun serves JavaScript and TypeScript.
pub const PREWARMED: [Runtime; 2] = [Runtime::Python, Runtime::Javascript];

/// The interpreter that runs `runtime`: `python` or `bun`.
pub fn interpreter_name(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Python => "python",
        Runtime::Javascript | Runtime::Typescript => "bun",
    }
}

fn slot_of(runtime: Runtime) -> usize {
    match runtime {
        Runtime::Python => 0,
        Runtime::Javascript | Runtime::Typescript => 1,
    }
}

#[derive(Default)]
struct Slot {
    /// Oldest first.
    ready: std::collections::VecDeque<Generic>,
    starting: bool,
}

/// The pre-warmed instances of each interpreter.
pub(crate) struct Prewarm {
    target: usize,
    slots: [Mutex<Slot>; 2],
}

impl Prewarm {
    pub(crate) fn new(target: usize) -> Prewarm {
        Prewarm {
            target,
            slots: Default::default(),
        }
    }

    pub(crate) fn target(&self) -> usize {
        self.target
    }

    fn slot(&self, runtime: Runtime) -> std::sync::MutexGuard<'_, Slot> {
        self.slots[slot_of(runtime)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// How many are waiting now.
    pub(crate) fn ready(&self, runtime: Runtime) -> usize {
        self.slot(runtime).ready.len()
    }

    /// Takes the waiting instance that has waited longest and is still alive, if any: a Bun
    /// instance runs its warm-up after its hello, so the newest may not have finished it.
    pub(crate) fn take(&self, runtime: Runtime) -> Option<Generic> {
        let mut slot = self.slot(runtime);
        while let Some(mut g) = slot.ready.pop_front() {
            if g.is_alive() {
                g.taken();
                return Some(g);
            }
        }
        None
    }

    /// Marks a start of `runtime` as begun, unless one is under way or the slot is full.
    pub(crate) fn begin_start(&self, runtime: Runtime) -> bool {
        let mut slot = self.slot(runtime);
        if slot.starting || slot.ready.len() >= self.target {
            return false;
        }
        slot.starting = true;
        true
    }

    /// A start begun with [`Prewarm::begin_start`] gave `generic`, which now waits.
    pub(crate) fn started(&self, runtime: Runtime, generic: Generic) {
        let mut slot = self.slot(runtime);
        slot.starting = false;
        slot.ready.push_back(generic);
    }

    /// A start begun with [`Prewarm::begin_start`] failed.
    pub(crate) fn start_failed(&self, runtime: Runtime) {
        self.slot(runtime).starting = false;
    }
}

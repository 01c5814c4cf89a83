//! Pre-warmed instances: per interpreter, K generic sandboxed instances whose interpreter
//! has started and said hello, waiting for code. A cold start takes one and only loads the
//! function's code into it; the pool refills in the background, one start at a time per
//! interpreter so that refilling competes little with the calls being served.

use std::sync::{Arc, Mutex};

use ignis_core::Runtime;

use crate::instance::{Generic, Launcher};

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
    ready: Vec<Generic>,
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

    /// Takes a waiting instance that is still alive, if any.
    pub(crate) fn take(&self, runtime: Runtime) -> Option<Generic> {
        let mut slot = self.slot(runtime);
        while let Some(mut g) = slot.ready.pop() {
            if g.is_alive() {
                g.taken();
                return Some(g);
            }
        }
        None
    }
}

impl Launcher {
    /// Starts pre-warmed instances until each available interpreter has its K waiting.
    pub fn refill(self: &Arc<Self>) {
        for runtime in PREWARMED {
            if !self.runtimes.interpreter(runtime).available {
                continue;
            }
            {
                let mut slot = self.prewarm.slot(runtime);
                if slot.starting || slot.ready.len() >= self.prewarm.target() {
                    continue;
                }
                slot.starting = true;
            }
            let launcher = self.clone();
            tokio::spawn(async move {
                let started = launcher.start_generic(runtime, false, true).await;
                {
                    let mut slot = launcher.prewarm.slot(runtime);
                    slot.starting = false;
                    match started {
                        Ok(g) => slot.ready.push(g),
                        Err(e) => {
                            // Cold starts still work without the pool; try again at the next
                            // cold start rather than in a tight loop.
                            tracing::warn!(runtime = runtime.as_str(), error = %e, "could not pre-warm an instance");
                            return;
                        }
                    }
                }
                launcher.refill();
            });
        }
    }

    /// How many pre-warmed instances of `runtime` are waiting.
    pub fn prewarmed(&self, runtime: Runtime) -> usize {
        self.prewarm.ready(runtime)
    }

    /// How many pre-warmed instances each interpreter keeps (K).
    pub fn prewarm_target(&self) -> usize {
        self.prewarm.target()
    }
}

//! Instance lifecycle: finding runtimes, starting instances (pre-warmed or fresh), warm
//! reuse, scaling, host capacity and eviction, reaping.

#![warn(clippy::wildcard_enum_match_arm)]

mod capacity;
mod instance;
mod launcher;
mod output;
mod pool;
mod prewarm;
pub mod runtimes;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use capacity::{Capacity, Reservation};
pub use instance::{Generic, Instance, RunResult, StartError, StartTimings, Started};
pub use launcher::{CodePackage, LaunchSpec, Launcher, Purpose, Starter};
pub use pool::{AcquireError, ColdReason, ColdStart, InstanceCounts, Lease, PoolLimits, Ran, VersionPool};
pub use prewarm::{interpreter_name, PREWARMED};
pub use runtimes::{Interpreter, RuntimeConfig, Runtimes};

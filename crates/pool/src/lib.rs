//! Instance lifecycle: finding runtimes, starting instances (pre-warmed or fresh), warm
//! reuse, scaling, host capacity and eviction, reaping.

#![warn(clippy::wildcard_enum_match_arm)]

pub mod build;
mod capacity;
mod host;
mod instance;
mod launcher;
pub mod microvm;
mod output;
mod pool;
mod prewarm;
pub mod runtimes;
mod stream;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use build::{BuildError, BuildJob, Installer};
pub use capacity::{Capacity, Reservation};
pub use instance::{Generic, Instance, RunResult, StartError, StartTimings, Started};
pub use launcher::{CodePackage, LaunchSpec, Launcher, Purpose, Starter};
pub use pool::{AcquireError, ColdReason, ColdStart, InstanceCounts, Lease, PoolLimits, Ran, VersionPool};
pub use prewarm::{interpreter_name, PREWARMED};
pub use runtimes::{Interpreter, RuntimeConfig, Runtimes};
pub use stream::{StreamEvent, StreamSink};

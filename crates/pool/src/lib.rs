//! Instance lifecycle: finding runtimes, starting instances, warm reuse, scaling, reaping.

mod instance;
mod output;
mod pool;
pub mod runtimes;

pub use instance::{Instance, LaunchSpec, Launcher, RunResult, StartError};
pub use pool::{AcquireError, InstanceCounts, Lease, PoolLimits, Ran, VersionPool};
pub use runtimes::{Interpreter, RuntimeConfig, Runtimes};

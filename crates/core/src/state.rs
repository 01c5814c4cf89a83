//! The lifecycle of a function: `creating` → (`building` →) `deploying` → `ready` | `error`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionState {
    Creating,
    /// The newest version's dependencies are being installed (before its deploy check).
    Building,
    Deploying,
    Ready,
    Error,
}

/// What happened to a function that moves it along its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateEvent {
    /// The newest version's dependencies are being installed.
    BuildStarted,
    /// The spec is stored (or its dependencies are installed); a deploy check starts.
    DeployStarted,
    /// The deploy check of the newest version succeeded.
    DeploySucceeded,
    /// The deploy check of the newest version failed. `serving` tells whether an older
    /// version is still ready to take calls.
    DeployFailed { serving: bool },
}

impl FunctionState {
    /// The one transition function of the lifecycle.
    pub fn on(self, event: StateEvent) -> FunctionState {
        match (self, event) {
            (_, StateEvent::BuildStarted) => FunctionState::Building,
            (_, StateEvent::DeployStarted) => FunctionState::Deploying,
            (_, StateEvent::DeploySucceeded) => FunctionState::Ready,
            // A failed update keeps serving the last good version: the function stays ready
            // and the failure is reported in `state_reason`.
            (_, StateEvent::DeployFailed { serving: true }) => FunctionState::Ready,
            (_, StateEvent::DeployFailed { serving: false }) => FunctionState::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FunctionState::Creating => "creating",
            FunctionState::Building => "building",
            FunctionState::Deploying => "deploying",
            FunctionState::Ready => "ready",
            FunctionState::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_deploy_goes_ready_or_error() {
        let s = FunctionState::Creating.on(StateEvent::DeployStarted);
        assert_eq!(s, FunctionState::Deploying);
        assert_eq!(s.on(StateEvent::DeploySucceeded), FunctionState::Ready);
        assert_eq!(
            s.on(StateEvent::DeployFailed { serving: false }),
            FunctionState::Error
        );
    }

    #[test]
    fn a_build_comes_before_the_deploy_check() {
        let s = FunctionState::Ready
            .on(StateEvent::DeployStarted)
            .on(StateEvent::BuildStarted);
        assert_eq!(s, FunctionState::Building);
        assert_eq!(s.as_str(), "building");
        assert_eq!(s.on(StateEvent::DeployStarted), FunctionState::Deploying);
        assert_eq!(
            s.on(StateEvent::DeployFailed { serving: true }),
            FunctionState::Ready,
            "a failed build of an update keeps the old version serving"
        );
    }

    #[test]
    fn failed_update_keeps_serving() {
        let s = FunctionState::Ready.on(StateEvent::DeployStarted);
        assert_eq!(
            s.on(StateEvent::DeployFailed { serving: true }),
            FunctionState::Ready
        );
    }

    #[test]
    fn error_function_can_be_fixed() {
        let s = FunctionState::Error.on(StateEvent::DeployStarted);
        assert_eq!(s.on(StateEvent::DeploySucceeded), FunctionState::Ready);
    }
}

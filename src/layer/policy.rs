//! Per-route admission rules applied after a token is verified.

use crate::error::{AuthError, ScopeDenied};
use crate::machine::{AuthenticatedMachine, MachineId};

/// Which verified machines a route admits.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoutePolicy {
    /// `None` admits every machine.
    pub(crate) allowed_machines: Option<Vec<MachineId>>,
    /// Scopes the token must all carry.
    pub(crate) required_scopes: Vec<String>,
}

impl RoutePolicy {
    pub(crate) fn check(&self, machine: &AuthenticatedMachine) -> Result<(), AuthError> {
        if let Some(allowed) = &self.allowed_machines
            && !allowed.contains(machine.machine_id())
        {
            return Err(AuthError::InsufficientScope(ScopeDenied::MachineNotAllowed));
        }
        if !self
            .required_scopes
            .iter()
            .all(|scope| machine.has_scope(scope))
        {
            return Err(AuthError::InsufficientScope(ScopeDenied::MissingScopes(
                self.required_scopes.clone(),
            )));
        }
        Ok(())
    }
}

use std::sync::Arc;

use tower::Layer;

use super::policy::RoutePolicy;
use super::{AuthMode, MachineAuth};
use crate::error::ConfigError;
use crate::machine::MachineId;
use crate::verifier::MachineVerifier;

/// The realm of `WWW-Authenticate` challenges unless set with [`MachineAuthLayer::realm`].
pub const DEFAULT_REALM: &str = "api";

/// Settings shared by every service a layer makes.
#[derive(Debug, Clone)]
pub(crate) struct LayerSettings {
    pub(crate) policy: RoutePolicy,
    pub(crate) mode: AuthMode,
    pub(crate) realm: String,
}

/// Authenticates machine requests; see the [module docs](crate::layer) for an example.
///
/// Requests without a valid machine token are answered by the layer (401, 400, 403 or 503, see
/// [`AuthError`](crate::AuthError)); the others reach the inner service with an
/// [`AuthenticatedMachine`](crate::AuthenticatedMachine) in their extensions.
#[derive(Debug, Clone)]
#[must_use]
pub struct MachineAuthLayer {
    verifier: MachineVerifier,
    settings: Arc<LayerSettings>,
}

impl MachineAuthLayer {
    /// A layer that requires a valid machine token on every request.
    pub fn new(verifier: MachineVerifier) -> Self {
        Self {
            verifier,
            settings: Arc::new(LayerSettings {
                policy: RoutePolicy::default(),
                mode: AuthMode::Required,
                realm: DEFAULT_REALM.to_owned(),
            }),
        }
    }

    /// Sets the mode: [`AuthMode::Required`] (the default) or [`AuthMode::Optional`].
    pub fn mode(mut self, mode: AuthMode) -> Self {
        Arc::make_mut(&mut self.settings).mode = mode;
        self
    }

    /// Shorthand for `mode(AuthMode::Optional)`: requests without a credential pass with no
    /// identity; requests with an invalid one are still rejected.
    pub fn optional(self) -> Self {
        self.mode(AuthMode::Optional)
    }

    /// Admits only these machines (others get 403 `insufficient-scope`).
    ///
    /// Fails if an id is not a machine id (`mch_…`).
    pub fn allow_machines<I, S>(mut self, machine_ids: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let ids = machine_ids
            .into_iter()
            .map(|id| {
                MachineId::parse(id.as_ref()).ok_or_else(|| {
                    ConfigError::new(format!(
                        "`{}` is not a machine id: machine ids are `mch_` followed by ASCII letters, digits or `_`",
                        id.as_ref().escape_debug()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Arc::make_mut(&mut self.settings).policy.allowed_machines = Some(ids);
        Ok(self)
    }

    /// Requires every one of these scopes (others get 403 `insufficient-scope`). For Clerk tokens
    /// the scopes are the machine ids the caller may reach, so a server usually requires its own.
    pub fn require_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Arc::make_mut(&mut self.settings).policy.required_scopes =
            scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The `realm` of `WWW-Authenticate` challenges (default `"api"`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.settings).realm = realm.into();
        self
    }
}

impl<S> Layer<S> for MachineAuthLayer {
    type Service = MachineAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MachineAuth::new(inner, self.verifier.clone(), Arc::clone(&self.settings))
    }
}

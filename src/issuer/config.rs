//! The issuer's configuration: its instance, its machines, how it signs.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::machine::MachineId;

/// The default lifetime of a machine's tokens, in seconds (Clerk's `default_token_ttl`).
pub const DEFAULT_TOKEN_TTL: u64 = 3600;
/// The longest token lifetime the issuer grants (ten years, as Clerk's templates allow).
pub const MAX_TOKEN_TTL: u64 = 315_360_000;

/// How the issuer signs JWTs.
///
/// ```
/// use tower_machine_auth::issuer::SigningAlgorithm;
///
/// assert_eq!(SigningAlgorithm::default(), SigningAlgorithm::RS256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// RSA-2048 with PKCS#1 v1.5 and SHA-256, as Clerk signs.
    #[default]
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    pub(crate) fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::RS256),
            "ES256" => Some(Self::ES256),
            "EdDSA" => Some(Self::EdDSA),
            _ => None,
        }
    }
}

/// The issuer's configuration, as read from a JSON file by `machine-auth dev --config FILE`.
///
/// ```
/// use tower_machine_auth::issuer::IssuerConfig;
///
/// let config: IssuerConfig = serde_json::from_str(r#"{
///     "instance_secret_key": "sk_test_instance_secret",
///     "machines": [
///         {"id": "mch_cron_service", "name": "Cron", "secret_key": "ak_cron_secret_key",
///          "scopes": ["mch_reports_api"]},
///         {"id": "mch_reports_api", "name": "Reports", "secret_key": "ak_reports_secret_key"}
///     ]
/// }"#)?;
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` of the issued JWTs; by default the URL the issuer is served at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The instance secret key (`sk_…`): reads the JWKS, and verifies, lists and revokes any token.
    pub instance_secret_key: String,
    /// How JWTs are signed (default RS256).
    #[serde(default)]
    pub signing_algorithm: SigningAlgorithm,
    /// The machines that may create tokens.
    pub machines: Vec<MachineConfig>,
}

/// A machine the issuer knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// The machine id: `mch_` and ASCII letters, digits or `_`, at most 96 characters. Left
    /// out of a configuration file, it is derived from `name` (see [`machine_id_from_seed`]), so
    /// it looks like Clerk's and stays the same across restarts.
    #[serde(default)]
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The machine secret key (`ak_…`) it creates tokens with.
    pub secret_key: String,
    /// The machine ids its tokens may reach (their `scopes`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The lifetime of its tokens when the request names none, in seconds (default 3600).
    #[serde(default = "default_token_ttl")]
    pub default_token_ttl: u64,
}

fn default_token_ttl() -> u64 {
    DEFAULT_TOKEN_TTL
}

impl IssuerConfig {
    /// The built-in demo: machines `mch_cron_service` (which may call `mch_reports_api`) and
    /// `mch_reports_api`, with fixed, public, demo-only secret keys.
    ///
    /// ```
    /// use tower_machine_auth::issuer::IssuerConfig;
    ///
    /// let demo = IssuerConfig::demo();
    /// assert_eq!(demo.machines[0].id, "mch_cron_service");
    /// assert!(demo.validate().is_ok());
    /// ```
    pub fn demo() -> Self {
        Self {
            issuer: None,
            instance_secret_key: "sk_test_demo_instance_do_not_use_in_production".to_owned(),
            signing_algorithm: SigningAlgorithm::RS256,
            machines: vec![
                MachineConfig {
                    id: "mch_cron_service".to_owned(),
                    name: "Cron service".to_owned(),
                    secret_key: "ak_demo_cron_service_do_not_use_in_production".to_owned(),
                    scopes: vec!["mch_reports_api".to_owned()],
                    default_token_ttl: DEFAULT_TOKEN_TTL,
                },
                MachineConfig {
                    id: "mch_reports_api".to_owned(),
                    name: "Reports API".to_owned(),
                    secret_key: "ak_demo_reports_api_do_not_use_in_production".to_owned(),
                    scopes: Vec::new(),
                    default_token_ttl: DEFAULT_TOKEN_TTL,
                },
            ],
        }
    }

    /// Reads a JSON configuration: unknown fields are errors, missing machine ids are derived
    /// from the machines' names, and the result is [validated](Self::validate).
    ///
    /// ```
    /// use tower_machine_auth::issuer::IssuerConfig;
    ///
    /// let config = IssuerConfig::from_json(r#"{
    ///     "instance_secret_key": "sk_test_instance_secret",
    ///     "machines": [{"name": "Billing worker", "secret_key": "ak_billing_secret_key"}]
    /// }"#)?;
    /// assert!(config.machines[0].id.starts_with("mch_"));
    /// let error = IssuerConfig::from_json(r#"{"instance_secret_key": 5}"#).unwrap_err();
    /// assert!(error.to_string().contains("instance_secret_key"));
    /// # Ok::<(), tower_machine_auth::ConfigError>(())
    /// ```
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let mut json = serde_json::Deserializer::from_str(text);
        let mut config: Self = serde_path_to_error::deserialize(&mut json).map_err(|error| {
            let path = error.path().to_string();
            let error = error.into_inner();
            if path == "." {
                ConfigError::new(format!("the configuration is not valid: {error}"))
            } else {
                ConfigError::new(format!(
                    "the configuration's `{path}` is not valid: {error}"
                ))
            }
        })?;
        for machine in &mut config.machines {
            if machine.id.is_empty() {
                machine.id = machine_id_from_seed(&machine.name).to_string();
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the configuration, with a message that names the field and says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let secret = |value: &str, prefix: &str, what: &str| {
            if !value.starts_with(prefix) || value.len() < prefix.len() + 8 {
                return Err(ConfigError::new(format!(
                    "{what} must start with `{prefix}` and be at least {} characters long",
                    prefix.len() + 8
                )));
            }
            if !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::new(format!(
                    "{what} must be printable ASCII without spaces"
                )));
            }
            Ok(())
        };
        secret(&self.instance_secret_key, "sk_", "instance_secret_key")?;
        if let Some(issuer) = &self.issuer {
            url::Url::parse(issuer).map_err(|error| {
                ConfigError::new(format!("issuer `{issuer}` is not a URL: {error}"))
            })?;
        }
        if self.machines.is_empty() {
            return Err(ConfigError::new(
                "machines is empty: configure at least one machine",
            ));
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::from([self.instance_secret_key.as_str()]);
        for (index, machine) in self.machines.iter().enumerate() {
            let at = format!("machines[{index}]");
            check_machine_id(&machine.id, &format!("{at}.id"))?;
            if !ids.insert(machine.id.as_str()) {
                return Err(ConfigError::new(format!(
                    "{at}.id: machine `{}` is configured twice",
                    machine.id
                )));
            }
            secret(&machine.secret_key, "ak_", &format!("{at}.secret_key"))?;
            if !keys.insert(machine.secret_key.as_str()) {
                return Err(ConfigError::new(format!(
                    "{at}.secret_key is already used by another machine or the instance"
                )));
            }
            for (scope_index, scope) in machine.scopes.iter().enumerate() {
                check_machine_id(scope, &format!("{at}.scopes[{scope_index}]"))?;
            }
            if !(1..=MAX_TOKEN_TTL).contains(&machine.default_token_ttl) {
                return Err(ConfigError::new(format!(
                    "{at}.default_token_ttl must be between 1 and {MAX_TOKEN_TTL} seconds"
                )));
            }
        }
        Ok(())
    }

    /// The machine whose secret key is `secret_key`.
    pub(crate) fn machine_with_key(&self, secret_key: &str) -> Option<&MachineConfig> {
        self.machines.iter().find(|machine| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                machine.secret_key.as_bytes(),
                secret_key.as_bytes(),
            )
            .is_ok()
        })
    }

    /// Whether `secret_key` is the instance secret key.
    pub(crate) fn is_instance_key(&self, secret_key: &str) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            self.instance_secret_key.as_bytes(),
            secret_key.as_bytes(),
        )
        .is_ok()
    }
}

fn check_machine_id(id: &str, at: &str) -> Result<(), ConfigError> {
    if MachineId::is_valid(id) {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{at}: `{}` is not a machine id: `mch_` followed by ASCII letters, digits or `_`, at \
             most 96 characters in all",
            id.escape_debug()
        )))
    }
}

/// A machine id that looks like Clerk's: `mch_` and 27 base62 characters, derived from `seed`.
///
/// ```
/// let id = tower_machine_auth::issuer::machine_id_from_seed("billing worker");
/// assert!(id.as_str().starts_with("mch_"));
/// assert_eq!(id.as_str().len(), 31);
/// assert_eq!(id, tower_machine_auth::issuer::machine_id_from_seed("billing worker"));
/// ```
pub fn machine_id_from_seed(seed: &str) -> MachineId {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes());
    let id = format!("mch_{}", base62(digest.as_ref(), 27));
    MachineId::parse(&id).unwrap_or_else(|| unreachable!("base62 characters form a machine id"))
}

/// `len` base62 characters from `bytes` (which must carry enough entropy).
pub(crate) fn base62(bytes: &[u8], len: usize) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    bytes
        .iter()
        .cycle()
        .take(len)
        .map(|b| ALPHABET[usize::from(*b) % 62] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> IssuerConfig {
        IssuerConfig::demo()
    }

    #[test]
    fn the_demo_is_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn mistakes_are_named() {
        let mut bad_id = config();
        bad_id.machines[1].id = "mch_reports-api".to_owned();
        let mut duplicate = config();
        duplicate.machines[1].id = "mch_cron_service".to_owned();
        let mut bad_scope = config();
        bad_scope.machines[0].scopes = vec!["user_1".to_owned()];
        let mut bad_key = config();
        bad_key.machines[0].secret_key = "sk_not_a_machine_key".to_owned();
        let mut shared_key = config();
        shared_key.machines[1].secret_key = shared_key.machines[0].secret_key.clone();
        let mut zero_ttl = config();
        zero_ttl.machines[0].default_token_ttl = 0;
        let mut long_id = config();
        long_id.machines[0].id = format!("mch_{}", "a".repeat(93));
        for (config, words) in [
            (bad_id, "machines[1].id"),
            (duplicate, "configured twice"),
            (bad_scope, "machines[0].scopes[0]"),
            (bad_key, "machines[0].secret_key must start with `ak_`"),
            (shared_key, "already used"),
            (zero_ttl, "default_token_ttl"),
            (long_id, "at most 96"),
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(words), "{error}");
        }
    }

    #[test]
    fn keys_are_compared_whole() {
        let config = config();
        assert!(
            config
                .machine_with_key("ak_demo_cron_service_do_not_use_in_production")
                .is_some()
        );
        assert!(
            config
                .machine_with_key("ak_demo_cron_service_do_not_use_in_productio")
                .is_none()
        );
        assert!(config.is_instance_key(&config.instance_secret_key));
        assert!(!config.is_instance_key("sk_test"));
    }
}

//! The issuer's configuration: its instance, its machines, how it signs.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::redact::Redacted;
use crate::error::ConfigError;
use machine_auth_core::MachineId;

/// The default lifetime of a machine's tokens, in seconds (Clerk's `default_token_ttl`).
pub const DEFAULT_TOKEN_TTL: u64 = 3600;
/// The longest token lifetime the issuer grants (ten years, as Clerk's templates allow).
pub const MAX_TOKEN_TTL: u64 = 315_360_000;
/// The default of [`IssuerConfig::max_token_ttl`], in seconds (24 hours).
pub const DEFAULT_MAX_TOKEN_TTL: u64 = 86_400;

/// How the issuer signs JWTs.
///
/// ```
/// use machine_auth_issuer::SigningAlgorithm;
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
/// use machine_auth_issuer::IssuerConfig;
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
///
/// `Debug` shows `[redacted]` in place of the secret keys.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
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
    /// The longest lifetime, in seconds, of an M2M token (default [`DEFAULT_MAX_TOKEN_TTL`], 24
    /// hours; at most [`MAX_TOKEN_TTL`]). A create request asking for more is refused (422), and
    /// no machine's `default_token_ttl` may exceed it.
    #[serde(default = "default_max_token_ttl")]
    pub max_token_ttl: u64,
    /// The machines that may create tokens.
    pub machines: Vec<MachineConfig>,
    /// Users, for JWT-template tokens: each an object with an `id` (`user_…`) and the fields the
    /// shortcodes read (`first_name`, `public_metadata`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<Map<String, Value>>,
    /// Sessions of those users, for `POST /v1/sessions/{id}/tokens/{template}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionConfig>,
    /// JWT templates created when the issuer starts (unless one of that name exists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_templates: Vec<JwtTemplateConfig>,
}

/// A user's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The session id (`sess_…`).
    pub id: String,
    /// The user it belongs to.
    pub user_id: String,
    /// The active organization, read by `{{org.…}}` shortcodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<Map<String, Value>>,
    /// The user's membership in it, read by `{{membership.…}}` shortcodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<Map<String, Value>>,
    /// An impersonator, read by `{{session.actor}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Value>,
}

/// A JWT template to create at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtTemplateConfig {
    /// Its unique name.
    pub name: String,
    /// The claims, with shortcodes.
    pub claims: Map<String, Value>,
    /// Token lifetime in seconds (default 60; 30 to 315360000).
    #[serde(default = "default_template_lifetime")]
    pub lifetime: u64,
    /// Allowed clock skew in seconds, subtracted for `nbf` (default 5; 0 to 300).
    #[serde(default = "default_template_skew")]
    pub allowed_clock_skew: u64,
}

fn default_template_lifetime() -> u64 {
    60
}

fn default_template_skew() -> u64 {
    5
}

/// A machine the issuer knows. `Debug` shows `[redacted]` in place of its secret key.
///
/// ```
/// use machine_auth_issuer::IssuerConfig;
///
/// let machine = &IssuerConfig::demo().machines[0];
/// let printed = format!("{machine:?}");
/// assert!(printed.contains("[redacted]") && !printed.contains(&machine.secret_key));
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
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
    /// A JWT template (by name) whose claims, rendered from `{{machine.id}}`, `{{machine.name}}`
    /// and `{{machine.scopes}}`, every token of this machine carries. Claims in a create request
    /// override them; the M2M default claims override both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

fn default_token_ttl() -> u64 {
    DEFAULT_TOKEN_TTL
}

fn default_max_token_ttl() -> u64 {
    DEFAULT_MAX_TOKEN_TTL
}

impl fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("issuer", &self.issuer)
            .field("instance_secret_key", &Redacted)
            .field("signing_algorithm", &self.signing_algorithm)
            .field("max_token_ttl", &self.max_token_ttl)
            .field("machines", &self.machines)
            .field("users", &self.users)
            .field("sessions", &self.sessions)
            .field("jwt_templates", &self.jwt_templates)
            .finish()
    }
}

impl fmt::Debug for MachineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret_key", &Redacted)
            .field("scopes", &self.scopes)
            .field("default_token_ttl", &self.default_token_ttl)
            .field("template", &self.template)
            .finish()
    }
}

impl IssuerConfig {
    /// The built-in demo: machines `mch_cron_service` (machine A, which may call
    /// `mch_reports_api`), `mch_reports_api` (machine B, which may call no other machine) and
    /// `mch_backup_job` (which may call `mch_cron_service` but not `mch_reports_api`, so a machine
    /// B that checks its own id refuses its tokens), in that order, with fixed, public, demo-only
    /// secret keys; the user Maria Doe of the JWT template documentation with a session
    /// `sess_demo_maria`; and that documentation's complete example as the template
    /// `complete_example`.
    ///
    /// ```
    /// use machine_auth_issuer::IssuerConfig;
    ///
    /// let demo = IssuerConfig::demo();
    /// let ids: Vec<&str> = demo.machines.iter().map(|machine| machine.id.as_str()).collect();
    /// assert_eq!(ids, ["mch_cron_service", "mch_reports_api", "mch_backup_job"]);
    /// assert_eq!(demo.machines[0].scopes, ["mch_reports_api"]);
    /// assert_eq!(demo.machines[2].scopes, ["mch_cron_service"]);
    /// assert!(demo.validate().is_ok());
    /// ```
    pub fn demo() -> Self {
        Self {
            issuer: None,
            instance_secret_key: "sk_test_demo_instance_do_not_use_in_production".to_owned(),
            signing_algorithm: SigningAlgorithm::RS256,
            max_token_ttl: DEFAULT_MAX_TOKEN_TTL,
            machines: vec![
                MachineConfig {
                    id: "mch_cron_service".to_owned(),
                    name: "Cron service".to_owned(),
                    secret_key: "ak_demo_cron_service_do_not_use_in_production".to_owned(),
                    scopes: vec!["mch_reports_api".to_owned()],
                    default_token_ttl: DEFAULT_TOKEN_TTL,
                    template: None,
                },
                MachineConfig {
                    id: "mch_reports_api".to_owned(),
                    name: "Reports API".to_owned(),
                    secret_key: "ak_demo_reports_api_do_not_use_in_production".to_owned(),
                    scopes: Vec::new(),
                    default_token_ttl: DEFAULT_TOKEN_TTL,
                    template: None,
                },
                MachineConfig {
                    id: "mch_backup_job".to_owned(),
                    name: "Backup job".to_owned(),
                    secret_key: "ak_demo_backup_job_do_not_use_in_production".to_owned(),
                    scopes: vec!["mch_cron_service".to_owned()],
                    default_token_ttl: DEFAULT_TOKEN_TTL,
                    template: None,
                },
            ],
            users: vec![demo_user()],
            sessions: vec![SessionConfig {
                id: "sess_demo_maria".to_owned(),
                user_id: "user_abcdef123456789".to_owned(),
                org: None,
                membership: None,
                actor: None,
            }],
            jwt_templates: vec![JwtTemplateConfig {
                name: "complete_example".to_owned(),
                claims: complete_example_template(),
                lifetime: default_template_lifetime(),
                allowed_clock_skew: default_template_skew(),
            }],
        }
    }

    /// Reads a JSON configuration: unknown fields are errors, missing machine ids are derived
    /// from the machines' names, and the result is [validated](Self::validate).
    ///
    /// ```
    /// use machine_auth_issuer::IssuerConfig;
    ///
    /// let config = IssuerConfig::from_json(r#"{
    ///     "instance_secret_key": "sk_test_instance_secret",
    ///     "machines": [{"name": "Billing worker", "secret_key": "ak_billing_secret_key"}]
    /// }"#)?;
    /// assert!(config.machines[0].id.starts_with("mch_"));
    /// let error = IssuerConfig::from_json(r#"{"instance_secret_key": 5}"#).unwrap_err();
    /// assert!(error.to_string().contains("instance_secret_key"));
    /// # Ok::<(), machine_auth_issuer::ConfigError>(())
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
        if !(1..=MAX_TOKEN_TTL).contains(&self.max_token_ttl) {
            return Err(ConfigError::new(format!(
                "max_token_ttl must be between 1 and {MAX_TOKEN_TTL} seconds"
            )));
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
            check_machine_name(machine, &at)?;
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
            if machine.default_token_ttl > self.max_token_ttl {
                return Err(ConfigError::new(format!(
                    "{at}.default_token_ttl ({}) of machine `{}` exceeds max_token_ttl ({}): \
                     lower it or raise max_token_ttl",
                    machine.default_token_ttl, machine.id, self.max_token_ttl
                )));
            }
            if let Some(template) = &machine.template
                && !self.jwt_templates.iter().any(|t| &t.name == template)
            {
                return Err(ConfigError::new(format!(
                    "{at}.template: no jwt_templates entry is named `{template}`"
                )));
            }
        }
        let mut users = HashSet::new();
        for (index, user) in self.users.iter().enumerate() {
            match user.get("id").and_then(Value::as_str) {
                Some(id) if is_prefixed_id(id, "user_") && users.insert(id) => {}
                Some(id) if is_prefixed_id(id, "user_") => {
                    return Err(ConfigError::new(format!(
                        "users[{index}].id: user `{id}` is configured twice"
                    )));
                }
                _ => {
                    return Err(ConfigError::new(format!(
                        "users[{index}].id must be `user_` followed by ASCII letters, digits or `_`"
                    )));
                }
            }
        }
        let mut sessions = HashSet::new();
        for (index, session) in self.sessions.iter().enumerate() {
            if !is_prefixed_id(&session.id, "sess_") || !sessions.insert(session.id.as_str()) {
                return Err(ConfigError::new(format!(
                    "sessions[{index}].id must be a unique `sess_` followed by ASCII letters, digits or `_`"
                )));
            }
            if !users.contains(session.user_id.as_str()) {
                return Err(ConfigError::new(format!(
                    "sessions[{index}].user_id: no user `{}` is configured",
                    session.user_id
                )));
            }
        }
        let mut names = HashSet::new();
        for (index, template) in self.jwt_templates.iter().enumerate() {
            let at = format!("jwt_templates[{index}]");
            if template.name.trim().is_empty() || !names.insert(template.name.as_str()) {
                return Err(ConfigError::new(format!(
                    "{at}.name must be a unique, non-empty name"
                )));
            }
            check_template_times(template.lifetime, template.allowed_clock_skew)
                .map_err(|error| ConfigError::new(format!("{at}.{error}")))?;
            super::Template::compile(&template.claims)
                .map_err(|error| ConfigError::new(format!("{at}.claims: {error}")))?;
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

/// Clerk's bounds on a template's lifetime and clock skew; the error names the field.
pub(crate) fn check_template_times(lifetime: u64, skew: u64) -> Result<(), String> {
    if !(30..=MAX_TOKEN_TTL).contains(&lifetime) {
        return Err(format!(
            "lifetime must be between 30 and {MAX_TOKEN_TTL} seconds"
        ));
    }
    if skew > 300 {
        return Err("allowed_clock_skew must be between 0 and 300 seconds".to_owned());
    }
    Ok(())
}

fn is_prefixed_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 92
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

fn check_machine_id(id: &str, at: &str) -> Result<(), ConfigError> {
    if MachineId::is_valid(id) {
        Ok(())
    } else {
        let shown: String = id
            .chars()
            .map(|c| {
                if is_unsafe_char(c) {
                    escaped(c)
                } else {
                    c.escape_debug().to_string()
                }
            })
            .collect();
        Err(ConfigError::new(format!(
            "{at}: `{shown}` is not a machine id: `mch_` followed by ASCII letters, digits or `_`, \
             at most 96 characters in all"
        )))
    }
}

/// Whether `c` must not appear in text that is printed for people (names end up in shell lines
/// and logs): control characters and Unicode direction overrides and isolates.
pub(crate) fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `c` escaped: `\n`, `\u{202e}`.
fn escaped(c: char) -> String {
    if c.is_control() {
        c.escape_debug().to_string()
    } else {
        c.escape_unicode().to_string()
    }
}

fn check_machine_name(machine: &MachineConfig, at: &str) -> Result<(), ConfigError> {
    match machine.name.chars().find(|c| is_unsafe_char(*c)) {
        None => Ok(()),
        Some(c) => Err(ConfigError::new(format!(
            "{at}.name: the name of machine `{}` contains `{}`: names may not contain control \
             characters or Unicode direction overrides (U+202A to U+202E, U+2066 to U+2069)",
            machine.id,
            escaped(c)
        ))),
    }
}

/// Maria Doe, the user of the JWT template documentation's complete example.
fn demo_user() -> Map<String, Value> {
    let Value::Object(user) = json!({
        "id": "user_abcdef123456789",
        "first_name": "Maria",
        "last_name": "Doe",
        "full_name": "Maria Doe",
        "image_url": "https://example.com/avatar.jpg",
        "primary_email_address": "maria@example.com",
        "email_verified": true,
        "primary_phone_address": null,
        "phone_number_verified": false,
        "created_at": 1_227_618_844,
        "external_id": null,
        "public_metadata": {"profile": {"interests": ["reading", "climbing"]}},
        "unsafe_metadata": {"foo": {"bar": 42}},
    }) else {
        unreachable!("an object literal")
    };
    user
}

/// The JWT template documentation's complete example.
fn complete_example_template() -> Map<String, Value> {
    let Value::Object(claims) = json!({
        "aud": "https://my-site.com",
        "version": 1,
        "foo": {"bar": [1, 2, 3]},
        "user_id": "{{user.id}}",
        "avatar": "{{user.image_url}}",
        "full_name": "{{user.last_name}} {{user.first_name}} ",
        "email": "{{user.primary_email_address}}",
        "phone": "{{user.primary_phone_address}}",
        "registration_date": "{{user.created_at}}",
        "likes_to_do": "{{user.public_metadata.profile.interests}}",
        "unsafe_meta": "{{user.unsafe_metadata}}",
        "invalid_shortcode": "{{user.i_dont_exist}}",
    }) else {
        unreachable!("an object literal")
    };
    claims
}

/// A machine id that looks like Clerk's: `mch_` and 27 base62 characters, derived from `seed`.
///
/// ```
/// let id = machine_auth_issuer::machine_id_from_seed("billing worker");
/// assert!(id.as_str().starts_with("mch_"));
/// assert_eq!(id.as_str().len(), 31);
/// assert_eq!(id, machine_auth_issuer::machine_id_from_seed("billing worker"));
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
        let mut zero_cap = config();
        zero_cap.max_token_ttl = 0;
        let mut cap_under_default = config();
        cap_under_default.max_token_ttl = 60;
        for (config, words) in [
            (bad_id, "machines[1].id"),
            (duplicate, "configured twice"),
            (bad_scope, "machines[0].scopes[0]"),
            (bad_key, "machines[0].secret_key must start with `ak_`"),
            (shared_key, "already used"),
            (zero_ttl, "default_token_ttl"),
            (long_id, "at most 96"),
            (zero_cap, "max_token_ttl must be between 1"),
            (cap_under_default, "machines[0].default_token_ttl (3600)"),
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
        assert_eq!(
            config
                .machine_with_key("ak_demo_backup_job_do_not_use_in_production")
                .map(|machine| machine.id.as_str()),
            Some("mch_backup_job")
        );
        assert!(config.is_instance_key(&config.instance_secret_key));
        assert!(!config.is_instance_key("sk_test"));
    }
}

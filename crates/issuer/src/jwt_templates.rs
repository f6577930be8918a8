//! JWT templates at the issuer: Clerk's `jwt_template` resource, its CRUD, and the tokens made
//! with them (for a user session, or for a machine).

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::config::check_template_times;
use super::store::TemplateRow;
use super::{Issuer, IssuerError, MachineConfig, Template, TemplateError, random_hex};

/// Clerk's JWT category header for template tokens.
pub(crate) const TEMPLATE_CATEGORY: &str = "cl_B7d4PD222AAA";

/// Clerk's `jwt_template` resource (times in Unix milliseconds).
///
/// ```
/// use machine_auth_issuer::{Issuer, IssuerConfig};
///
/// let issuer = Issuer::builder(IssuerConfig::demo()).build()?;
/// let key = "sk_test_demo_instance_do_not_use_in_production";
/// let template = issuer.template(key, "complete_example")?;
/// assert_eq!((template.object.as_str(), template.lifetime), ("jwt_template", 60));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JwtTemplate {
    /// Always `"jwt_template"`.
    pub object: String,
    /// `jtmp_` and 27 characters.
    pub id: String,
    /// The unique name tokens are requested by.
    pub name: String,
    /// The claims, with shortcodes, as saved.
    pub claims: Map<String, Value>,
    /// Token lifetime in seconds: `exp = now + lifetime`.
    pub lifetime: u64,
    /// Clock skew in seconds: `nbf = now - allowed_clock_skew`.
    pub allowed_clock_skew: u64,
    /// Always `false`: tokens are signed with the issuer's key.
    pub custom_signing_key: bool,
    /// The issuer's signing algorithm.
    pub signing_algorithm: String,
    /// When it was created.
    pub created_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

/// The fields of a create (`name` and `claims` required) or update request.
///
/// ```
/// use machine_auth_issuer::TemplateFields;
///
/// let fields = TemplateFields::from_json(br#"{"name":"api","claims":{"email":"{{user.primary_email_address}}"}}"#, true)?;
/// assert_eq!(fields.name.as_deref(), Some("api"));
/// let error = TemplateFields::from_json(br#"{"name":"api","claims":{"sub":"x"}}"#, true).unwrap_err();
/// assert!(error.to_string().contains("sub"));
/// # Ok::<(), machine_auth_issuer::IssuerError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateFields {
    /// The name.
    pub name: Option<String>,
    /// The claims.
    pub claims: Option<Map<String, Value>>,
    /// The lifetime in seconds (30 to 315360000; default 60).
    pub lifetime: Option<u64>,
    /// The clock skew in seconds (0 to 300; default 5).
    pub allowed_clock_skew: Option<u64>,
}

impl TemplateFields {
    /// Parses a request body strictly; template syntax errors are 400s that name the claim.
    pub fn from_json(body: &[u8], creating: bool) -> Result<Self, IssuerError> {
        let invalid = |param: &str, message: String| {
            IssuerError::invalid_param("form_param_value_invalid", param, message)
        };
        let mut fields = Self::default();
        for (name, value) in super::tokens::json_object(body)? {
            match (name.as_str(), value) {
                ("name", Value::String(value))
                    if !value.trim().is_empty() && value.len() <= 256 =>
                {
                    fields.name = Some(value);
                }
                ("name", _) => {
                    return Err(invalid(
                        "name",
                        "name must be a non-empty string of at most 256 bytes".into(),
                    ));
                }
                ("claims", Value::Object(claims)) => {
                    Template::compile(&claims).map_err(|error| claims_error(&error))?;
                    fields.claims = Some(claims);
                }
                ("claims", _) => return Err(super::tokens::wrong_type("claims", "an object")),
                ("lifetime", Value::Number(n)) => {
                    fields.lifetime = Some(n.as_u64().ok_or_else(|| {
                        invalid(
                            "lifetime",
                            "lifetime must be a whole number of seconds".into(),
                        )
                    })?)
                }
                ("allowed_clock_skew", Value::Number(n)) => {
                    fields.allowed_clock_skew = Some(n.as_u64().ok_or_else(|| {
                        invalid(
                            "allowed_clock_skew",
                            "allowed_clock_skew must be a whole number of seconds".into(),
                        )
                    })?);
                }
                ("lifetime" | "allowed_clock_skew", Value::Null) => {}
                ("lifetime" | "allowed_clock_skew", _) => {
                    return Err(super::tokens::wrong_type(&name, "a number"));
                }
                ("custom_signing_key", Value::Bool(false) | Value::Null) => {}
                ("custom_signing_key" | "signing_key" | "signing_algorithm", _) => {
                    return Err(IssuerError::invalid_param(
                        "form_param_unknown",
                        &name,
                        format!("{name}: this issuer signs every template with its own key"),
                    ));
                }
                (other, _) => return Err(super::tokens::unknown_param(other)),
            }
        }
        if creating {
            for (field, present) in [
                ("name", fields.name.is_some()),
                ("claims", fields.claims.is_some()),
            ] {
                if !present {
                    return Err(IssuerError::invalid_param(
                        "form_param_missing",
                        field,
                        format!("{field} is required"),
                    ));
                }
            }
        }
        Ok(fields)
    }
}

impl JwtTemplate {
    fn from_row(row: TemplateRow, algorithm: &str) -> Self {
        Self {
            object: "jwt_template".to_owned(),
            id: row.id,
            name: row.name,
            claims: row.claims,
            lifetime: row.lifetime,
            allowed_clock_skew: row.allowed_clock_skew,
            custom_signing_key: false,
            signing_algorithm: algorithm.to_owned(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Compiled templates, by id.
pub(crate) type CompiledTemplates = HashMap<String, (TemplateRow, Arc<Template>)>;

impl Issuer {
    fn require_instance_key(&self, secret_key: &str) -> Result<(), IssuerError> {
        if self.inner.config.is_instance_key(secret_key) {
            Ok(())
        } else {
            Err(IssuerError::unauthorized(
                "authentication_invalid",
                "JWT templates and session tokens need the instance secret key (sk_…)",
            ))
        }
    }

    fn algorithm_name(&self) -> &'static str {
        self.inner.config.signing_algorithm.as_str()
    }

    /// Loads the stored templates, and saves the configured ones that are not stored yet.
    pub(crate) fn load_templates(&self) -> Result<(), IssuerError> {
        let now_ms = self.now_ms();
        let stored = self.inner.store.templates()?;
        for configured in &self.inner.config.jwt_templates {
            if !stored.iter().any(|row| row.name == configured.name) {
                let row = TemplateRow {
                    id: template_id()?,
                    name: configured.name.clone(),
                    claims: configured.claims.clone(),
                    lifetime: configured.lifetime,
                    allowed_clock_skew: configured.allowed_clock_skew,
                    created_at: now_ms,
                    updated_at: now_ms,
                };
                self.inner.store.save_template(&row)?;
            }
        }
        let mut compiled = CompiledTemplates::new();
        for row in self.inner.store.templates()? {
            let template = Template::compile(&row.claims).map_err(|error| {
                IssuerError::internal(format!("stored template `{}`: {error}", row.name))
            })?;
            compiled.insert(row.id.clone(), (row, Arc::new(template)));
        }
        *self
            .inner
            .templates
            .write()
            .unwrap_or_else(|e| e.into_inner()) = compiled;
        Ok(())
    }

    /// The compiled template with this id or name.
    fn compiled(&self, id_or_name: &str) -> Option<(TemplateRow, Arc<Template>)> {
        let templates = self
            .inner
            .templates
            .read()
            .unwrap_or_else(|e| e.into_inner());
        templates
            .get(id_or_name)
            .or_else(|| templates.values().find(|(row, _)| row.name == id_or_name))
            .cloned()
    }

    fn save(&self, row: TemplateRow, template: Template) -> Result<JwtTemplate, IssuerError> {
        if !self.inner.store.save_template(&row)? {
            return Err(IssuerError::invalid_param(
                "form_identifier_exists",
                "name",
                format!("a template named `{}` exists already", row.name),
            ));
        }
        self.inner
            .templates
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(row.id.clone(), (row.clone(), Arc::new(template)));
        Ok(JwtTemplate::from_row(row, self.algorithm_name()))
    }

    /// Creates a template (`POST /v1/jwt_templates`), compiled now so that it renders without
    /// errors later.
    pub fn create_template(
        &self,
        secret_key: &str,
        fields: TemplateFields,
    ) -> Result<JwtTemplate, IssuerError> {
        self.require_instance_key(secret_key)?;
        let claims = fields.claims.unwrap_or_default();
        let template = Template::compile(&claims).map_err(|error| claims_error(&error))?;
        let (lifetime, skew) = (
            fields.lifetime.unwrap_or(60),
            fields.allowed_clock_skew.unwrap_or(5),
        );
        check_times(lifetime, skew)?;
        let now_ms = self.now_ms();
        let row = TemplateRow {
            id: template_id()?,
            name: fields.name.unwrap_or_default(),
            claims,
            lifetime,
            allowed_clock_skew: skew,
            created_at: now_ms,
            updated_at: now_ms,
        };
        self.save(row, template)
    }

    /// Every template (`GET /v1/jwt_templates`).
    pub fn templates(&self, secret_key: &str) -> Result<Vec<JwtTemplate>, IssuerError> {
        self.require_instance_key(secret_key)?;
        let mut rows: Vec<TemplateRow> = self
            .inner
            .templates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|(row, _)| row.clone())
            .collect();
        rows.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(rows
            .into_iter()
            .map(|row| JwtTemplate::from_row(row, self.algorithm_name()))
            .collect())
    }

    /// One template, by id or name (`GET /v1/jwt_templates/{id}`).
    pub fn template(&self, secret_key: &str, id_or_name: &str) -> Result<JwtTemplate, IssuerError> {
        self.require_instance_key(secret_key)?;
        let (row, _) = self
            .compiled(id_or_name)
            .ok_or_else(|| IssuerError::not_found("the JWT template"))?;
        Ok(JwtTemplate::from_row(row, self.algorithm_name()))
    }

    /// Changes the given fields of a template (`PATCH /v1/jwt_templates/{id}`).
    pub fn update_template(
        &self,
        secret_key: &str,
        id: &str,
        fields: TemplateFields,
    ) -> Result<JwtTemplate, IssuerError> {
        self.require_instance_key(secret_key)?;
        let (mut row, template) = self
            .compiled(id)
            .ok_or_else(|| IssuerError::not_found("the JWT template"))?;
        let template = match fields.claims {
            Some(claims) => {
                let compiled = Template::compile(&claims).map_err(|error| claims_error(&error))?;
                row.claims = claims;
                compiled
            }
            None => (*template).clone(),
        };
        row.name = fields.name.unwrap_or(row.name);
        row.lifetime = fields.lifetime.unwrap_or(row.lifetime);
        row.allowed_clock_skew = fields.allowed_clock_skew.unwrap_or(row.allowed_clock_skew);
        check_times(row.lifetime, row.allowed_clock_skew)?;
        row.updated_at = self.now_ms();
        self.save(row, template)
    }

    /// Deletes a template (`DELETE /v1/jwt_templates/{id}`); returns Clerk's deleted object.
    pub fn delete_template(&self, secret_key: &str, id: &str) -> Result<Value, IssuerError> {
        self.require_instance_key(secret_key)?;
        let (row, _) = self
            .compiled(id)
            .ok_or_else(|| IssuerError::not_found("the JWT template"))?;
        if self
            .inner
            .config
            .machines
            .iter()
            .any(|machine| machine.template.as_deref() == Some(row.name.as_str()))
        {
            return Err(IssuerError::invalid_param(
                "form_param_value_invalid",
                "id",
                format!("the template `{}` is configured for a machine", row.name),
            ));
        }
        self.inner.store.delete_template(&row.id)?;
        self.inner
            .templates
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&row.id);
        Ok(json!({"object": "jwt_template", "id": row.id, "deleted": true}))
    }

    /// A token for a configured user session, made with a template
    /// (`POST /v1/sessions/{session_id}/tokens/{template_name}`). `azp` is the request's origin.
    pub fn session_token(
        &self,
        secret_key: &str,
        session_id: &str,
        template_name: &str,
        azp: Option<&str>,
    ) -> Result<String, IssuerError> {
        self.require_instance_key(secret_key)?;
        let config = &self.inner.config;
        let session = config
            .sessions
            .iter()
            .find(|s| s.id == session_id)
            .ok_or_else(|| IssuerError::not_found("the session"))?;
        let user = config
            .users
            .iter()
            .find(|user| user.get("id").and_then(Value::as_str) == Some(session.user_id.as_str()))
            .ok_or_else(|| IssuerError::not_found("the session's user"))?;
        let (row, template) = self
            .compiled(template_name)
            .ok_or_else(|| IssuerError::not_found("the JWT template"))?;
        let subject = json!({
            "user": user,
            "org": session.org,
            "membership": session.membership,
            "session": {"id": session.id, "actor": session.actor},
        });
        self.template_token(
            &template,
            &subject,
            &session.user_id,
            row.lifetime,
            row.allowed_clock_skew,
            azp,
        )
    }

    /// A token of a template, signed with the current key: the claims of
    /// [`template_claims`](Self::template_claims) under the `cat` header Clerk gives session
    /// tokens of custom templates.
    ///
    /// ```
    /// use serde_json::json;
    /// use machine_auth_issuer::{Issuer, IssuerConfig, Template};
    ///
    /// let issuer = Issuer::builder(IssuerConfig::demo()).build()?;
    /// let template = Template::compile(json!({"role": "{{user.role || 'guest'}}"}).as_object().unwrap())?;
    /// let jwt = issuer.template_token(&template, &json!({"user": {}}), "user_1", 60, 5, None)?;
    /// assert_eq!(jwt.split('.').count(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn template_token(
        &self,
        template: &Template,
        subject: &Value,
        sub: &str,
        lifetime: u64,
        allowed_clock_skew: u64,
        azp: Option<&str>,
    ) -> Result<String, IssuerError> {
        let claims =
            self.template_claims(template, subject, sub, lifetime, allowed_clock_skew, azp)?;
        self.sign_claims(&claims, TEMPLATE_CATEGORY)
    }

    /// The claims of a template token: the rendered template, then the default claims `azp`
    /// (when given), `exp` (`iat + lifetime`), `iat`, `iss`, `jti`, `nbf` (`iat - skew`) and `sub`.
    ///
    /// ```
    /// use serde_json::json;
    /// use machine_auth_issuer::{Issuer, IssuerConfig, Template};
    ///
    /// let issuer = Issuer::builder(IssuerConfig::demo()).build()?;
    /// let template = Template::compile(json!({"name": "{{user.first_name}}"}).as_object().unwrap())?;
    /// let claims = issuer.template_claims(&template, &json!({"user": {"first_name": "Ann"}}), "user_1", 60, 5, None)?;
    /// assert_eq!(claims["name"], "Ann");
    /// assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 60);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn template_claims(
        &self,
        template: &Template,
        subject: &Value,
        sub: &str,
        lifetime: u64,
        allowed_clock_skew: u64,
        azp: Option<&str>,
    ) -> Result<Map<String, Value>, IssuerError> {
        let now = self.now_ms() / 1000;
        let mut claims = template.render(subject);
        if let Some(azp) = azp {
            claims.insert("azp".into(), json!(azp));
        }
        claims.insert(
            "exp".into(),
            json!(now + i64::try_from(lifetime).unwrap_or(i64::MAX / 2)),
        );
        claims.insert("iat".into(), json!(now));
        claims.insert("iss".into(), json!(self.inner.issuer));
        claims.insert("jti".into(), json!(random_hex(10)?));
        claims.insert(
            "nbf".into(),
            json!(now - i64::try_from(allowed_clock_skew).unwrap_or(0)),
        );
        claims.insert("sub".into(), json!(sub));
        Ok(claims)
    }

    /// The claims of a machine's template, rendered from its own data, if it has one.
    pub(crate) fn machine_template_claims(
        &self,
        machine: &MachineConfig,
    ) -> Option<Map<String, Value>> {
        let (_, template) = self.compiled(machine.template.as_deref()?)?;
        let subject =
            json!({"machine": {"id": machine.id, "name": machine.name, "scopes": machine.scopes}});
        Some(template.render(&subject))
    }
}

fn check_times(lifetime: u64, skew: u64) -> Result<(), IssuerError> {
    check_template_times(lifetime, skew).map_err(|message| {
        let param = if message.starts_with("lifetime") {
            "lifetime"
        } else {
            "allowed_clock_skew"
        };
        IssuerError::invalid_param("form_param_value_invalid", param, message)
    })
}

fn template_id() -> Result<String, IssuerError> {
    let mut random = [0u8; 27];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| IssuerError::internal("the system random generator failed"))?;
    Ok(format!("jtmp_{}", super::config::base62(&random, 27)))
}

/// A template that cannot be saved: 422 when it is past the size or nesting bounds, 400 for a
/// syntax error; both name `claims`.
fn claims_error(error: &TemplateError) -> IssuerError {
    if error.exceeds_limit() {
        IssuerError::unprocessable("claims", error.to_string())
    } else {
        IssuerError::invalid_param("form_param_value_invalid", "claims", error.to_string())
    }
}

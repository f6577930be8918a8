//! Persistence: opaque tokens (by digest) and signing keys, in SQLite.
//!
//! With a data directory the database is `<dir>/issuer.sqlite3`, so tokens, revocations and keys
//! survive restarts; without one it lives in memory.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::error::IssuerError;

/// The database file inside a data directory.
pub(crate) const DATABASE_FILE: &str = "issuer.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS m2m_tokens (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    scopes TEXT NOT NULL,
    claims TEXT,
    expiration INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0,
    revocation_reason TEXT,
    last_used_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS m2m_tokens_subject ON m2m_tokens (subject, created_at);
CREATE TABLE IF NOT EXISTS jwt_templates (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    claims TEXT NOT NULL,
    lifetime INTEGER NOT NULL,
    allowed_clock_skew INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    private_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER,
    last_expiry INTEGER NOT NULL DEFAULT 0
);
";

/// A stored opaque token (all times in Unix milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenRow {
    pub(crate) id: String,
    pub(crate) subject: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) claims: Option<Map<String, Value>>,
    pub(crate) expiration: Option<i64>,
    pub(crate) revoked: bool,
    pub(crate) revocation_reason: Option<String>,
    pub(crate) last_used_at: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A stored JWT template (times in Unix milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TemplateRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) claims: Map<String, Value>,
    pub(crate) lifetime: u64,
    pub(crate) allowed_clock_skew: u64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A stored signing key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyRow {
    pub(crate) kid: String,
    pub(crate) algorithm: String,
    pub(crate) private_pem: String,
    pub(crate) created_at: i64,
    pub(crate) retired_at: Option<i64>,
    /// The latest `exp` (ms) of a token signed with the key.
    pub(crate) last_expiry: i64,
}

/// Which tokens to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TokenFilter {
    pub(crate) subject: Option<String>,
    pub(crate) include_revoked: bool,
    pub(crate) include_expired: bool,
    pub(crate) limit: u32,
    pub(crate) offset: u32,
}

pub(crate) struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens (and creates) the store in `data_dir`, or in memory.
    pub(crate) fn open(data_dir: Option<&Path>) -> Result<Self, IssuerError> {
        let connection = match data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|error| {
                    IssuerError::internal(format!(
                        "cannot create the data directory {}: {error}",
                        dir.display()
                    ))
                })?;
                Connection::open(dir.join(DATABASE_FILE))?
            }
            None => Connection::open_in_memory()?,
        };
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert_token(&self, token: &TokenRow, digest: &[u8]) -> Result<(), IssuerError> {
        self.connection().execute(
            "INSERT INTO m2m_tokens (id, digest, subject, scopes, claims, expiration, revoked,
                 revocation_reason, last_used_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                token.id,
                digest,
                token.subject,
                serde_json::to_string(&token.scopes).unwrap_or_else(|_| "[]".to_owned()),
                token
                    .claims
                    .as_ref()
                    .map(|c| Value::Object(c.clone()).to_string()),
                token.expiration,
                token.revoked,
                token.revocation_reason,
                token.last_used_at,
                token.created_at,
                token.updated_at,
            ],
        )?;
        Ok(())
    }

    /// The token with this digest, marking it used at `now_ms`.
    pub(crate) fn use_token(
        &self,
        digest: &[u8],
        now_ms: i64,
    ) -> Result<Option<TokenRow>, IssuerError> {
        let connection = self.connection();
        connection.execute(
            "UPDATE m2m_tokens SET last_used_at = ?2 WHERE digest = ?1",
            params![digest, now_ms],
        )?;
        Ok(connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM m2m_tokens WHERE digest = ?1"),
                [digest],
                token_row,
            )
            .optional()?)
    }

    pub(crate) fn token(&self, id: &str) -> Result<Option<TokenRow>, IssuerError> {
        Ok(self
            .connection()
            .query_row(
                &format!("SELECT {COLUMNS} FROM m2m_tokens WHERE id = ?1"),
                [id],
                token_row,
            )
            .optional()?)
    }

    /// Revokes a token (keeping the first reason of an already revoked one).
    pub(crate) fn revoke(
        &self,
        id: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<TokenRow>, IssuerError> {
        self.connection().execute(
            "UPDATE m2m_tokens SET revoked = 1, revocation_reason = ?2, updated_at = ?3
             WHERE id = ?1 AND revoked = 0",
            params![id, reason, now_ms],
        )?;
        self.token(id)
    }

    /// A page of tokens, newest first, and how many match in all.
    pub(crate) fn list(
        &self,
        filter: &TokenFilter,
        now_ms: i64,
    ) -> Result<(Vec<TokenRow>, u64), IssuerError> {
        let condition = "(?1 IS NULL OR subject = ?1)
             AND (?2 OR revoked = 0)
             AND (?3 OR expiration IS NULL OR expiration > ?4)";
        let connection = self.connection();
        let arguments = params![
            filter.subject,
            filter.include_revoked,
            filter.include_expired,
            now_ms
        ];
        let total: i64 = connection.query_row(
            &format!("SELECT COUNT(*) FROM m2m_tokens WHERE {condition}"),
            arguments,
            |row| row.get(0),
        )?;
        let mut statement = connection.prepare(&format!(
            "SELECT {COLUMNS} FROM m2m_tokens WHERE {condition}
             ORDER BY created_at DESC, id LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = statement
            .query_map(
                params![
                    filter.subject,
                    filter.include_revoked,
                    filter.include_expired,
                    now_ms,
                    filter.limit,
                    filter.offset
                ],
                token_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, u64::try_from(total).unwrap_or(0)))
    }

    pub(crate) fn signing_keys(&self) -> Result<Vec<KeyRow>, IssuerError> {
        let connection = self.connection();
        let mut statement = connection.prepare(
            "SELECT kid, algorithm, private_pem, created_at, retired_at, last_expiry
             FROM signing_keys ORDER BY created_at, kid",
        )?;
        let rows = statement
            .query_map([], |row| {
                Ok(KeyRow {
                    kid: row.get(0)?,
                    algorithm: row.get(1)?,
                    private_pem: row.get(2)?,
                    created_at: row.get(3)?,
                    retired_at: row.get(4)?,
                    last_expiry: row.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Adds a new current key and retires the others at `now_ms`.
    pub(crate) fn add_current_key(&self, key: &KeyRow) -> Result<(), IssuerError> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        transaction.execute(
            "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
            [key.created_at],
        )?;
        transaction.execute(
            "INSERT INTO signing_keys (kid, algorithm, private_pem, created_at, retired_at, last_expiry)
             VALUES (?1, ?2, ?3, ?4, NULL, 0)",
            params![key.kid, key.algorithm, key.private_pem, key.created_at],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Records that a token signed by `kid` expires at `expiry_ms`.
    pub(crate) fn extend_key_expiry(&self, kid: &str, expiry_ms: i64) -> Result<(), IssuerError> {
        self.connection().execute(
            "UPDATE signing_keys SET last_expiry = MAX(last_expiry, ?2) WHERE kid = ?1",
            params![kid, expiry_ms],
        )?;
        Ok(())
    }
}

impl Store {
    pub(crate) fn templates(&self) -> Result<Vec<TemplateRow>, IssuerError> {
        let connection = self.connection();
        let mut statement = connection.prepare(&format!(
            "SELECT {TEMPLATE_COLUMNS} FROM jwt_templates ORDER BY created_at, name"
        ))?;
        let rows = statement
            .query_map([], template_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Inserts or replaces (by id) a template; `false` when another template has its name.
    pub(crate) fn save_template(&self, template: &TemplateRow) -> Result<bool, IssuerError> {
        let connection = self.connection();
        let taken: Option<String> = connection
            .query_row(
                "SELECT id FROM jwt_templates WHERE name = ?1 AND id != ?2",
                params![template.name, template.id],
                |row| row.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Ok(false);
        }
        connection.execute(
            "INSERT OR REPLACE INTO jwt_templates
                 (id, name, claims, lifetime, allowed_clock_skew, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                template.id,
                template.name,
                Value::Object(template.claims.clone()).to_string(),
                i64::try_from(template.lifetime).unwrap_or(i64::MAX),
                i64::try_from(template.allowed_clock_skew).unwrap_or(i64::MAX),
                template.created_at,
                template.updated_at,
            ],
        )?;
        Ok(true)
    }

    pub(crate) fn delete_template(&self, id: &str) -> Result<bool, IssuerError> {
        Ok(self
            .connection()
            .execute("DELETE FROM jwt_templates WHERE id = ?1", [id])?
            > 0)
    }
}

const TEMPLATE_COLUMNS: &str =
    "id, name, claims, lifetime, allowed_clock_skew, created_at, updated_at";

fn template_row(row: &Row<'_>) -> rusqlite::Result<TemplateRow> {
    let claims: String = row.get(2)?;
    let claims = match serde_json::from_str(&claims) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                "stored template claims are not a JSON object".into(),
            ));
        }
    };
    let unsigned = |index: usize| -> rusqlite::Result<u64> {
        let value: i64 = row.get(index)?;
        u64::try_from(value).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Integer,
                Box::new(error),
            )
        })
    };
    Ok(TemplateRow {
        id: row.get(0)?,
        name: row.get(1)?,
        claims,
        lifetime: unsigned(3)?,
        allowed_clock_skew: unsigned(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

const COLUMNS: &str = "id, subject, scopes, claims, expiration, revoked, revocation_reason,
    last_used_at, created_at, updated_at";

fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenRow> {
    let json_column = |index: usize, text: Option<String>| -> rusqlite::Result<Option<Value>> {
        text.map(|text| {
            serde_json::from_str(&text).map_err(|error| {
                rusqlite::Error::FromSqlConversionFailure(
                    index,
                    rusqlite::types::Type::Text,
                    Box::new(error),
                )
            })
        })
        .transpose()
    };
    let scopes = match json_column(2, Some(row.get(2)?))? {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let claims = match json_column(3, row.get(3)?)? {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    };
    Ok(TokenRow {
        id: row.get(0)?,
        subject: row.get(1)?,
        scopes,
        claims,
        expiration: row.get(4)?,
        revoked: row.get(5)?,
        revocation_reason: row.get(6)?,
        last_used_at: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

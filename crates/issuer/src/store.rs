//! Persistence: opaque tokens (by digest) and signing keys, in SQLite.
//!
//! With a data directory the database is `<dir>/issuer.sqlite3`, so tokens, revocations and keys
//! survive restarts; without one it lives in memory. The directory and the database (which holds
//! private keys) are private to their owner: see [`super::data_dir`].

use std::fmt;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::data_dir;
use super::error::IssuerError;
use super::redact::Redacted;

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
CREATE INDEX IF NOT EXISTS m2m_tokens_expiration ON m2m_tokens (expiration);
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

/// A stored signing key. `Debug` shows `[redacted]` in place of the private key.
#[derive(Clone, PartialEq)]
pub(crate) struct KeyRow {
    pub(crate) kid: String,
    pub(crate) algorithm: String,
    pub(crate) private_pem: String,
    pub(crate) created_at: i64,
    pub(crate) retired_at: Option<i64>,
    /// The latest `exp` (ms) of a token signed with the key.
    pub(crate) last_expiry: i64,
}

impl fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_pem", &Redacted)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .field("last_expiry", &self.last_expiry)
            .finish()
    }
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
    /// Opens (and creates) the store in `data_dir`, or in memory. A data directory is created
    /// private to its owner, refused if others may write it, and its database files are made
    /// private to their owner.
    pub(crate) fn open(dir: Option<&Path>) -> Result<Self, IssuerError> {
        let connection = match dir {
            Some(dir) => {
                data_dir::prepare(dir)?;
                let database = dir.join(DATABASE_FILE);
                data_dir::create_private_file(&database)?;
                let connection = Connection::open(&database)?;
                connection.execute_batch(SCHEMA)?;
                data_dir::make_database_files_private(&database)?;
                connection
            }
            None => {
                let connection = Connection::open_in_memory()?;
                connection.execute_batch(SCHEMA)?;
                connection
            }
        };
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

    /// The token with this digest.
    pub(crate) fn token_by_digest(&self, digest: &[u8]) -> Result<Option<TokenRow>, IssuerError> {
        Ok(self
            .connection()
            .query_row(
                &format!("SELECT {COLUMNS} FROM m2m_tokens WHERE digest = ?1"),
                [digest],
                token_row,
            )
            .optional()?)
    }

    /// Records that the token `id` was used (verified) at `now_ms`.
    pub(crate) fn mark_used(&self, id: &str, now_ms: i64) -> Result<(), IssuerError> {
        self.connection().execute(
            "UPDATE m2m_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, now_ms],
        )?;
        Ok(())
    }

    /// Deletes at most `batch` tokens that expired at or before `expired_by_ms` (revoked or
    /// not); returns how many.
    pub(crate) fn purge_expired(
        &self,
        expired_by_ms: i64,
        batch: u32,
    ) -> Result<usize, IssuerError> {
        Ok(self.connection().execute(
            "DELETE FROM m2m_tokens WHERE rowid IN (
                 SELECT rowid FROM m2m_tokens
                 WHERE expiration IS NOT NULL AND expiration <= ?1
                 LIMIT ?2)",
            params![expired_by_ms, batch],
        )?)
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

    /// Deletes a retired key (never the current one); `false` when there is no such retired key.
    pub(crate) fn delete_retired_key(&self, kid: &str) -> Result<bool, IssuerError> {
        Ok(self.connection().execute(
            "DELETE FROM signing_keys WHERE kid = ?1 AND retired_at IS NOT NULL",
            [kid],
        )? > 0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, expiration: Option<i64>) -> TokenRow {
        TokenRow {
            id: id.to_owned(),
            subject: "mch_a".to_owned(),
            scopes: Vec::new(),
            claims: None,
            expiration,
            revoked: false,
            revocation_reason: None,
            last_used_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn purging_deletes_expired_tokens_in_bounded_batches() {
        let store = Store::open(None).unwrap();
        for index in 0..25 {
            store
                .insert_token(&row(&format!("mt_{index}"), Some(index)), &[index as u8])
                .unwrap();
        }
        store
            .insert_token(&row("mt_forever", None), b"forever")
            .unwrap();
        assert_eq!(store.purge_expired(19, 10).unwrap(), 10);
        assert_eq!(store.purge_expired(19, 100).unwrap(), 10);
        assert_eq!(store.purge_expired(19, 100).unwrap(), 0);
        let filter = TokenFilter {
            include_expired: true,
            include_revoked: true,
            limit: 100,
            ..Default::default()
        };
        let (_, left) = store.list(&filter, 0).unwrap();
        assert_eq!(
            left, 6,
            "the 5 tokens expiring after 19 and the one that never expires"
        );
    }

    #[test]
    fn key_rows_do_not_show_their_private_key() {
        let row = KeyRow {
            kid: "ins_kid".to_owned(),
            algorithm: "RS256".to_owned(),
            private_pem: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----"
                .to_owned(),
            created_at: 0,
            retired_at: None,
            last_expiry: 0,
        };
        for printed in [format!("{row:?}"), format!("{row:#?}")] {
            assert!(
                !printed.contains("c2VjcmV0") && !printed.contains("PRIVATE"),
                "{printed}"
            );
            assert!(printed.contains("[redacted]") && printed.contains("ins_kid"));
        }
    }
}

//! One token creation for a [`MachineTokenSource`](super::MachineTokenSource): the call, and
//! what its answer means for the source.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::m2m_tokens::{M2mApiError, M2mTokens};
use crate::TokenFormat;

/// What a source asks for on every creation.
pub(crate) struct CreateRequest {
    pub(crate) api: M2mTokens,
    pub(crate) format: TokenFormat,
    pub(crate) lifetime: Duration,
    pub(crate) claims: Option<Map<String, Value>>,
}

/// A created token, as the issuer described it.
pub(crate) struct Created {
    pub(crate) token: String,
    pub(crate) id: String,
    pub(crate) created_at: Option<SystemTime>,
    pub(crate) expires_at: Option<SystemTime>,
}

/// Why a creation failed.
pub(crate) enum CreateFailure {
    /// 401: the machine key is wrong.
    CredentialsRejected { code: String },
    /// Another 4xx (not 408 or 429): the request is wrong.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// Worth retrying: the network, a timeout, a redirect, 408, 429, 5xx, a malformed reply.
    Transient(String),
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    object: Option<String>,
    id: String,
    token: String,
    #[serde(default)]
    expiration: Option<i64>,
    #[serde(default)]
    created_at: Option<i64>,
}

/// Sends one creation request (retried once, at once, only if no connection could be made).
pub(crate) async fn create(request: &CreateRequest) -> Result<Created, CreateFailure> {
    let reply = request
        .api
        .create_token(
            request.format,
            Some(request.lifetime),
            request.claims.as_ref(),
        )
        .await;
    match reply {
        Ok(resource) => created(resource).map_err(|reason| {
            CreateFailure::Transient(format!("{} answered {reason}", request.api.shown()))
        }),
        Err(M2mApiError::Refused {
            status: 401, code, ..
        }) => Err(CreateFailure::CredentialsRejected { code }),
        Err(M2mApiError::Refused {
            status,
            code,
            message,
            ..
        }) if (400..=499).contains(&status) && status != 408 && status != 429 => {
            Err(CreateFailure::Refused {
                status,
                code,
                message,
            })
        }
        Err(error) => Err(CreateFailure::Transient(error.to_string())),
    }
}

fn created(resource: Map<String, Value>) -> Result<Created, String> {
    let invalid = || "not a machine_to_machine_token with a token".to_owned();
    let reply: Reply = serde_json::from_value(Value::Object(resource)).map_err(|_| invalid())?;
    if reply
        .object
        .as_deref()
        .is_some_and(|object| object != "machine_to_machine_token")
        || reply.token.is_empty()
    {
        return Err(invalid());
    }
    // Absent or null: not given. Anything else must be a time this machine can represent.
    let time = |millis: Option<i64>, name: &str| {
        millis
            .map(|millis| {
                u64::try_from(millis)
                    .ok()
                    .and_then(|millis| UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
                    .ok_or_else(|| format!("a token whose `{name}` is out of range"))
            })
            .transpose()
    };
    Ok(Created {
        created_at: time(reply.created_at, "created_at")?,
        expires_at: time(reply.expiration, "expiration")?,
        token: reply.token,
        id: reply.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Result<Created, String> {
        let resource = serde_json::from_str::<Value>(body).unwrap();
        created(resource.as_object().unwrap().clone())
    }

    #[test]
    fn replies_are_read_strictly() {
        let ok = read(
            r#"{"object":"machine_to_machine_token","id":"mt_1","token":"mt_abc","expiration":1700000060000,"created_at":1700000000000}"#,
        )
        .ok()
        .unwrap();
        assert_eq!((ok.id.as_str(), ok.token.as_str()), ("mt_1", "mt_abc"));
        assert_eq!(
            ok.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_060))
        );
        let no_times = read(r#"{"id":"mt_1","token":"mt_abc","expiration":null}"#)
            .ok()
            .unwrap();
        assert_eq!((no_times.created_at, no_times.expires_at), (None, None));
        for bad in [
            r#"{"object":"machine_to_machine_token","id":"mt_1"}"#,
            r#"{"id":"mt_1","token":"mt_abc","expiration":-1}"#,
            r#"{"id":"mt_1","token":"mt_abc","created_at":-5}"#,
            r#"{"id":"mt_1","token":"mt_abc","expiration":1e300}"#,
            r#"{"object":"jwt_template","id":"mt_1","token":"x"}"#,
            r#"{"object":"machine_to_machine_token","id":"mt_1","token":""}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}

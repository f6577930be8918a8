//! The JSON bodies of the local issuer's HTTP API, sent through its router (`oneshot`) on an
//! in-memory issuer: create token, verify, revoke, create and update a JWT template.
//!
//! Input: byte 0 chooses the route, the rest is the body.
//!
//! Invariants: every answer is JSON with a status of 200, 201, 400, 401, 404, 413 or 422 (never a
//! 500);
//! a body the public request parser refuses gets exactly that parser's error; a created JWT
//! verifies with the issuer's public key and carries the requested claims and lifetime; a
//! created opaque token verifies at the issuer; a revoked token says so with the given reason;
//! a created or updated template gives a session token whose claims hold every template claim.

#![no_main]

use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use http::{Method, Request, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use machine_auth_issuer::{
    CreateTokenRequest, DEFAULT_TOKEN_TTL, Issuer, IssuerConfig, JwtTemplate, M2mToken,
    TemplateFields,
};
use serde_json::{Map, Value, json};
use tower::ServiceExt;
use tower_machine_auth::MachineVerifier;
use tower_machine_auth_fuzz::{FixedClock, NOW_S, OWN_MACHINE_ID, runtime, segment_json, segments};

const MACHINE_KEY: &str = "ak_demo_cron_service_do_not_use_in_production";
const MACHINE_ID: &str = "mch_cron_service";
const INSTANCE_KEY: &str = "sk_test_demo_instance_do_not_use_in_production";
const SESSION: &str = "sess_demo_maria";
/// Calls before the issuer is built anew, which bounds the memory its store takes.
const CALLS_PER_ISSUER: u32 = 2_000;

struct State {
    issuer: Issuer,
    verifier: MachineVerifier,
    calls: u32,
}

fn new_state() -> State {
    let issuer = Issuer::builder(IssuerConfig::demo())
        .clock(FixedClock)
        .build()
        .expect("the demo issuer");
    let verifier = runtime().block_on(async {
        MachineVerifier::builder()
            .pem_key(issuer.public_key_pem().expect("a public key"))
            .own_machine_id(OWN_MACHINE_ID)
            .clock(FixedClock)
            .token_cache(0, Duration::from_secs(1))
            .build()
            .expect("a verifier for the issuer")
    });
    State {
        issuer,
        verifier,
        calls: 0,
    }
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Sends one request and returns the status and the JSON body, checking both.
fn send(issuer: &Issuer, method: Method, path: &str, key: &str, body: Vec<u8>) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a request");
    let response = runtime()
        .block_on(issuer.router().oneshot(request))
        .expect("the router is infallible");
    let status = response.status();
    let bytes = runtime()
        .block_on(response.into_body().collect())
        .expect("a body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("every answer is JSON");
    assert!(
        [200, 201, 400, 401, 404, 413, 422].contains(&status.as_u16()),
        "{path}: status {status}: {body}"
    );
    if status.is_client_error() {
        let error = &body["errors"][0];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{body}"
        );
    }
    (status.as_u16(), body)
}

fn create(state: &State, body: &[u8]) {
    let parsed = CreateTokenRequest::from_json(body);
    let (status, reply) = send(
        &state.issuer,
        Method::POST,
        "/m2m_tokens",
        MACHINE_KEY,
        body.to_vec(),
    );
    let request = match parsed {
        Err(error) => {
            assert_eq!((status, &reply), (error.status(), &error.body()));
            return;
        }
        Ok(request) => request,
    };
    if status != 201 {
        return;
    }
    let token: M2mToken = serde_json::from_value(reply).expect("a token resource");
    assert_eq!(token.subject, MACHINE_ID);
    assert!(!token.revoked && !token.expired);
    let text = token.token.expect("a created token is returned");
    let lifetime = request
        .seconds_until_expiration
        .unwrap_or(DEFAULT_TOKEN_TTL);
    let requested = request.claims.unwrap_or_default();
    if segments(&text).is_some() {
        let machine = runtime()
            .block_on(state.verifier.verify(&text))
            .unwrap_or_else(|error| {
                panic!("an issued JWT is refused: {error:?}; claims {requested:?}")
            });
        assert_eq!(machine.machine_id().as_str(), MACHINE_ID);
        assert_eq!(
            machine.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(NOW_S as u64 + lifetime))
        );
        for (name, value) in &requested {
            assert_eq!(machine.claim(name), Some(value), "claim {name}");
        }
    } else {
        assert!(text.starts_with("mt_"), "an opaque token is mt_…");
        let verify = json!({ "token": text }).to_string().into_bytes();
        let (status, reply) = send(
            &state.issuer,
            Method::POST,
            "/m2m_tokens/verify",
            INSTANCE_KEY,
            verify,
        );
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["id"], json!(token.id));
        if !requested.is_empty() {
            assert_eq!(reply["claims"], Value::Object(requested));
        }
    }
}

fn verify(state: &State, body: &[u8]) {
    send(
        &state.issuer,
        Method::POST,
        "/v1/m2m_tokens/verify",
        MACHINE_KEY,
        body.to_vec(),
    );
}

fn revoke(state: &State, body: &[u8]) {
    let token = state
        .issuer
        .create_token(MACHINE_KEY, CreateTokenRequest::default())
        .expect("an opaque token");
    let path = format!("/m2m_tokens/{}/revoke", token.id);
    let (status, reply) = send(
        &state.issuer,
        Method::POST,
        &path,
        MACHINE_KEY,
        body.to_vec(),
    );
    if status == 200 {
        assert_eq!(reply["revoked"], json!(true));
        assert_eq!(reply["id"], json!(token.id));
        let reason = serde_json::from_slice::<Map<String, Value>>(body)
            .ok()
            .and_then(|body| body.get("revocation_reason").cloned())
            .unwrap_or(Value::Null);
        assert_eq!(reply["revocation_reason"], reason);
    }
}

/// Checks a session token made with the template `id`, then deletes the template.
fn session_token_then_delete(state: &State, template: &JwtTemplate) {
    let path = format!("/v1/sessions/{SESSION}/tokens/{}", template.id);
    let (status, reply) = send(&state.issuer, Method::POST, &path, INSTANCE_KEY, Vec::new());
    assert_eq!(status, 200, "{reply}");
    let jwt = reply["jwt"].as_str().expect("a session token");
    let (_, payload, _) = segments(jwt).expect("a compact JWT");
    let claims = segment_json(payload).expect("a JSON payload");
    for name in template.claims.keys() {
        assert!(claims.get(name).is_some(), "the session token lacks {name}");
    }
    let path = format!("/v1/jwt_templates/{}", template.id);
    let (status, reply) = send(
        &state.issuer,
        Method::DELETE,
        &path,
        INSTANCE_KEY,
        Vec::new(),
    );
    assert_eq!(status, 200, "{reply}");
}

fn create_template(state: &State, body: &[u8]) {
    let parsed = TemplateFields::from_json(body, true);
    let (status, reply) = send(
        &state.issuer,
        Method::POST,
        "/v1/jwt_templates",
        INSTANCE_KEY,
        body.to_vec(),
    );
    if let Err(error) = parsed {
        assert_eq!((status, &reply), (error.status(), &error.body()));
        return;
    }
    if status == 200 {
        let template: JwtTemplate = serde_json::from_value(reply).expect("a template resource");
        session_token_then_delete(state, &template);
    }
}

fn update_template(state: &State, body: &[u8]) {
    let base = json!({"name": "fuzz_base", "claims": {"a": 1}})
        .to_string()
        .into_bytes();
    let (status, reply) = send(
        &state.issuer,
        Method::POST,
        "/v1/jwt_templates",
        INSTANCE_KEY,
        base,
    );
    assert_eq!(status, 200, "{reply}");
    let base: JwtTemplate = serde_json::from_value(reply).expect("a template resource");
    let parsed = TemplateFields::from_json(body, false);
    let path = format!("/v1/jwt_templates/{}", base.id);
    let (status, reply) = send(
        &state.issuer,
        Method::PATCH,
        &path,
        INSTANCE_KEY,
        body.to_vec(),
    );
    if let Err(error) = parsed {
        assert_eq!((status, &reply), (error.status(), &error.body()));
    }
    let template = if status == 200 {
        serde_json::from_value(reply).expect("a template resource")
    } else {
        base
    };
    session_token_then_delete(state, &template);
}

fuzz_target!(|data: &[u8]| {
    let Some((route, body)) = data.split_first() else {
        return;
    };
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if guard
        .as_ref()
        .is_none_or(|state| state.calls >= CALLS_PER_ISSUER)
    {
        *guard = Some(new_state());
    }
    let state = guard.as_mut().expect("a state");
    state.calls += 1;
    let state = &*state;
    match route % 5 {
        0 => create(state, body),
        1 => verify(state, body),
        2 => revoke(state, body),
        3 => create_template(state, body),
        _ => update_template(state, body),
    }
});

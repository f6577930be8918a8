//! JWT templates: every example of Clerk's JWT template documentation verbatim, the template API and session
//! tokens on loopback, machine templates, and properties of rendering.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use machine_auth_issuer::{
    CreateTokenRequest, DEFAULT_CLAIMS, Issuer, IssuerConfig, JwtTemplateConfig, Template,
    TokenFormatParam,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

const INSTANCE_KEY: &str = "sk_test_demo_instance_do_not_use_in_production";

/// The documentation's text, with its `//` comments, read the way `Template::parse` reads template files.
fn documented_json(text: &str) -> Map<String, Value> {
    let mut json = String::new();
    std::io::Read::read_to_string(
        &mut json_comments::StripComments::new(text.as_bytes()),
        &mut json,
    )
    .unwrap();
    serde_json::from_str(&json).unwrap()
}

fn render(template: &str, subject: Value) -> Map<String, Value> {
    let (_, template) = Template::parse(template).unwrap();
    template.render(&subject)
}

/// A template's claims (the rendered claims without the default claims).
fn without_defaults(mut claims: Map<String, Value>) -> Map<String, Value> {
    for claim in DEFAULT_CLAIMS {
        claims.remove(claim);
    }
    claims
}

#[test]
fn documented_basic_template() {
    let template = r#"{
  "aud": "https://example.com",
  "interests": ["hiking", "knitting"],
  "name": "{{user.first_name}}",
  "surname": "{{user.last_name}}",
  "email": "{{user.primary_email_address}}"
}"#;
    let expected = r#"{
  "aud": "https://example.com",
  "interests": ["hiking", "knitting"],
  "name": "John",
  "surname": null,
  "email": "john@doe.org"
  // ...plus some automatically-included claims
  // See the following section section for more information
}"#;
    let john = json!({"user": {"first_name": "John", "last_name": null, "primary_email_address": "john@doe.org"}});
    assert_eq!(render(template, john), documented_json(expected));
}

#[test]
fn documented_metadata_dot_notation() {
    let template = r#"// The template
{
  "likes_to_do": "{{user.public_metadata.interests}}",
  "shipping_address": "{{user.public_metadata.addresses.Home}}"
}"#;
    let expected = r#"// The generated token
{
  "likes_to_do": ["hiking", "knitting"],
  "shipping_address": "2355 Pointe Lane, 56301 Minnesota"
}"#;
    let public_metadata = documented_json(
        r#"{
  "interests": ["hiking", "knitting"],
  "addresses": {
    "Home": "2355 Pointe Lane, 56301 Minnesota",
    "Work": "3759 Newton Street, 33487 Florida"
  }
}"#,
    );
    let user = json!({"user": {"public_metadata": public_metadata}});
    assert_eq!(render(template, user), documented_json(expected));
}

#[test]
fn documented_interpolation_with_a_null() {
    let template = r#"{
  "full_name": "{{user.last_name}} {{user.first_name}}"
}"#;
    // "if the user does not have a last name associated, the above full name value would be null John."
    let claims = render(template, json!({"user": {"first_name": "John"}}));
    assert_eq!(claims["full_name"], "null John");
}

#[test]
fn documented_conditional_expressions() {
    let template = r#"{
  "has_verified_contact_info": "{{user.email_verified || user.phone_number_verified}}",
  // fallback to a string value
  "full_name": "{{user.full_name || 'Awesome User'}}",
  // fallback to a number value
  "age": "{{user.public_metadata.age || user.unsafe_metadata.age || 30 }}"
}"#;
    let expected = r#"{
  "has_verified_contact_info": true,
  "full_name": "Awesome User",
  "age": 30
}"#;
    // Phone verified, email not, no first or last name, no public or unsafe metadata.
    let user = json!({"user": {
        "email_verified": false, "phone_number_verified": true,
        "first_name": null, "last_name": null, "full_name": null,
        "public_metadata": {}, "unsafe_metadata": {}
    }});
    assert_eq!(render(template, user), documented_json(expected));
}

const COMPLETE_TEMPLATE: &str = r#"{
  // static values
  "aud": "https://my-site.com",
  "version": 1,
  "foo": { "bar": [1, 2, 3] },
  // dynamic values
  "user_id": "{{user.id}}",
  "avatar": "{{user.image_url}}",
  "full_name": "{{user.last_name}} {{user.first_name}} ",
  "email": "{{user.primary_email_address}}",
  "phone": "{{user.primary_phone_address}}",
  "registration_date": "{{user.created_at}}",
  "likes_to_do": "{{user.public_metadata.profile.interests}}",
  "unsafe_meta": "{{user.unsafe_metadata}}",
  "invalid_shortcode": "{{user.i_dont_exist}}"
}"#;

const COMPLETE_OUTPUT: &str = r#"{
  "aud": "https://my-site.com",
  "version": 1,
  "foo": { "bar": [1, 2, 3] },
  "user_id": "user_abcdef123456789",
  "avatar": "https://example.com/avatar.jpg",
  "full_name": "Doe Maria",
  "email": "maria@example.com",
  "phone": null,
  "registration_date": 1227618844,
  "likes_to_do": ["reading", "climbing"],
  "unsafe_meta": {
    "foo": {
      "bar": 42
    }
  },
  "invalid_shortcode": null,
  // default claims, included automatically
  "azp": "http://localhost:3000",
  "exp": 1639398300,
  "iat": 1639398272,
  "iss": "https://clean-mayfly-62.clerk.accounts.dev",
  "jti": "10db7f531a90cb2faea4",
  "nbf": 1639398220,
  "sub": "user_1deJLArSTiWiF1YdsEWysnhJLLY"
}"#;

/// Serves an issuer on loopback with its URL as `iss`.
async fn start(config: IssuerConfig) -> (Issuer, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let issuer = Issuer::builder(config).issuer_url(&url).build().unwrap();
    let router = issuer.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (issuer, url)
}

async fn post(url: &str, key: &str, body: Option<Value>, origin: Option<&str>) -> (u16, Value) {
    request("POST", url, key, body, origin).await
}

async fn request(
    method: &str,
    url: &str,
    key: &str,
    body: Option<Value>,
    origin: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .bearer_auth(key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// Verifies a token's signature with the issuer's JWKS (any claims), and returns its claims.
fn verify_with_jwks(jwt: &str, jwks: &Value) -> Value {
    let header = decode_segment(jwt.split('.').next().unwrap());
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .expect("the token's kid is in the JWKS");
    let key =
        jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn documented_complete_example_through_the_session_endpoint() {
    let (issuer, url) = start(IssuerConfig::demo()).await;
    // The demo's template is the documentation's complete example, verbatim.
    assert_eq!(
        Template::parse(COMPLETE_TEMPLATE).unwrap().0,
        issuer
            .template(INSTANCE_KEY, "complete_example")
            .unwrap()
            .claims
    );

    let (status, body) = post(
        &format!("{url}/v1/sessions/sess_demo_maria/tokens/complete_example"),
        INSTANCE_KEY,
        None,
        Some("http://localhost:3000"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "token");
    let jwt = body["jwt"].as_str().unwrap();
    let header = decode_segment(jwt.split('.').next().unwrap());
    assert_eq!(header["cat"], "cl_B7d4PD222AAA");
    let claims = verify_with_jwks(jwt, &issuer.jwks());
    let Value::Object(claims) = claims else {
        panic!()
    };

    let expected = documented_json(COMPLETE_OUTPUT);
    assert_eq!(
        without_defaults(claims.clone()),
        without_defaults(expected.clone())
    );
    // The default claims: every one present, with this issuer's values.
    for claim in DEFAULT_CLAIMS {
        assert!(claims.contains_key(claim), "{claim} missing");
    }
    assert_eq!(claims["azp"], "http://localhost:3000");
    assert_eq!(claims["iss"], url);
    assert_eq!(claims["sub"], "user_abcdef123456789");
    let (exp, iat, nbf) = (
        claims["exp"].as_i64().unwrap(),
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
    );
    assert_eq!(
        (exp - iat, iat - nbf),
        (60, 5),
        "default lifetime 60 s, skew 5 s"
    );
    assert_eq!(claims["jti"].as_str().unwrap().len(), 20);

    // A machine-only layer refuses a user's template token.
    let verifier = MachineVerifier::builder()
        .clerk_secret_key(INSTANCE_KEY)
        .clerk_api_url(&url)
        .build()
        .unwrap();
    let reply = send_bearer(&app(MachineAuthLayer::new(verifier)), "/whoami", jwt).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(
        ["token-invalid", "token-type-mismatch"].contains(&reply.reason()),
        "{reply:?}"
    );
}

#[tokio::test]
async fn the_template_api() {
    let (issuer, url) = start(IssuerConfig::demo()).await;
    let templates = format!("{url}/v1/jwt_templates");
    let template =
        json!({"email": "{{user.primary_email_address}}", "org": "{{org.name || 'none'}}"});
    let (status, created) = post(
        &templates,
        INSTANCE_KEY,
        Some(json!({"name": "api", "claims": template, "lifetime": 120, "allowed_clock_skew": 10})),
        None,
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["object"], "jwt_template");
    assert!(created["id"].as_str().unwrap().starts_with("jtmp_"));
    assert_eq!(
        (
            created["name"].as_str(),
            created["lifetime"].as_u64(),
            created["allowed_clock_skew"].as_u64()
        ),
        (Some("api"), Some(120), Some(10))
    );
    assert_eq!(created["claims"], template);
    assert_eq!(
        (
            created["custom_signing_key"].as_bool(),
            created["signing_algorithm"].as_str()
        ),
        (Some(false), Some("RS256"))
    );
    let id = created["id"].as_str().unwrap().to_owned();

    for (body, param, words) in [
        (
            json!({"name": "api", "claims": {}}),
            "name",
            "exists already",
        ),
        (
            json!({"name": "x", "claims": {"a": {"b": "{{user.id"}}}),
            "claims",
            "claim `a.b`: unclosed shortcode",
        ),
        (
            json!({"name": "x", "claims": {"sub": "x"}}),
            "claims",
            "claim `sub`",
        ),
        (
            json!({"name": "x", "claims": {"sid": "x"}}),
            "claims",
            "session-bound",
        ),
        (
            json!({"name": "x", "claims": {"a": "{{account.id}}"}}),
            "claims",
            "unknown root object",
        ),
        (
            json!({"name": "x", "claims": {}, "lifetime": 29}),
            "lifetime",
            "between 30",
        ),
        (
            json!({"name": "x", "claims": {}, "allowed_clock_skew": 301}),
            "allowed_clock_skew",
            "between 0 and 300",
        ),
        (json!({"claims": {}}), "name", "required"),
        (
            json!({"name": "x", "claims": {}, "signing_key": "PEM"}),
            "signing_key",
            "own key",
        ),
        (
            json!({"name": "x", "claims": {}, "colour": 1}),
            "colour",
            "not a parameter",
        ),
    ] {
        let (status, error) = post(&templates, INSTANCE_KEY, Some(body.clone()), None).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            error["errors"][0]["meta"]["param_name"], param,
            "{body}: {error}"
        );
        assert!(
            error["errors"][0]["long_message"]
                .as_str()
                .unwrap()
                .contains(words),
            "{body}: {error}"
        );
    }

    let (_, list) = request("GET", &templates, INSTANCE_KEY, None, None).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["complete_example", "api"]);
    let (status, one) = request(
        "GET",
        &format!("{templates}/{id}"),
        INSTANCE_KEY,
        None,
        None,
    )
    .await;
    assert_eq!((status, one["name"].as_str()), (200, Some("api")));

    let (status, patched) = request(
        "PATCH",
        &format!("{templates}/{id}"),
        INSTANCE_KEY,
        Some(json!({"lifetime": 300, "claims": {"mail": "{{user.primary_email_address}}"}})),
        None,
    )
    .await;
    assert_eq!(
        (status, patched["lifetime"].as_u64()),
        (200, Some(300)),
        "{patched}"
    );
    assert_eq!(
        patched["claims"],
        json!({"mail": "{{user.primary_email_address}}"})
    );
    let (_, token) = post(
        &format!("{url}/v1/sessions/sess_demo_maria/tokens/api"),
        INSTANCE_KEY,
        None,
        None,
    )
    .await;
    let claims = verify_with_jwks(token["jwt"].as_str().unwrap(), &issuer.jwks());
    assert_eq!(claims["mail"], "maria@example.com");
    assert!(claims.get("azp").is_none(), "no Origin, no azp");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );

    let (status, deleted) = request(
        "DELETE",
        &format!("{templates}/{id}"),
        INSTANCE_KEY,
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, deleted),
        (
            200,
            json!({"object": "jwt_template", "id": id, "deleted": true})
        )
    );
    assert_eq!(
        request(
            "GET",
            &format!("{templates}/{id}"),
            INSTANCE_KEY,
            None,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        post(
            &format!("{url}/v1/sessions/sess_demo_maria/tokens/api"),
            INSTANCE_KEY,
            None,
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        post(
            &format!("{url}/v1/sessions/sess_nobody/tokens/complete_example"),
            INSTANCE_KEY,
            None,
            None
        )
        .await
        .0,
        404
    );
    let machine_key = "ak_demo_cron_service_do_not_use_in_production";
    assert_eq!(
        request("GET", &templates, machine_key, None, None).await.0,
        401
    );
    assert_eq!(
        post(
            &format!("{url}/v1/sessions/sess_demo_maria/tokens/complete_example"),
            machine_key,
            None,
            None
        )
        .await
        .0,
        401
    );
}

/// Templates past the nesting or size bounds are refused by the API with 422, naming the claims
/// and the bound.
#[tokio::test]
async fn the_template_api_refuses_templates_past_the_bounds() {
    let (_issuer, url) = start(IssuerConfig::demo()).await;
    let templates = format!("{url}/v1/jwt_templates");
    let mut deep = json!("{{user.id}}");
    for _ in 0..40 {
        deep = json!({ "a": deep });
    }
    let large = json!({"pad": "x".repeat(70_000)});
    for (claims, bound) in [(deep, "nested deeper than 32 levels"), (large, "64 KiB")] {
        let (status, body) = post(
            &templates,
            INSTANCE_KEY,
            Some(json!({"name": "too_much", "claims": claims})),
            None,
        )
        .await;
        assert_eq!(status, 422, "{body}");
        let error = &body["errors"][0];
        assert_eq!(error["code"], "form_param_value_invalid", "{body}");
        assert_eq!(error["meta"]["param_name"], "claims", "{body}");
        assert!(
            error["long_message"].as_str().unwrap().contains(bound),
            "{body}"
        );
    }
}

#[tokio::test]
async fn templates_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("machine-auth-templates-{}", opaque_token()));
    {
        let issuer = Issuer::builder(IssuerConfig::demo())
            .data_dir(&dir)
            .build()
            .unwrap();
        let fields = machine_auth_issuer::TemplateFields::from_json(
            br#"{"name":"kept","claims":{"a":"{{user.id}}"}}"#,
            true,
        )
        .unwrap();
        issuer.create_template(INSTANCE_KEY, fields).unwrap();
    }
    let issuer = Issuer::builder(IssuerConfig::demo())
        .data_dir(&dir)
        .build()
        .unwrap();
    let names: Vec<String> = issuer
        .templates(INSTANCE_KEY)
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["complete_example", "kept"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_machine_template_fills_its_tokens_and_the_defaults_still_win() {
    let mut config = IssuerConfig::demo();
    config.jwt_templates.push(JwtTemplateConfig {
        name: "machine".to_owned(),
        claims: json!({
            "service": "{{machine.name}}", "id": "{{machine.id}}", "targets": "{{machine.scopes}}",
            "scopes": "everything", "team": "infra"
        })
        .as_object()
        .unwrap()
        .clone(),
        lifetime: 60,
        allowed_clock_skew: 5,
    });
    config.machines[0].template = Some("machine".to_owned());
    let issuer = Issuer::builder(config).build().unwrap();
    let key = "ak_demo_cron_service_do_not_use_in_production";
    let jwt = issuer
        .create_token(
            key,
            CreateTokenRequest {
                token_format: Some(TokenFormatParam::Jwt),
                claims: Some(json!({"team": "billing"}).as_object().unwrap().clone()),
                ..Default::default()
            },
        )
        .unwrap();
    let claims = decode_segment(jwt.token.as_deref().unwrap().split('.').nth(1).unwrap());
    assert_eq!(claims["service"], "Cron service");
    assert_eq!(claims["id"], "mch_cron_service");
    assert_eq!(claims["targets"], json!(["mch_reports_api"]));
    assert_eq!(
        claims["team"], "billing",
        "the request's claims override the template's"
    );
    assert_eq!(
        claims["scopes"], "mch_reports_api",
        "the M2M default claims win"
    );
    assert_eq!(claims["sub"], "mch_cron_service");
    // An opaque token carries the same claims in its resource.
    let opaque = issuer
        .create_token(key, CreateTokenRequest::default())
        .unwrap();
    assert_eq!(opaque.claims.unwrap()["service"], "Cron service");
    // And the layer still accepts the JWT.
    let verifier = MachineVerifier::from_pem(&issuer.public_key_pem().unwrap()).unwrap();
    let machine = verifier
        .verify(jwt.token.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(machine.claim("service"), Some(&json!("Cron service")));
}

#[test]
fn a_machine_template_must_exist() {
    let mut config = IssuerConfig::demo();
    config.machines[0].template = Some("missing".to_owned());
    let error = Issuer::builder(config).build().unwrap_err().to_string();
    assert!(error.contains("machines[0].template"), "{error}");
}

/// JSON values whose strings mix text with template syntax, valid or not.
fn template_value() -> impl Strategy<Value = Value> {
    let fragment = prop_oneof![
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("||".to_owned()),
        Just("'".to_owned()),
        Just("user.".to_owned()),
        Just("org.name".to_owned()),
        Just("user.public_metadata.a.0".to_owned()),
        Just(" ".to_owned()),
        "[a-z0-9_.\\\\-]{0,6}",
        "\\PC{0,3}",
    ];
    let text = proptest::collection::vec(fragment, 0..8).prop_map(|parts| parts.concat());
    let leaf = prop_oneof![
        text.prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// JSON values whose strings hold valid shortcodes (paths likely to exist in `subject_value`'s
/// subjects, and conditionals with literals) among text.
fn compiling_template_value() -> impl Strategy<Value = Value> {
    let path = (
        proptest::sample::select(vec!["user", "org", "organization", "session", "machine"]),
        proptest::collection::vec("[a-z0-9_]{1,2}", 0..3),
    )
        .prop_map(|(root, segments)| {
            std::iter::once(root.to_owned())
                .chain(segments)
                .collect::<Vec<_>>()
                .join(".")
        });
    let operand = prop_oneof![
        3 => path,
        1 => Just("'it\\'s'".to_owned()),
        1 => any::<i32>().prop_map(|n| n.to_string()),
        1 => Just("2.5".to_owned()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
    ];
    let shortcode = proptest::collection::vec(operand, 1..4)
        .prop_map(|operands| format!("{{{{ {} }}}}", operands.join(" || ")));
    let piece = prop_oneof![shortcode, "[a-z \"\\\\]{0,3}", "\\PC{0,2}"];
    let text = proptest::collection::vec(piece, 1..4).prop_map(|parts| parts.concat());
    let leaf = prop_oneof![
        4 => text.prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn subject_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "\\PC{0,6}".prop_map(Value::String),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z0-9_]{1,4}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map(
        prop_oneof![
            Just("user".to_owned()),
            Just("org".to_owned()),
            "[a-z]{1,5}"
        ],
        value,
        0..4,
    )
    .prop_map(|map| Value::Object(map.into_iter().collect()))
}

fn claims_of(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => Map::from_iter([("claim".to_owned(), other)]),
    }
}

/// Equal JSON values, except that a float may come back one unit in the last place away:
/// serde_json, without its `float_roundtrip` feature, reads some floats to the nearest but one.
fn same_json(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) if a.is_f64() && b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            a.to_bits().abs_diff(b.to_bits()) <= 1
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| same_json(a, b)))
        }
        _ => left == right,
    }
}

fn has_shortcode(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains("{{"),
        Value::Array(items) => items.iter().any(has_shortcode),
        Value::Object(map) => map.values().any(has_shortcode),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn rendering_never_panics(template in template_value(), subject in subject_value()) {
        if let Ok(template) = Template::compile(&claims_of(template)) {
            let _ = template.render(&subject);
        }
    }

    #[test]
    fn a_template_without_shortcodes_renders_to_itself_plus_the_default_claims(template in template_value(), subject in subject_value()) {
        let claims = claims_of(template);
        prop_assume!(!has_shortcode(&Value::Object(claims.clone())));
        prop_assume!(DEFAULT_CLAIMS.iter().chain(&machine_auth_issuer::SESSION_BOUND_CLAIMS).all(|c| !claims.contains_key(*c)));
        let template = Template::compile(&claims).unwrap();
        let issuer = issuer();
        let rendered = issuer.template_claims(&template, &subject, "user_1", 60, 5, Some("https://app.example")).unwrap();
        prop_assert_eq!(without_defaults(rendered.clone()), claims);
        prop_assert_eq!(rendered.len(), without_defaults(rendered.clone()).len() + DEFAULT_CLAIMS.len());
    }

    #[test]
    fn rendering_gives_json_that_serializes_and_parses_back_equal(template in prop_oneof![template_value(), compiling_template_value()], subject in subject_value()) {
        let claims = claims_of(template);
        let compiled = Template::compile(&claims);
        if compiled.is_err() {
            prop_assert!(has_shortcode(&Value::Object(claims.clone())) || claims.keys().any(|claim| DEFAULT_CLAIMS.contains(&claim.as_str()) || machine_auth_issuer::SESSION_BOUND_CLAIMS.contains(&claim.as_str())));
        }
        if let Ok(template) = compiled {
            let rendered = Value::Object(template.render(&subject));
            let text = serde_json::to_string(&rendered).unwrap();
            let parsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(same_json(&parsed, &rendered), "{} != {}", parsed, rendered);
            let issuer = issuer();
            let claims = Value::Object(issuer.template_claims(&template, &subject, "user_1", 60, 5, None).unwrap());
            let text = serde_json::to_vec(&claims).unwrap();
            prop_assert!(same_json(&serde_json::from_slice(&text).unwrap(), &claims));
        }
    }

    #[test]
    fn default_claims_can_never_be_overridden(template in template_value(), claim in proptest::sample::select(DEFAULT_CLAIMS.to_vec()), value in template_value()) {
        let mut claims = claims_of(template);
        claims.insert(claim.to_owned(), value);
        let error = Template::compile(&claims).unwrap_err();
        // Either that claim is refused, or an earlier syntax error is reported; never accepted.
        prop_assert!(!error.to_string().is_empty());
    }
}

fn issuer() -> &'static Issuer {
    static ISSUER: std::sync::OnceLock<Issuer> = std::sync::OnceLock::new();
    ISSUER.get_or_init(|| Issuer::builder(IssuerConfig::demo()).build().unwrap())
}

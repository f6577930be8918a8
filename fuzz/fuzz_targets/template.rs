//! JWT templates: `Template::parse` (JSON with comments) then `render` for fixed subjects.
//!
//! Invariants: a compiled template has no default or session-bound claim; compiling its claims
//! again gives the same template; rendering gives exactly its claim names, as JSON that
//! `serde_json` writes and reads back unchanged; a claim with no `{{` anywhere renders as
//! written.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use machine_auth_issuer::{DEFAULT_CLAIMS, IssuerConfig, SESSION_BOUND_CLAIMS, Template};
use serde_json::{Value, json};

/// The demo user's session (as the issuer builds it), a machine, and odd subjects.
static SUBJECTS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let demo = IssuerConfig::demo();
    let machine = &demo.machines[0];
    vec![
        json!({
            "user": demo.users[0],
            "org": {"id": "org_1", "name": "Acme", "slug": "acme", "public_metadata": {"tier": [1, "gold", null]}},
            "membership": {"role": "admin", "permissions": ["org:read", "org:write"]},
            "session": {"id": demo.sessions[0].id, "actor": null},
        }),
        json!({"machine": {"id": machine.id, "name": machine.name, "scopes": machine.scopes}}),
        json!({}),
        json!({"user": null, "org": [1, 2], "session": "s", "machine": {"": {"": 0.5}}}),
    ]
});

fn has_shortcode(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains("{{"),
        Value::Array(items) => items.iter().any(has_shortcode),
        Value::Object(members) => members.values().any(has_shortcode),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((claims, template)) = Template::parse(text) else {
        return;
    };
    for name in claims.keys() {
        assert!(
            !DEFAULT_CLAIMS.contains(&name.as_str()),
            "kept the default claim {name}"
        );
        assert!(
            !SESSION_BOUND_CLAIMS.contains(&name.as_str()),
            "kept {name}"
        );
    }
    assert_eq!(Template::compile(&claims).ok(), Some(template.clone()));
    for subject in SUBJECTS.iter() {
        let rendered = template.render(subject);
        assert!(
            rendered.keys().eq(claims.keys()),
            "rendering changed the claim names"
        );
        let written = serde_json::to_string(&rendered).expect("rendered claims serialise");
        let read: Value = serde_json::from_str(&written).expect("rendered claims are JSON");
        assert_eq!(
            read,
            Value::Object(rendered.clone()),
            "rendered JSON reads back changed"
        );
        for (name, value) in &claims {
            if !has_shortcode(value) {
                assert_eq!(&rendered[name], value, "the static claim {name} changed");
            }
        }
    }
});

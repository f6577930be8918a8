//! A token sent twice, once in the header and once in the query string (RFC 6750 §2.3), however
//! the query spells the parameter's name. Real layer, real keys.

use crate::common::*;
use tower_machine_auth::MachineAuthLayer;

#[tokio::test]
async fn an_access_token_query_parameter_is_found_whatever_its_encoding() {
    let app = app(MachineAuthLayer::new(pem_verifier()));
    let jwt = TestKey::shared_rsa().token("k", &claims());
    for query in [
        "access_token=x",
        "a=1&access_token=x",
        "access%5Ftoken=x",
        "access%5ftoken=x",
        "%61ccess_token=x",
        "%61%63%63%65%73%73%5F%74%6F%6B%65%6E=x",
        "a=1&access%5Ftoken",
        "access_token",
    ] {
        send_bearer(&app, &format!("/cron/run?{query}"), &jwt)
            .await
            .assert_rejected(400, "malformed-request", Some(&jwt));
    }
    for query in [
        "my_access_token=x",
        "access_tokens=x",
        "access+token=x",
        "access%20token=x",
        "x=access_token",
        "a=access%5Ftoken",
    ] {
        send_bearer(&app, &format!("/cron/run?{query}"), &jwt)
            .await
            .assert_ok();
    }
}

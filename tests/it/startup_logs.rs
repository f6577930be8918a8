//! What a verifier says once when it is built: that tokens of every machine are accepted (no own
//! machine id), and that opaque tokens will be refused (no secret key).

use crate::common::*;
use tower_machine_auth::MachineVerifier;

const EVERY_MACHINE: &str = "tokens of every machine of the instance are accepted";
const OPAQUE_REFUSED: &str = "opaque machine tokens (mt_…) are refused";

#[tokio::test(flavor = "current_thread")]
async fn a_verifier_says_once_at_startup_what_it_will_accept() {
    let pem = TestKey::shared_rsa().public_pem();

    let captured = CapturedLogs::start();
    let verifier = MachineVerifier::builder().pem_key(&pem).build().unwrap();
    verifier.verify(&opaque_token()).await.unwrap_err();
    verifier.verify(&opaque_token()).await.unwrap_err();
    let logs = captured.text();
    assert_eq!(logs.matches(EVERY_MACHINE).count(), 1, "{logs}");
    assert_eq!(logs.matches(OPAQUE_REFUSED).count(), 1, "{logs}");
    assert!(logs.contains("CLERK_MACHINE_ID"), "{logs}");
    drop(captured);

    let captured = CapturedLogs::start();
    let _verifier = MachineVerifier::builder()
        .pem_key(&pem)
        .own_machine_id("mch_reports_api")
        .clerk_machine_secret_key("ak_test_reports_api")
        .build()
        .unwrap();
    let logs = captured.text();
    assert!(!logs.contains(EVERY_MACHINE), "{logs}");
    assert!(!logs.contains(OPAQUE_REFUSED), "{logs}");
    drop(captured);

    // A publishable key alone verifies JWTs only.
    let server = JwksServer::start(JwksReply::Status(503)).await;
    let captured = CapturedLogs::start();
    let _verifier = MachineVerifier::builder()
        .clerk_publishable_key(format!(
            "pk_test_{}",
            b64(format!("{}$", server.addr).as_bytes())
        ))
        .own_machine_id("mch_reports_api")
        .build()
        .unwrap();
    let logs = captured.text();
    assert_eq!(logs.matches(OPAQUE_REFUSED).count(), 1, "{logs}");
    assert!(!logs.contains(EVERY_MACHINE), "{logs}");
}

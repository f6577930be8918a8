//! The issuer's signing keys: generation, PEM, public JWKs with stable `kid`s, signing.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};

use super::SigningAlgorithm;
use super::error::IssuerError;
use super::redact::Redacted;

/// A private signing key, its public JWK, and its `kid`. `Debug` shows `[redacted]` in place of
/// the private key.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) algorithm: SigningAlgorithm,
    /// PKCS#8 PEM, as persisted.
    pub(crate) private_pem: String,
    pub(crate) public_jwk: Value,
    /// The SPKI public key, PEM.
    pub(crate) public_pem: String,
    encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_pem", &Redacted)
            .field("public_jwk", &self.public_jwk)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key.
    pub(crate) fn generate(algorithm: SigningAlgorithm) -> Result<Self, IssuerError> {
        let failed = |_| IssuerError::internal("cannot generate a signing key");
        let pkcs8 = match algorithm {
            SigningAlgorithm::RS256 => {
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(failed)?
                    .as_der()
                    .map_err(failed)?
                    .as_ref()
                    .to_vec()
            }
            SigningAlgorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(failed)?
                .to_pkcs8v1()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            SigningAlgorithm::EdDSA => Ed25519KeyPair::generate()
                .map_err(failed)?
                .to_pkcs8v1()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
        };
        Self::from_pem(
            algorithm,
            &pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8)),
        )
    }

    /// A key from its PKCS#8 PEM.
    pub(crate) fn from_pem(
        algorithm: SigningAlgorithm,
        private_pem: &str,
    ) -> Result<Self, IssuerError> {
        let unreadable = || IssuerError::internal("a stored signing key cannot be read");
        let der = pem::parse(private_pem)
            .map_err(|_| unreadable())?
            .into_contents();
        let spki = |der: Result<aws_lc_rs::encoding::PublicKeyX509Der<'static>, _>| {
            der.map(|der| der.as_ref().to_vec())
                .map_err(|_| unreadable())
        };
        let (public_jwk, public_der) = match algorithm {
            SigningAlgorithm::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|_| unreadable())?;
                let components =
                    aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                let jwk = json!({"e": b64(&components.e), "kty": "RSA", "n": b64(&components.n)});
                (jwk, spki(pair.public_key().as_der())?)
            }
            SigningAlgorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| unreadable())?;
                let point = pair.public_key().as_ref();
                let jwk = json!({"crv": "P-256", "kty": "EC", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
                (jwk, spki(pair.public_key().as_der())?)
            }
            SigningAlgorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| unreadable())?;
                let jwk =
                    json!({"crv": "Ed25519", "kty": "OKP", "x": b64(pair.public_key().as_ref())});
                (jwk, spki(pair.public_key().as_der())?)
            }
        };
        let encoding = match algorithm {
            SigningAlgorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
            SigningAlgorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
            SigningAlgorithm::EdDSA => EncodingKey::from_ed_pem(private_pem.as_bytes()),
        }
        .map_err(|_| unreadable())?;
        let kid = kid(&public_jwk);
        let mut public_jwk = public_jwk;
        public_jwk["kid"] = json!(kid);
        public_jwk["alg"] = json!(algorithm.as_str());
        public_jwk["use"] = json!("sig");
        Ok(Self {
            kid,
            algorithm,
            private_pem: private_pem.to_owned(),
            public_jwk,
            public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public_der)),
            encoding,
        })
    }

    /// Signs `claims` with Clerk's header: `{alg, kid, typ: "JWT", cat: <category>}`.
    pub(crate) fn sign<C: Serialize>(
        &self,
        claims: &C,
        category: &str,
    ) -> Result<String, IssuerError> {
        let mut header = Header::new(self.algorithm.jwt_algorithm());
        header.kid = Some(self.kid.clone());
        header.extras.insert("cat", category);
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|_| IssuerError::internal("cannot sign the token"))
    }
}

/// `ins_` and the first 27 characters of the key's RFC 7638 thumbprint: stable for a key, and
/// shaped like Clerk's instance ids.
fn kid(required_members: &Value) -> String {
    // `json!` objects keep their keys sorted, and the members above are the required ones.
    let thumbprint = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        required_members.to_string().as_bytes(),
    );
    format!("ins_{}", &b64(thumbprint.as_ref())[..27])
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_with_a_stable_kid() {
        for algorithm in [
            SigningAlgorithm::RS256,
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
        ] {
            let key = SigningKey::generate(algorithm).unwrap();
            let again = SigningKey::from_pem(algorithm, &key.private_pem).unwrap();
            assert_eq!(key.kid, again.kid);
            assert_eq!(key.public_jwk, again.public_jwk);
            assert!(key.kid.starts_with("ins_") && key.kid.len() == 31);
            assert_eq!(key.public_jwk["alg"], algorithm.as_str());
        }
    }

    #[test]
    fn debug_does_not_show_the_private_key() {
        let key = SigningKey::generate(SigningAlgorithm::EdDSA).unwrap();
        let body: String = key
            .private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for printed in [format!("{key:?}"), format!("{key:#?}")] {
            assert!(
                !printed.contains(&body) && !printed.contains("PRIVATE"),
                "{printed}"
            );
            assert!(printed.contains("[redacted]") && printed.contains(&key.kid));
        }
    }

    #[test]
    fn rfc7638_thumbprint_of_the_rfc_example() {
        // RFC 7638 §3.1: the thumbprint of this key is NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.
        let jwk = json!({
            "e": "AQAB", "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        let thumbprint =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwk.to_string().as_bytes());
        assert_eq!(
            b64(thumbprint.as_ref()),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}

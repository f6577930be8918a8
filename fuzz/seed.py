#!/usr/bin/env python3
"""Writes the committed seed corpora: fuzz/corpus/<target>/seed-<name>.

Sources: the test suite's keys (tests/data), bodies and tokens shaped like the test suite's, and a
few public vectors (Wycheproof JWS/JWK and the RFC 7520 cookbook) read from the vectors folder
(../shared/vectors from the project root, or $VECTORS). Tokens are signed with the test suite's RSA
key by `openssl`, and are valid at the fuzz targets' fixed clock (2026-01-01T00:00:00Z).

Usage: fuzz/seed.py            (from anywhere; rewrites every seed-* file, keeps other files)
"""

import base64
import json
import os
import pathlib
import subprocess
import sys
import tempfile

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
VECTORS = pathlib.Path(os.environ.get("VECTORS", ROOT.parent / "shared" / "vectors"))
DATA = ROOT / "tests" / "data"
NOW = 1_767_225_600
OWN = "mch_reports_api"
M2M_CAT = "cl_B7d4PD333AAA"
# Seeds larger than this are left out, to keep each target's corpus to a few KB.
MAX_SEED = 2048


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def sign(alg: str, message: bytes) -> bytes:
    """Signs with the test suite's RSA key (RS256, PS256 or RS512)."""
    digest = {"RS256": "-sha256", "PS256": "-sha256", "RS512": "-sha512"}[alg]
    options = []
    if alg.startswith("PS"):
        options = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]
    with tempfile.NamedTemporaryFile() as file:
        file.write(message)
        file.flush()
        return subprocess.run(
            ["openssl", "dgst", digest, "-sign", str(DATA / "rsa_private.pem"), *options, file.name],
            check=True,
            capture_output=True,
        ).stdout


def token(header, claims, alg="RS256") -> str:
    signing_input = f"{b64(compact(header))}.{b64(compact(claims))}"
    return f"{signing_input}.{b64(sign(alg, signing_input.encode()))}"


def claims(**extra):
    value = {"sub": "mch_cron_service", "exp": NOW + 3600, "iat": NOW, "nbf": NOW,
             "jti": "mt_0123456789abcdef", "iss": "http://127.0.0.1", "scopes": OWN}
    value.update(extra)
    return {k: v for k, v in value.items() if v is not None}


def header(alg="RS256", **extra):
    value = {"alg": alg, "typ": "JWT", "cat": M2M_CAT, "kid": "ins_test"}
    value.update(extra)
    return {k: v for k, v in value.items() if v is not None}


def vectors(path):
    full = VECTORS / path
    if not full.exists():
        print(f"skipped {path}: {VECTORS} is absent", file=sys.stderr)
        return None
    return json.loads(full.read_text())


def wycheproof_tokens(groups, count):
    """A few compact tokens per JWS test group."""
    data = vectors("wycheproof/json_web_signature_test.json")
    found = {}
    if data:
        for group in data["testGroups"]:
            if group["comment"] in groups:
                for test in group["tests"][:count]:
                    if "." in test["jws"] and not test["jws"].startswith("{"):
                        found[f"wycheproof-{test['tcId']}"] = test["jws"].encode()
    return found


def seeds():
    valid = token(header(), claims())
    rs = {}

    rs["credential"] = {
        "valid-jwt": f"Bearer {valid}".encode(),
        "opaque": b"Bearer mt_0123456789abcdef0123456789abcdef",
        "lowercase-spaces": b"bearer    ak_machine_secret",
        "padding": b"BEARER abc~+/.-_==",
        "basic": b"Basic dXNlcjpwYXNz",
        "tab": b"Bearer\tmt_1",
        "two-headers": b"Bearer mt_1\nBearer mt_2",
        "empty": b"Bearer ",
        "jwt-shaped-wrong": b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJtY2hfYSJ9.x",
    }

    rs["jwt"] = {
        "valid-rs256": valid.encode(),
        "valid-ps256": token(header("PS256"), claims(), "PS256").encode(),
        "rs512-not-allowed": token(header("RS512"), claims(), "RS512").encode(),
        "expired": token(header(), claims(exp=NOW - 60, iat=NOW - 120, nbf=None)).encode(),
        "other-receiver": token(header(), claims(scopes="mch_billing")).encode(),
        "audience-scopes": token(header(), claims(scopes=None, aud=[OWN])).encode(),
        "session-token": token(header(cat="cl_B7d4PD111AAA"), claims(sub="user_1", sid="sess_1")).encode(),
        "alg-none": f"{b64(compact({'alg': 'none'}))}.{b64(compact(claims()))}.".encode(),
    }
    rs["jwt"].update(wycheproof_tokens({"rs256", "ps256", "es256", "hs256"}, 1))
    for name in ["4_1.rsa_v15_signature", "4_2.rsa-pss_signature"]:
        data = vectors(f"jose-cookbook/jws/{name}.json")
        if data:
            rs["jwt"][f"rfc7520-{name.split('.')[0]}"] = data["output"]["compact"].encode()

    # jwt_signed: [signer, tamper, mode] then header NUL claims (raw mode, mode even).
    def raw(signer, tamper, h, c):
        return bytes([signer, tamper, 0]) + compact(h) + b"\0" + compact(c)

    rs["jwt_signed"] = {
        "raw-valid-rs256": raw(0, 0, header(), claims()),
        "raw-valid-ps256": raw(1, 0, header("PS256"), claims()),
        "raw-alg-mismatch": raw(0, 0, header("PS256"), claims()),
        "raw-crit": raw(0, 0, header(crit=["exp"]), claims()),
        "raw-typ-at-jwt": raw(0, 0, header(typ="at+jwt"), claims()),
        "raw-exp-float": raw(0, 0, header(), claims(exp=NOW + 0.5)),
        "raw-null-claims": raw(0, 0, header(), claims(iat=None, nbf=None, jti=None, aud=None)),
        "raw-tampered": raw(0, 2, header(), claims()),
        "raw-es256-key": raw(4, 0, header("ES256"), claims()),
        "generated-zeros": bytes([0, 0, 1]) + bytes(64),
        "generated-mixed": bytes([0, 0, 1]) + bytes(range(1, 120)),
    }

    our_jwk = rsa_jwk(DATA / "rsa_public.pem")
    jwks = {
        "ours": {"keys": [dict(our_jwk, kid="ins_test", use="sig", alg="RS256")]},
        "ours-and-private": {"keys": [dict(our_jwk, kid="a"), dict(our_jwk, kid="b", d="AQAB")]},
        "duplicate-kid": {"keys": [dict(our_jwk, kid="a"), dict(our_jwk, kid="a", alg="PS256")]},
        "oct-and-unknown": {"keys": [{"kty": "oct", "kid": "h", "k": "AAAA"}, {"kty": "X", "kid": "x"}, 5]},
    }
    data = vectors("wycheproof/json_web_key_test.json")
    if data:
        for group in data["testGroups"]:
            public = group.get("public")
            if isinstance(public, dict):
                tc = group["tests"][0]["tcId"]
                jwks[f"wycheproof-{tc}"] = public if "keys" in public else {"keys": [public]}
    for name in ["3_1.ec_public_key", "3_3.rsa_public_key"]:
        key = vectors(f"jose-cookbook/jwk/{name}.json")
        if key:
            jwks[f"rfc7520-{name.split('.')[0]}"] = {"keys": [key]}
    ed = vectors("wycheproof/ed25519_test.json")
    if ed:
        jwk = dict(ed["testGroups"][0]["publicKeyJwk"], kid="ed")
        jwks["wycheproof-ed25519"] = {"keys": [jwk]}
    rs["jwks"] = {name: compact(value) for name, value in jwks.items()}

    public = (DATA / "rsa_public.pem").read_text()
    body = "".join(l for l in public.splitlines() if not l.startswith("-----"))
    rs["pem"] = {
        "rsa": public.encode(),
        "rsa-escaped": public.strip().replace("\n", "\\n").encode(),
        "rsa-bare": body.encode(),
        "rsa-1024": (DATA / "rsa_1024_public.pem").read_bytes(),
        "pkcs1": b"-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----\n",
        "private-tag": b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
    }
    for path, name in [("wycheproof/ecdsa_secp256r1_sha256_p1363_test.json", "p256"),
                       ("wycheproof/ed25519_test.json", "ed25519")]:
        data = vectors(path)
        if data:
            rs["pem"][f"wycheproof-{name}"] = data["testGroups"][0]["publicKeyPem"].encode()

    rs["strict_json"] = {
        "object": b'{"a":1,"b":[true,null,{"c":"d"}],"e":1.5,"f":-0,"g":1e300}',
        "duplicate": b'{"scope":"read","scope":"admin"}',
        "nested-duplicate": b'{"x":[{"a":1,"a":2}]}',
        "escaped-duplicate": b'{"a":1,"\\u0061":2}',
        "not-object": b'[1,"2",{"3":4}]',
        "unicode": '{"\u00e9":"\\ud83d\\ude00","":""}'.encode(),
        "deep": b'{"a":' + b"[" * 100 + b"]" * 100 + b"}",
        "claims": compact(claims()),
    }

    rs["template"] = {
        "complete-example": b"""{
  // the documentation's complete example
  "aud": "https://my-site.com",
  "version": 1,
  "foo": {"bar": [1, 2, 3]},
  "user_id": "{{user.id}}",
  "full_name": "{{user.last_name}} {{user.first_name}} ",
  "email": "{{user.primary_email_address}}",
  "interest": "{{user.public_metadata.profile.interests.0}}",
  "name": "{{user.public_metadata.nickname || user.first_name || 'Awesome \\\\'User\\\\''}}",
  "is_verified": "{{user.email_verified || false}}",
  /* organization */ "org": "{{org.slug || organization.name || 7}}",
  "role": "{{membership.role}} of {{org.name}}",
  "machine": "{{machine.scopes}}"
}""",
        "static": b'{"a": [1, {"b": null}], "c": "no shortcodes"}',
        "unclosed": b'{"a": "{{user.id"}',
        "default-claim": b'{"sub": "x"}',
        "unknown-root": b'{"a": "{{account.id}}"}',
        "session": b'{"sid": "{{session.id}}"}',
    }

    def issuer(route, value):
        return bytes([route]) + (value if isinstance(value, bytes) else compact(value))

    rs["issuer_bodies"] = {
        "create-jwt": issuer(0, {"token_format": "jwt", "seconds_until_expiration": 60,
                                 "claims": {"role": "cron", "aud": OWN}}),
        "create-opaque": issuer(0, {"claims": {"n": 1}}),
        "create-empty": issuer(0, b""),
        "create-reserved": issuer(0, {"claims": {"sub": "mch_x"}}),
        "create-unknown-field": issuer(0, {"tokenFormat": "jwt"}),
        "verify": issuer(1, {"token": "mt_0123456789abcdef0123456789abcdef"}),
        "revoke": issuer(2, {"revocation_reason": "rotated"}),
        "revoke-empty": issuer(2, b""),
        "template-create": issuer(3, {"name": "fuzz", "claims": {"uid": "{{user.id}}", "n": "{{user.x || 3}}"},
                                      "lifetime": 60, "allowed_clock_skew": 5}),
        "template-bad": issuer(3, {"name": "fuzz", "claims": {"a": "{{user.id"}}),
        "template-update": issuer(4, {"claims": {"email": "{{user.primary_email_address}}"}, "lifetime": 120}),
    }

    resource = {
        "object": "machine_to_machine_token", "id": "mt_1", "subject": "mch_cron_service",
        "scopes": [OWN], "claims": {"k": "v"}, "revoked": False, "revocation_reason": None,
        "expired": False, "expiration": (NOW + 3600) * 1000, "last_used_at": None,
        "created_at": NOW * 1000, "updated_at": NOW * 1000,
    }
    rs["clerk_reply"] = {
        "valid": compact(resource),
        "revoked": compact(dict(resource, revoked=True, revocation_reason="rotated")),
        "expired": compact(dict(resource, expired=True)),
        "other-receiver": compact(dict(resource, scopes=["mch_billing"])),
        "nulls": compact(dict(resource, scopes=None, claims=None, expiration=None)),
        "api-key": compact(dict(resource, object="api_key")),
    }

    active = {"active": True, "sub": "mch_cron_service", "client_id": "cron", "scope": f"{OWN} read",
              "exp": NOW + 3600, "iat": NOW, "nbf": NOW - 0.5, "iss": "https://auth.example.com",
              "aud": ["https://api.example.com"], "jti": "abc", "username": "x"}
    rs["rfc7662_reply"] = {
        "active": bytes([0]) + compact(active),
        "active-checked": bytes([3]) + compact(active),
        "client-id": bytes([0]) + compact({"active": True, "client_id": "mch_cron", "scope": OWN}),
        "inactive": bytes([1]) + compact({"active": False}),
        "wrong-issuer": bytes([1]) + compact(dict(active, iss="https://evil.example.com")),
        "string-active": bytes([0]) + compact({"active": "true"}),
        "huge-exp": bytes([0]) + compact(dict(active, exp=1e300)),
    }
    return rs


def rsa_jwk(pem_path):
    """n and e of an RSA public key PEM, as a JWK, read with openssl."""
    text = subprocess.run(
        ["openssl", "rsa", "-pubin", "-in", str(pem_path), "-noout", "-modulus"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    modulus = bytes.fromhex(text.split("=", 1)[1])
    return {"kty": "RSA", "n": b64(modulus), "e": "AQAB"}


def main():
    for target, files in seeds().items():
        directory = FUZZ / "corpus" / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("seed-*"):
            old.unlink()
        total = 0
        for name, content in files.items():
            if len(content) > MAX_SEED:
                continue
            (directory / f"seed-{name}").write_bytes(content)
            total += len(content)
        print(f"{target}: {len(list(directory.glob('seed-*')))} seeds, {total} bytes")


if __name__ == "__main__":
    main()

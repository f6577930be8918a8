// Clerk's own SDK (@clerk/backend) as the client of the local issuer, set up as Clerk's M2M guide
// sets up two machines: machine A creates and revokes tokens with its machine secret key;
// machine B, which A's tokens are scoped to, verifies them with its own machine secret key
// (opaque tokens, at `/m2m_tokens/verify`) and the instance secret key (JWTs, with the JWKS from
// `/v1/jwks`). A few more clients cover the other ways the SDK is configured. Prints one JSON
// document on stdout.
import { createClerkClient } from '@clerk/backend';
import { attempt, authenticate, env, token } from './sdk.mjs';

const apiUrl = env('API_URL');
const secretKey = env('SECRET_KEY');
const machineA = createClerkClient({ apiUrl, machineSecretKey: env('MACHINE_A_SECRET_KEY') });
const machineB = createClerkClient({
  apiUrl, secretKey, machineSecretKey: env('MACHINE_B_SECRET_KEY'),
});
// Only the instance secret key: opaque tokens are verified with it.
const instance = createClerkClient({ apiUrl, secretKey });
// Only the PEM public key: JWTs are verified without any network (the API URL is a closed port).
const networkless = createClerkClient({
  apiUrl: env('CLOSED_URL'), secretKey: 'sk_test_never_sent', jwtKey: env('JWT_KEY'),
});
// A machine secret key the issuer does not know.
const stranger = createClerkClient({ apiUrl, machineSecretKey: 'ak_not_a_key_of_this_instance' });

const out = {};
out.jwt = await attempt(async () => token(await machineA.m2m.createToken({ tokenFormat: 'jwt' })));
out.opaque = await attempt(async () => token(await machineA.m2m.createToken({
  tokenFormat: 'opaque', secondsUntilExpiration: 600, claims: { job: 'interop' },
})));
// The SDK's defaults: opaque, `seconds_until_expiration: null`, `claims: null`.
out.toRevoke = await attempt(async () => token(await machineA.m2m.createToken()));
// Server-side token reuse (recorded, not asserted: the issuer refuses it, see the README).
out.reuse = await attempt(async () => token(await machineA.m2m.createToken({
  tokenFormat: 'opaque', secondsUntilExpiration: 600, claims: { job: 'interop' },
  minRemainingTtlSeconds: 60,
})));

if (out.jwt.ok && out.opaque.ok && out.toRevoke.ok) {
  const [jwt, opaque, toRevoke] = [out.jwt, out.opaque, out.toRevoke].map((s) => s.value.token);
  // `m2m.verify` checks a JWT locally (JWKS fetched with the secret key), an opaque token at the API.
  out.verifyJwt = await attempt(async () => token(await machineB.m2m.verify({ token: jwt })));
  out.verifyOpaque = await attempt(async () => token(await machineB.m2m.verify({ token: opaque })));
  out.authenticateJwt = await attempt(() => authenticate(machineB, jwt));
  out.authenticateOpaque = await attempt(() => authenticate(machineB, opaque));
  out.authenticateBeforeRevoke = await attempt(() => authenticate(machineB, toRevoke));
  out.authenticateJwtNetworkless = await attempt(() => authenticate(networkless, jwt));
  out.authenticateOpaqueWithInstanceKey = await attempt(() => authenticate(instance, opaque));
  out.authenticateOpaqueWithUnknownKey = await attempt(() => authenticate(stranger, opaque));
  out.revoke = await attempt(async () => token(await machineA.m2m.revokeToken({
    m2mTokenId: out.toRevoke.value.id, revocationReason: 'interop test',
  })));
  out.verifyRevoked = await attempt(async () => token(await machineB.m2m.verify({ token: toRevoke })));
  out.authenticateRevoked = await attempt(() => authenticate(machineB, toRevoke));
  out.authenticateOpaqueAfterRevoke = await attempt(() => authenticate(machineB, opaque));
}
process.stdout.write(JSON.stringify(out));

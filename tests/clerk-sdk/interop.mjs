// Clerk's own SDK (@clerk/backend) as the client of the local issuer. Machine A creates and
// revokes tokens with its machine secret key; machine B authenticates requests with its own
// machine secret key (opaque tokens) and the instance secret key (the JWKS, for JWTs), as
// Clerk's documentation sets them up. Prints one JSON document on stdout.
import { createClerkClient } from '@clerk/backend';

const { API_URL, SECRET_KEY, MACHINE_A_SECRET_KEY, MACHINE_B_SECRET_KEY } = process.env;
const machineA = createClerkClient({ apiUrl: API_URL, machineSecretKey: MACHINE_A_SECRET_KEY });
const machineB = createClerkClient({
  apiUrl: API_URL,
  secretKey: SECRET_KEY,
  machineSecretKey: MACHINE_B_SECRET_KEY,
});

const token = (t) => ({
  id: t.id, subject: t.subject, scopes: t.scopes, claims: t.claims, revoked: t.revoked,
  revocationReason: t.revocationReason, expired: t.expired, expiration: t.expiration, token: t.token,
});

// Runs `action`, recording its value or the error it threw.
const attempt = async (action) => {
  try {
    return { ok: true, value: await action() };
  } catch (error) {
    return { ok: false, error: { message: error.message, status: error.status ?? null, code: error.code ?? error.errors?.[0]?.code ?? null } };
  }
};

// `authenticateRequest(…, { acceptsToken: 'm2m_token' })` as machine B would call it.
const authenticate = async (bearer) => {
  const request = new Request('http://localhost/cron/run', { headers: { Authorization: `Bearer ${bearer}` } });
  const state = await machineB.authenticateRequest(request, { acceptsToken: 'm2m_token' });
  const auth = state.toAuth();
  return {
    status: state.status, isAuthenticated: state.isAuthenticated, reason: state.reason,
    message: state.message, tokenType: state.tokenType, id: auth.id, machineId: auth.machineId,
    scopes: auth.scopes, claims: auth.claims,
  };
};

const out = {};
out.jwt = await attempt(async () => token(await machineA.m2m.createToken({ tokenFormat: 'jwt' })));
out.opaque = await attempt(async () => token(await machineA.m2m.createToken({
  tokenFormat: 'opaque', secondsUntilExpiration: 600, claims: { job: 'interop' },
})));
out.toRevoke = await attempt(async () => token(await machineA.m2m.createToken({})));
if (out.jwt.ok && out.opaque.ok && out.toRevoke.ok) {
  const [jwt, opaque, toRevoke] = [out.jwt.value.token, out.opaque.value.token, out.toRevoke.value.token];
  out.verifyJwt = await attempt(async () => token(await machineB.m2m.verify({ token: jwt })));
  out.verifyOpaque = await attempt(async () => token(await machineB.m2m.verify({ token: opaque })));
  out.authenticateJwt = await attempt(() => authenticate(jwt));
  out.authenticateOpaque = await attempt(() => authenticate(opaque));
  out.authenticateBeforeRevoke = await attempt(() => authenticate(toRevoke));
  out.revoke = await attempt(async () => token(await machineA.m2m.revokeToken({
    m2mTokenId: out.toRevoke.value.id, revocationReason: 'interop test',
  })));
  out.verifyRevoked = await attempt(async () => token(await machineB.m2m.verify({ token: toRevoke })));
  out.authenticateRevoked = await attempt(() => authenticate(toRevoke));
  out.list = await attempt(async () => {
    const page = await machineA.m2m.list({ limit: 10 });
    return { totalCount: page.totalCount, ids: page.data.map((t) => t.id) };
  });
}
process.stdout.write(JSON.stringify(out));

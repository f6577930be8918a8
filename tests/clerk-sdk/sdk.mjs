// Helpers shared by the scripts that drive the local issuer with Clerk's own SDK. Each script
// prints one JSON document on stdout; tests/clerk_sdk.rs reads it.

// The fields of the SDK's `M2MToken` object (camelCase, times in milliseconds).
export const token = (t) => ({
  id: t.id, subject: t.subject, scopes: t.scopes, claims: t.claims, revoked: t.revoked,
  revocationReason: t.revocationReason, expired: t.expired, expiration: t.expiration,
  createdAt: t.createdAt, token: t.token,
});

// Runs `action`, recording its value, or the error it threw as the SDK describes it
// (`ClerkAPIResponseError`: `status` and the API's `errors`, camelCased by the SDK).
export const attempt = async (action) => {
  try {
    return { ok: true, value: await action() };
  } catch (error) {
    return {
      ok: false,
      error: {
        name: error.name ?? null, message: error.message, code: error.code ?? null,
        status: error.status ?? null,
        errors: (error.errors ?? []).map((e) => ({
          code: e.code, message: e.message, longMessage: e.longMessage ?? null,
          paramName: e.meta?.paramName ?? null,
        })),
      },
    };
  }
};

// `client.authenticateRequest(…, { acceptsToken: 'm2m_token' })` with `Authorization: Bearer …`,
// reduced to the request state and its `toAuth()`.
export const authenticate = async (client, bearer) => {
  const request = new Request('http://localhost/cron/run', {
    headers: { Authorization: `Bearer ${bearer}` },
  });
  const state = await client.authenticateRequest(request, { acceptsToken: 'm2m_token' });
  const auth = state.toAuth();
  return {
    status: state.status, isAuthenticated: state.isAuthenticated, reason: state.reason,
    message: state.message, tokenType: state.tokenType, id: auth.id, subject: auth.subject,
    machineId: auth.machineId, scopes: auth.scopes, claims: auth.claims,
  };
};

// The environment variable `name`, which the Rust test must set.
export const env = (name) => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
};

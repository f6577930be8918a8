// Clerk's own SDK as the reference verifier, token by token. Reads `{"cases": [{name, client,
// token}, …]}` on stdin and runs `authenticateRequest(…, { acceptsToken: 'm2m_token' })` for each
// token with the named client; prints `{<name>: <attempt>}` as one JSON document on stdout, where
// the value is the request state reduced by `authenticate` (status, reason, scopes, …).
//
// The clients are the three ways a machine B is configured with the SDK:
// - `pem`: only the PEM public key of the key the Rust test signs with (`jwtKey`: networkless;
//   the API URL is a closed port, the secret key is never sent);
// - `machineB`: as Clerk's M2M guide sets up a receiving machine: the instance secret key for
//   JWTs (the JWKS at `/v1/jwks`) and machine B's own machine secret key for opaque tokens (at
//   `/m2m_tokens/verify`, which shows machine B only the tokens scoped to it);
// - `instance`: only the instance secret key, which verifies any opaque token of the instance.
import { createClerkClient } from '@clerk/backend';
import { attempt, authenticate, env } from './sdk.mjs';

const apiUrl = env('API_URL');
const secretKey = env('SECRET_KEY');
const clients = {
  pem: createClerkClient({
    apiUrl: env('CLOSED_URL'), secretKey: 'sk_test_never_sent', jwtKey: env('JWT_KEY'),
  }),
  machineB: createClerkClient({ apiUrl, secretKey, machineSecretKey: env('MACHINE_B_SECRET_KEY') }),
  instance: createClerkClient({ apiUrl, secretKey }),
};

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const { cases } = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const out = {};
for (const { name, client, token } of cases) {
  if (!(client in clients)) {
    throw new Error(`case ${name}: unknown client ${client}`);
  }
  out[name] = await attempt(() => authenticate(clients[client], token));
}
process.stdout.write(JSON.stringify(out));

// `clerkClient.m2m.list` against the local issuer. The SDK documents its parameters as
// "revoked: Whether to include revoked M2M tokens. Defaults to `false`." and the same for
// `expired`, with `subject` (the machine id) required. Machine A creates a live token and a
// token it revokes (the Rust test has already created an expired one), then lists its tokens
// with each combination of the flags. Prints one JSON document on stdout.
import { createClerkClient } from '@clerk/backend';
import { attempt, env, token } from './sdk.mjs';

const machineA = createClerkClient({
  apiUrl: env('API_URL'), machineSecretKey: env('MACHINE_A_SECRET_KEY'),
});
const subject = env('MACHINE_A_ID');

const out = {};
out.live = await attempt(async () => token(await machineA.m2m.createToken()));
out.revoked = await attempt(async () => token(await machineA.m2m.createToken()));
if (out.revoked.ok) {
  out.revoke = await attempt(async () => token(await machineA.m2m.revokeToken({
    m2mTokenId: out.revoked.value.id,
  })));
}
const list = (params) => attempt(async () => {
  const page = await machineA.m2m.list({ subject, ...params });
  return { totalCount: page.totalCount, ids: page.data.map((t) => t.id) };
});
out.lists = {
  default: await list({}),
  notRevokedNotExpired: await list({ revoked: false, expired: false }),
  withRevoked: await list({ revoked: true }),
  withExpired: await list({ expired: true }),
  withRevokedAndExpired: await list({ revoked: true, expired: true }),
};
process.stdout.write(JSON.stringify(out));

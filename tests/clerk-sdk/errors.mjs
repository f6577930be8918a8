// How Clerk's SDK reads the issuer's error replies. Clerk's own tests of the SDK
// (clerk/javascript, packages/backend/src/api/__tests__/M2MTokenApi.test.ts) model the Backend
// API's answer to a token creation with the instance secret key as a 401 whose first error has
// `code: 'machine_secret_key_invalid'` and `message: 'The provided Machine Secret Key is
// invalid. Make sure that your Machine Secret Key is correct.'`. Prints one JSON document on stdout.
import { createClerkClient } from '@clerk/backend';
import { attempt, env, token } from './sdk.mjs';

const client = createClerkClient({ apiUrl: env('API_URL'), secretKey: env('SECRET_KEY') });

const out = {};
// No machine secret key: the SDK sends the instance secret key.
out.createWithInstanceKey = await attempt(async () => token(await client.m2m.createToken()));
process.stdout.write(JSON.stringify(out));

// Writes crates/jwt-cache/tests/data/noble-ml-dsa.json: for each ML-DSA parameter set,
// a key derived by @noble/post-quantum from a fixed seed, its AKP JWK (RFC 9964, kid
// = RFC 7638 thumbprint over alg, kty, pub) and a JWT it signed. Our tests verify
// these tokens and check that our key generation from the same seed gives the same
// `pub` and `kid`: an implementation other than aws-lc-rs made them.
//   cd scripts/mldsa-vectors && npm ci && node make.mjs
import { createHash } from 'node:crypto';
import { writeFileSync, readFileSync } from 'node:fs';
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';

const b64u = (b) => Buffer.from(b).toString('base64url');
const hex = (b) => Buffer.from(b).toString('hex');
const version = JSON.parse(
  readFileSync(new URL('./node_modules/@noble/post-quantum/package.json', import.meta.url)),
).version;

const vectors = [];
for (const [alg, impl, first] of [
  ['ML-DSA-44', ml_dsa44, 0x44],
  ['ML-DSA-65', ml_dsa65, 0x65],
  ['ML-DSA-87', ml_dsa87, 0x87],
]) {
  const seed = Uint8Array.from({ length: 32 }, (_, i) => (first + i) & 0xff);
  const { publicKey, secretKey } = impl.keygen(seed);
  const pub = b64u(publicKey);
  const kid = b64u(createHash('sha256').update(`{"alg":"${alg}","kty":"AKP","pub":"${pub}"}`).digest());
  const header = { alg, kid, typ: 'JWT' };
  const claims = { iss: 'https://noble.example', sub: 'noble', aud: 'api', iat: 1800000000, exp: 4102444800 };
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
  const sig = impl.sign(new TextEncoder().encode(input), secretKey);
  if (!impl.verify(sig, new TextEncoder().encode(input), publicKey)) throw new Error('self-check');
  vectors.push({ alg, seed: hex(seed), jwk: { kty: 'AKP', alg, pub, kid }, jws: `${input}.${b64u(sig)}` });
}
const out = new URL('../../crates/jwt-cache/tests/data/noble-ml-dsa.json', import.meta.url);
writeFileSync(out, JSON.stringify({ generator: `@noble/post-quantum ${version}`, script: 'scripts/mldsa-vectors/make.mjs', vectors }, null, 1) + '\n');
console.log(`wrote ${vectors.length} vectors with @noble/post-quantum ${version}`);

// Reads a JSON array of {alg, pub, jws} (pub base64url, jws compact) on stdin and
// prints a JSON array of booleans: whether @noble/post-quantum verifies each JWS
// signature over its signing input with `pub`. Used by examples/tests/mldsa_roundtrip.rs
// (tokens signed by hsm-keys, checked by an implementation other than aws-lc-rs).
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';

const impls = { 'ML-DSA-44': ml_dsa44, 'ML-DSA-65': ml_dsa65, 'ML-DSA-87': ml_dsa87 };
let text = '';
for await (const chunk of process.stdin) text += chunk;
const results = JSON.parse(text).map(({ alg, pub, jws }) => {
  const cut = jws.lastIndexOf('.');
  const input = new TextEncoder().encode(jws.slice(0, cut));
  const sig = Buffer.from(jws.slice(cut + 1), 'base64url');
  return impls[alg].verify(sig, input, Buffer.from(pub, 'base64url'));
});
console.log(JSON.stringify(results));

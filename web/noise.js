/**
 * Seeded standard normal noise: the same seed gives the same numbers, in a browser or in Node.
 *
 *   import { standardNormal } from './noise.js';
 *   const eps = standardNormal(7, 16 * 20);   // Float32Array of 320 draws of N(0, 1)
 *
 * Generator: xoshiro128** (Blackman and Vigna, "Scrambled linear pseudorandom number generators",
 * 2018, https://prng.di.unimi.it/xoshiro128starstar.c), 128 bits of state, 32-bit outputs. Its state
 * is filled from the seed by SplitMix64 (Steele, Lea and Flood 2014; https://prng.di.unimi.it/splitmix64.c),
 * as its authors recommend. Normals: the Box-Muller transform (Box and Muller 1958) of two 32-bit
 * uniforms u1 in (0, 1] and u2 in [0, 1): r = sqrt(-2 ln u1), giving r cos(2 pi u2) and r sin(2 pi u2)
 * at positions 2k and 2k+1, computed in float64 and rounded to float32. So the first m draws of a
 * seed do not depend on how many are asked for.
 *
 * A learned prior's mixture components come from a second stream of the same seed: xoshiro128**
 * seeded by SplitMix64 from seed XOR COMPONENT_STREAM, one uniform u = output / 2**32 in [0, 1) per
 * row (`uniforms`), so row i's component does not depend on how many rows are drawn either.
 *
 * These are not numpy's numbers (the Python runtime's `sample(n, seed)` uses numpy's Philox and
 * ziggurat): the same seed gives different digits in Python and here. Math.log, cos and sin are
 * not bit-specified by ECMAScript; V8 (Chromium, Node) computes them identically everywhere, other
 * engines may differ in the last bit.
 */

const MASK64 = (1n << 64n) - 1n;

/**
 * Four 32-bit words of generator state from a seed, by SplitMix64.
 * @param {number|bigint} seed an integer in [0, 2**64)
 * @returns {Uint32Array}
 */
export function seedState(seed) {
  const ok = typeof seed === 'bigint' || Number.isSafeInteger(seed);
  if (!ok || BigInt(seed) < 0n || BigInt(seed) > MASK64) {
    throw new RangeError(`seed must be an integer in [0, 2**64); got ${String(seed)}`);
  }
  let x = BigInt(seed);
  const words = new Uint32Array(4);
  for (let i = 0; i < 2; i++) {
    x = (x + 0x9e3779b97f4a7c15n) & MASK64;
    let z = x;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    z ^= z >> 31n;
    words[2 * i] = Number(z & 0xffffffffn);
    words[2 * i + 1] = Number(z >> 32n);
  }
  return words;
}

const rotl = (x, k) => (x << k) | (x >>> (32 - k));

/**
 * The next 32-bit output of xoshiro128**, advancing `s` in place.
 * @param {Uint32Array} s four words of state
 * @returns {number} an unsigned 32-bit integer
 */
export function nextUint32(s) {
  const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
  const t = s[1] << 9;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 11);
  return result;
}

const TWO_32 = 4294967296;

/**
 * `count` draws of N(0, 1) as float32, the same for the same seed.
 * @param {number|bigint} seed an integer in [0, 2**64)
 * @param {number} count how many numbers
 * @returns {Float32Array}
 */
export function standardNormal(seed, count) {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`count must be a non-negative integer; got ${count}`);
  }
  const s = seedState(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u1 = (nextUint32(s) + 1) / TWO_32; // (0, 1]: log never sees 0
    const u2 = nextUint32(s) / TWO_32; // [0, 1)
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < count) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

const COMPONENT_STREAM = 0xd1b54a32d192ed03n; // an odd 64-bit constant: the component stream's seed offset

/**
 * `count` uniforms in [0, 1), one per row: the mixture components of a learned prior's draws.
 * @param {number|bigint} seed an integer in [0, 2**64), the same seed as the rows' standardNormal
 * @param {number} count how many numbers
 * @returns {Float64Array}
 */
export function uniforms(seed, count) {
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`count must be a non-negative integer; got ${count}`);
  }
  seedState(seed); // the same checks of the seed as standardNormal's
  const s = seedState(BigInt(seed) ^ COMPONENT_STREAM);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = nextUint32(s) / TWO_32;
  return out;
}

/**
 * Golden vectors without numpy: read golden.json's index into golden.bin, and compare outputs the way
 * golden.json's "check" says (the same rule as the Python runtime's `edgevae selftest`).
 *
 *   const arrays = unpackTensors(bytesOfGoldenBin, spec.tensors, 'golden.bin');
 *   arrays['decoder.z']  // {data: Float32Array, shape: [8, 20]}
 */

import { CONTRACT } from './contract.js';
import { ModelError } from './files.js';

/**
 * Every array of golden.bin by the index: little-endian float32, row-major.
 * @param {Uint8Array} data the bytes of golden.bin
 * @param {object} index golden.json's "tensors": name -> {dtype, shape, offset, bytes}
 * @param {string} path golden.bin's name, for messages
 * @returns {Object<string, {data: Float32Array, shape: number[]}>}
 */
export function unpackTensors(data, index, path) {
  if (index === null || typeof index !== 'object' || Object.keys(index).length === 0) {
    throw new ModelError(`${path}: golden.json has no 'tensors' index; re-export with this version`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const arrays = {};
  for (const [name, entry] of Object.entries(index)) {
    const { dtype, shape, offset, bytes } = entry ?? {};
    const whole = (v) => Number.isSafeInteger(v) && v >= 0;
    if (dtype !== CONTRACT.goldenDtype || !Array.isArray(shape) || ![offset, bytes, ...shape].every(whole)) {
      throw new ModelError(
        `${path}: index entry '${name}' must be dtype '${CONTRACT.goldenDtype}' with integer shape, offset and bytes`,
      );
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (bytes !== 4 * count || offset + bytes > data.byteLength) {
      const entry = `index entry '${name}' (shape ${shape}, bytes ${bytes}, offset ${offset})`;
      throw new ModelError(`${path}: ${entry} does not fit the file's ${data.byteLength} bytes`);
    }
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(offset + 4 * i, true);
    arrays[name] = { data: values, shape };
  }
  return arrays;
}

/**
 * max(|got - want| - rtol * |want|) in float64: at most atol means allclose(got, want, rtol, atol).
 * Different lengths or a NaN give Infinity, so they can never pass.
 * @param {Float32Array} got
 * @param {Float32Array} want
 * @param {number} rtol
 * @returns {number}
 */
export function maxExcess(got, want, rtol = 0) {
  if (got.length !== want.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const excess = Math.abs(got[i] - want[i]) - rtol * Math.abs(want[i]);
    if (Number.isNaN(excess)) return Infinity;
    if (excess > worst) worst = excess;
  }
  return worst;
}

/**
 * Compare each output of one graph with its golden array; one check per output the variant budgets.
 * @param {object} spec golden.json
 * @param {string} variant e.g. 'fp32'
 * @param {string} graph 'encoder' or 'decoder'
 * @param {Object<string, Float32Array>} outputs the graph's outputs on the golden inputs
 * @param {Object<string, {data: Float32Array}>} arrays the golden arrays
 * @param {string} device the tolerance to use ('cpu': WASM and Node run on the CPU)
 * @returns {{graph: string, output: string, maxDiff: number, tolerance: number, passed: boolean}[]}
 */
export function compareOutputs(spec, variant, graph, outputs, arrays, device = 'cpu') {
  const budgets = spec.variants?.[variant]?.budget_vs_fp32;
  if (!budgets) throw new ModelError(`golden.json has no budgets for variant '${variant}'; re-export`);
  const checks = [];
  for (const output of spec.graphs[graph].outputs) {
    const budget = budgets[output];
    if (budget === null || budget === undefined) continue; // lossy builds: judged by their cost in nats
    const want = arrays[`${graph}.${output}`];
    if (!want) throw new ModelError(`golden vectors have no array '${graph}.${output}'`);
    const maxDiff = maxExcess(outputs[output], want.data, spec.relative_tolerance?.[output] ?? 0);
    const tolerance = spec.tolerance[device] + budget;
    checks.push({ graph, output, maxDiff, tolerance, passed: maxDiff <= tolerance });
  }
  return checks;
}

/**
 * One line per check, as `edgevae selftest` prints them.
 * @param {{graph: string, output: string, maxDiff: number, tolerance: number, passed: boolean}} c
 * @returns {string}
 */
export function checkLine(c) {
  const [verdict, tolerance] = [c.passed ? 'pass' : 'FAIL', short(c.tolerance)];
  return `${c.graph}.${c.output}: max |diff| ${c.maxDiff.toExponential(2)} (tolerance ${tolerance})  ${verdict}`;
}

/**
 * A number in at most two significant digits, as Python's '{:.2g}' writes it (5e-05 -> '5e-05').
 * @param {number} x
 * @returns {string}
 */
export function short(x) {
  if (x !== 0 && Number.isFinite(x) && (Math.abs(x) < 1e-4 || Math.abs(x) >= 1e16)) {
    const [m, e] = x.toExponential(1).split('e');
    const exp = Number(e);
    return `${m.replace(/\.0$/, '')}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return String(Number(x.toPrecision(2)));
}

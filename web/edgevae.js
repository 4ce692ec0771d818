/**
 * edgevae in JavaScript: sample, decode, reconstruct, interpolate and self-test an exported model
 * with onnxruntime (onnxruntime-web in a browser, onnxruntime-node in Node; see browser.js, node.js).
 *
 *   import { loadVAE } from './browser.js';               // or '.../web/node.js' in Node
 *   const vae = await loadVAE('../runtime/models/default/', { variant: 'fp32' });
 *   const digits = await vae.sample(16, 0);               // {data: Float32Array, rows: 16, cols: 784}
 *   const report = await vae.selftest();                  // report.passed, report.checks
 *
 * A batch is {data, rows, cols}: rows of cols float32 values, row-major. Every file is checked
 * against the manifest's sha256 before onnxruntime sees it (files.js); inputs are checked before a
 * graph runs, and a bad one is a TypeError or RangeError with one line saying what was expected.
 */

import { CONTRACT } from './contract.js';
import { ModelError, openFolder } from './files.js';
import { checkLine, compareOutputs, short, unpackTensors } from './golden.js';
import { standardNormal, uniforms } from './noise.js';

export { ModelError } from './files.js';

const N = CONTRACT.names;
const MAX_ROWS = 16384; // rows per call: 16384 images of 784 pixels are 51 MB of float32 per output

/** @typedef {{data: Float32Array, rows: number, cols: number}} Batch */

/**
 * A Batch from a Batch, a Float32Array or an array of numbers whose length is a multiple of `cols`.
 * @param {Batch|Float32Array|number[]} value
 * @param {number} cols
 * @param {string} name for messages
 * @param {boolean} unit values must lie in [0, 1] (images)
 * @returns {Batch}
 */
export function asBatch(value, cols, name, unit = false) {
  const flat = value?.data ?? value;
  if (!(flat instanceof Float32Array || Array.isArray(flat))) {
    throw new TypeError(
      `${name}: expected a Float32Array, an array of numbers or {data, rows, cols}; got ${typeof value}`,
    );
  }
  const rows = flat.length / cols;
  if (!Number.isInteger(rows) || rows < 1 || rows > MAX_ROWS || (value.cols !== undefined && value.cols !== cols)) {
    const layout = value.cols !== undefined ? ` in rows of ${value.cols}` : '';
    throw new RangeError(
      `${name}: expected 1 to ${MAX_ROWS} rows of ${cols} values; got ${flat.length} values${layout}`,
    );
  }
  const data = Float32Array.from(flat);
  const bad = data.findIndex((v) => !Number.isFinite(v) || (unit && (v < 0 || v > 1)));
  if (bad >= 0) {
    throw new RangeError(
      `${name}: expected finite values${unit ? ' in [0, 1]' : ''}; got ${flat[bad]} in row ${Math.floor(bad / cols)}`,
    );
  }
  return { data, rows, cols };
}

/** A loaded encoder/decoder pair of one variant, with the model folder it came from. */
export class VAE {
  /**
   * Open a model folder, check it, start both graphs. Use loadVAE from browser.js or node.js.
   * @param {object} ort the onnxruntime module (onnxruntime-web or onnxruntime-node)
   * @param {(name: string) => Promise<Uint8Array>} read the bytes of a file of the folder
   * @param {{variant?: string, where?: string, sessionOptions?: object}} options
   * @returns {Promise<VAE>}
   */
  static async load(ort, read, { variant = CONTRACT.defaultVariant, where = '', sessionOptions = {} } = {}) {
    const folder = await openFolder(read, where);
    const present = Object.keys(folder.manifest.variants ?? { [CONTRACT.defaultVariant]: {} });
    if (!present.includes(variant) || !CONTRACT.variants[variant]) {
      throw new RangeError(`variant '${variant}' is not in ${where}; variants there: ${present.sort().join(', ')}`);
    }
    const sessions = {};
    for (const [graph, spec] of Object.entries(CONTRACT.graphs)) {
      const file = graph + CONTRACT.variants[variant].suffix;
      const bytes = await folder.verified(file);
      try {
        sessions[graph] = await ort.InferenceSession.create(bytes, sessionOptions);
      } catch (err) {
        throw new ModelError(`onnxruntime could not load ${where}${file}: ${String(err.message ?? err).slice(0, 300)}`);
      }
      const found = [sessions[graph].inputNames, sessions[graph].outputNames];
      const wanted = [spec.inputs.map((t) => t.name), spec.outputs.map((t) => t.name)];
      if (JSON.stringify(found) !== JSON.stringify(wanted)) {
        throw new ModelError(
          `${where}${file}: graph tensors ${JSON.stringify(found)} differ from the contract ${JSON.stringify(wanted)}`,
        );
      }
    }
    const prior = await readPrior(folder, where);
    return new VAE(ort, folder, variant, sessions, prior);
  }

  constructor(ort, folder, variant, sessions, prior = null) {
    this.prior = prior; // null: z ~ N(0, I); else the learned prior's mixture (readPrior)
    this.ort = ort;
    this.folder = folder;
    this.manifest = folder.manifest;
    this.variant = variant;
    this.sessions = sessions;
    [this.height, this.width] = this.manifest.config.image_shape;
    this.pixels = this.height * this.width;
    this.latent = this.manifest.config.latent;
    this.fixedBatch = CONTRACT.variants[variant].batch; // null: dynamic batch axis
  }

  /** The graph files in use, e.g. ['encoder.onnx', 'decoder.onnx']. */
  get files() {
    return Object.keys(CONTRACT.graphs).map((g) => g + CONTRACT.variants[this.variant].suffix);
  }

  /**
   * Run one graph on batches; outputs by name. Fixed-batch builds (b1) run one row per call.
   * @param {string} graph
   * @param {Object<string, Batch>} feeds
   * @param {string[]} names outputs to fetch
   * @returns {Promise<Object<string, Float32Array>>}
   */
  async run(graph, feeds, names) {
    const rows = Object.values(feeds)[0].rows;
    const step = this.fixedBatch ?? rows;
    const outs = [];
    for (let lo = 0; lo < rows; lo += step) {
      const tensors = {};
      for (const [name, b] of Object.entries(feeds)) {
        const slice = step === rows ? b.data : b.data.slice(lo * b.cols, (lo + step) * b.cols);
        tensors[name] = new this.ort.Tensor('float32', slice, [Math.min(step, rows - lo), b.cols]);
      }
      outs.push(await this.sessions[graph].run(tensors, names));
    }
    return Object.fromEntries(
      names.map((n) => [n, outs.length === 1 ? outs[0][n].data : concat(outs.map((o) => o[n].data))]),
    );
  }

  /**
   * n draws of z ~ p(z) from noise.js's seeded generators: the same seed, the same numbers. N(0, I),
   * or for a learned prior (prior.bin): component k = floor(u * K) from `uniforms(seed, n)`, then
   * z = mean_k + exp(logvar_k / 2) * eps with eps from `standardNormal(seed, n * latent)`.
   * @param {number} n rows
   * @param {number|bigint} seed an integer in [0, 2**64)
   * @returns {Batch}
   */
  sampleLatent(n, seed) {
    if (!Number.isInteger(n) || n < 1 || n > MAX_ROWS) {
      throw new RangeError(`n must be an integer from 1 to ${MAX_ROWS}; got ${n}`);
    }
    const eps = standardNormal(seed, n * this.latent);
    if (this.prior) drawFromPrior(this.prior, eps, uniforms(seed, n), this.latent);
    return { data: eps, rows: n, cols: this.latent };
  }

  /** n images (rows of height x width pixel means in [0, 1]) decoded from sampleLatent(n, seed). */
  async sample(n, seed) {
    return this.decode(this.sampleLatent(n, seed));
  }

  /** Pixel means in [0, 1] for latents z (rows of `latent` values). */
  async decode(z) {
    const zb = asBatch(z, this.latent, N.z);
    const out = await this.run('decoder', { [N.z]: zb }, [N.mean]);
    return { data: out[N.mean], rows: zb.rows, cols: this.pixels };
  }

  /** {mu, logvar} of q(z|x) for images x (rows of `pixels` values in [0, 1]). */
  async encode(x) {
    const xb = asBatch(x, this.pixels, N.image, true);
    const eps = { data: new Float32Array(xb.rows * this.latent), rows: xb.rows, cols: this.latent };
    const out = await this.run('encoder', { [N.image]: xb, [N.noise]: eps }, [N.mu, N.logvar]);
    const batch = (data) => ({ data, rows: xb.rows, cols: this.latent });
    return { mu: batch(out[N.mu]), logvar: batch(out[N.logvar]) };
  }

  /** decode(encode(x).mu): each image through its latent mean. */
  async reconstruct(x) {
    return this.decode((await this.encode(x)).mu);
  }

  /** `steps` images decoded along the straight line between the latent means of images a and b. */
  async interpolate(a, b, steps = 10) {
    if (!Number.isInteger(steps) || steps < 2 || steps > MAX_ROWS) {
      throw new RangeError(`steps must be an integer from 2 to ${MAX_ROWS}; got ${steps}`);
    }
    const ends = [asBatch(a, this.pixels, 'a', true), asBatch(b, this.pixels, 'b', true)];
    if (ends.some((e) => e.rows !== 1)) {
      throw new RangeError(`a, b: expected one image each; got ${ends[0].rows} and ${ends[1].rows}`);
    }
    const { mu } = await this.encode({ data: concat([ends[0].data, ends[1].data]), rows: 2, cols: this.pixels });
    return this.decode(lerpRows(mu.data.subarray(0, this.latent), mu.data.subarray(this.latent), steps));
  }

  /**
   * Replay the golden vectors (golden.json + golden.bin, checked against the manifest) through this
   * variant's graphs; compare each output within tolerance.cpu + the variant's budget.
   * @returns {Promise<{passed: boolean, variant: string, checks: object[], lines: string[], summary: string}>}
   */
  async selftest() {
    const spec = JSON.parse(new TextDecoder().decode(await this.folder.verified(CONTRACT.goldenSpecFile)));
    if (spec.format !== CONTRACT.goldenFormat) {
      throw new ModelError(`${CONTRACT.goldenSpecFile} is not '${CONTRACT.goldenFormat}'`);
    }
    const dataFile = spec.data ?? CONTRACT.goldenDataFile;
    const arrays = unpackTensors(await this.folder.verified(dataFile), spec.tensors, `${this.folder.where}${dataFile}`);
    const checks = [];
    for (const [graph, g] of Object.entries(spec.graphs)) {
      const feeds = Object.fromEntries(g.inputs.map((n) => [n, toBatch(arrays[`${graph}.${n}`])]));
      checks.push(...compareOutputs(spec, this.variant, graph, await this.run(graph, feeds, g.outputs), arrays));
    }
    const passed = checks.every((c) => c.passed);
    const worst = checks.reduce((w, c) => (c.maxDiff / c.tolerance > w.maxDiff / w.tolerance ? c : w));
    const state = passed ? 'pass' : `FAIL (${checks.filter((c) => !c.passed).length} outputs over tolerance)`;
    const where = `${worst.graph}.${worst.output}`;
    const summary = `${state}; worst ${where} ${worst.maxDiff.toExponential(1)} of ${short(worst.tolerance)}`;
    return { passed, variant: this.variant, checks, lines: checks.map(checkLine), summary };
  }

  /** Free both sessions. */
  async release() {
    await Promise.all(Object.values(this.sessions).map((s) => s.release?.()));
  }
}

/** `steps` rows from za to zb: (1 - t) za + t zb with t = 0, 1/(steps-1), ..., 1. */
export function lerpRows(za, zb, steps) {
  const cols = za.length;
  const data = new Float32Array(steps * cols);
  for (let i = 0; i < steps; i++) {
    const t = i / (steps - 1);
    for (let j = 0; j < cols; j++) data[i * cols + j] = (1 - t) * za[j] + t * zb[j];
  }
  return { data, rows: steps, cols };
}

function toBatch(array) {
  if (!array || array.shape.length !== 2) throw new ModelError('golden vectors: an input array is missing or not 2-D');
  return { data: array.data, rows: array.shape[0], cols: array.shape[1] };
}

function concat(arrays) {
  const out = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

/**
 * The learned prior of a model trained with one (manifest config prior 'vamp'), from prior.bin,
 * verified against the manifest's sha256: K x latent means then K x latent log-variances, float32
 * little-endian (runtime/prior.py). null for the standard normal prior.
 * @returns {Promise<{means: Float32Array, logvars: Float32Array, components: number}|null>}
 */
async function readPrior(folder, where) {
  const config = folder.manifest.config;
  if ((config.prior ?? 'standard') === 'standard') return null;
  if (config.prior !== 'vamp') {
    throw new ModelError(`${where}: prior '${config.prior}' is unknown to this package (it knows standard and vamp)`);
  }
  const bytes = await folder.verified(CONTRACT.priorFile);
  const k = config.prior_components;
  const size = k * config.latent;
  if (bytes.byteLength !== 8 * size) {
    throw new ModelError(`corrupt ${where}${CONTRACT.priorFile}: ${bytes.byteLength} bytes, expected ${8 * size}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = Float32Array.from({ length: 2 * size }, (_, i) => view.getFloat32(4 * i, true));
  return { means: values.subarray(0, size), logvars: values.subarray(size), components: k };
}

/** eps (rows x latent) becomes z = mean_k + exp(logvar_k / 2) * eps in place, k = floor(u * K) per row. */
function drawFromPrior(prior, eps, u, latent) {
  for (let row = 0; row < u.length; row++) {
    const k = Math.min(Math.floor(u[row] * prior.components), prior.components - 1);
    for (let d = 0; d < latent; d++) {
      const i = row * latent + d;
      eps[i] = prior.means[k * latent + d] + Math.exp(0.5 * prior.logvars[k * latent + d]) * eps[i];
    }
  }
}

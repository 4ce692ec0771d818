/**
 * edgevae in Node.js: onnxruntime-node (native CPU), model files from disk.
 *
 *   import { loadVAE, DEFAULT_MODEL } from './web/node.js';
 *   const vae = await loadVAE(DEFAULT_MODEL, { variant: 'fp32', threads: 1 });
 *   const report = await vae.selftest();
 *
 * Needs Node 20 or newer (WebCrypto as globalThis.crypto) and `npm ci --ignore-scripts` in web/.
 */

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { ModelError, VAE } from './edgevae.js';

export * from './edgevae.js';
export { ort };

/** The packaged default model of this repository. */
export const DEFAULT_MODEL = fileURLToPath(new URL('../runtime/models/default/', import.meta.url));

/**
 * Load the model folder `dir` with onnxruntime-node on the CPU.
 * @param {string} dir a model folder (manifest.json and the graphs)
 * @param {{variant?: string, threads?: number}} options threads: intra-op threads (0: onnxruntime's default)
 * @returns {Promise<VAE>}
 */
export async function loadVAE(dir, { variant, threads = 0 } = {}) {
  const where = path.resolve(dir) + path.sep;
  const read = async (name) => {
    try {
      return new Uint8Array(await readFile(path.join(where, name)));
    } catch (err) {
      throw new ModelError(`model file ${where}${name} is missing or unreadable (${err.code ?? err.message})`);
    }
  };
  const sessionOptions = { executionProviders: ['cpu'], intraOpNumThreads: threads, graphOptimizationLevel: 'all' };
  return VAE.load(ort, read, { variant, where, sessionOptions });
}

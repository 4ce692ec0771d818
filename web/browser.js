/**
 * edgevae in a browser: onnxruntime-web (WASM) from web/node_modules, model files over fetch.
 *
 *   import { loadVAE } from './browser.js';
 *   const vae = await loadVAE('../runtime/models/default/', { variant: 'int8' });
 *
 * Served by any static file server (`make web` runs `python -m http.server` in the repo). WebCrypto,
 * which checks the files, needs https or http://localhost. WASM runs on one thread unless the page is
 * cross-origin isolated (headers that `python -m http.server` does not send).
 */

import * as ort from './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';
import { ModelError, VAE } from './edgevae.js';

export * from './edgevae.js';
export { ort };

ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;

/**
 * Load the model folder at `url` (relative to the page) with onnxruntime-web.
 * @param {string} url the folder, e.g. '../runtime/models/default/'
 * @param {{variant?: string, threads?: number}} options threads: WASM threads (1 unless cross-origin isolated)
 * @returns {Promise<VAE>}
 */
export async function loadVAE(url, { variant, threads = 1 } = {}) {
  ort.env.wasm.numThreads = threads;
  const base = new URL(url.endsWith('/') ? url : `${url}/`, document.baseURI);
  const read = async (name) => {
    const where = new URL(name, base);
    let response;
    try {
      response = await fetch(where);
    } catch (err) {
      throw new ModelError(`model file ${where} could not be fetched: ${err.message}`);
    }
    if (!response.ok) throw new ModelError(`model file ${where} is missing (HTTP ${response.status})`);
    return new Uint8Array(await response.arrayBuffer());
  };
  const sessionOptions = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  return VAE.load(ort, read, { variant, where: base.href, sessionOptions });
}

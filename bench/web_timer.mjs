/**
 * The JavaScript side of bench/web.py: time sample(1) and decode at batch 64 on a loaded VAE, the same
 * code in a browser (bench/web.py imports it into the page) and in Node (run as a script).
 *
 *   node bench/web_timer.mjs --seconds 2 --block-ms 20    # onnxruntime-node, 1 thread; prints JSON
 *
 * Browsers round performance.now() to 0.1 ms unless the page is cross-origin isolated, so calls are
 * timed in blocks of about `blockMs`: each block gives its mean time per call, and the blocks are
 * what bench/web.py pools (median and p10-p90).
 */

/**
 * Seconds per call, one number per block, for each operation.
 * @param {object} vae a loaded VAE (web/edgevae.js)
 * @param {{seconds: number, blockMs: number}} options time per operation, time per block
 * @returns {Promise<Object<string, number[]>>}
 */
export async function timeOps(vae, { seconds = 2, blockMs = 20 } = {}) {
  const z64 = vae.sampleLatent(64, 1);
  let seed = 0;
  const ops = { 'sample/1': () => vae.sample(1, seed++), 'decode/64': () => vae.decode(z64) };
  const out = {};
  for (const [name, call] of Object.entries(ops)) {
    for (let i = 0; i < 20; i++) await call(); // warm-up
    const blocks = [];
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const t0 = performance.now();
      let calls = 0;
      while (performance.now() - t0 < blockMs) {
        await call();
        calls += 1;
      }
      blocks.push((performance.now() - t0) / 1000 / calls);
    }
    out[name] = blocks;
  }
  return out;
}

async function main() {
  const { parseArgs } = await import('node:util');
  const { values } = parseArgs({
    options: { seconds: { type: 'string', default: '2' }, 'block-ms': { type: 'string', default: '20' } },
  });
  const { loadVAE, DEFAULT_MODEL, ort } = await import('../web/node.js');
  const vae = await loadVAE(DEFAULT_MODEL, { variant: 'fp32', threads: 1 });
  const times = await timeOps(vae, { seconds: Number(values.seconds), blockMs: Number(values['block-ms']) });
  console.log(JSON.stringify({ times, version: ort.env.versions?.common ?? null, node: process.version }));
}

if (typeof process !== 'undefined' && process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  main().catch((err) => {
    console.error(`web_timer.mjs: error: ${err.message}`);
    process.exit(2);
  });
}

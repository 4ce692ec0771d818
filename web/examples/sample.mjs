/**
 * Node example: self-test the packaged model, then write a PNG grid of samples.
 *
 *   cd web && npm ci --ignore-scripts
 *   node web/examples/sample.mjs [--model DIR] [--variant fp32|int8|fp16|b1|ort] [-n 16] [--seed 0]
 *                                [--scale 2] [-o samples.png] [--threads 0]
 *
 * The grid is the Python runtime's layout: ceil(sqrt(n)) columns, 2 white pixels around and between
 * the 28 x 28 digits, scaled `--scale` times: (cols * 30 + 2) * scale wide, (rows * 30 + 2) * scale
 * high. Exit status 0 when the self-test passes and the PNG is written, 1 when the self-test fails
 * (nothing is written), 2 with one line on a bad argument or a damaged model folder.
 */

import { writeFile, rename } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { encodePNG, tile, upscale } from '../grid.js';
import { DEFAULT_MODEL, loadVAE } from '../node.js';

const USAGE =
  'usage: node web/examples/sample.mjs [--model DIR] [--variant V] [-n N] [--seed S] [--scale K] [-o FILE] ' +
  '[--threads T]';

/** Integer option `name` from its text, at least `min`; a RangeError with one line otherwise. */
function integer(text, name, min) {
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < min) {
    throw new RangeError(`--${name} must be an integer >= ${min}; got '${text}'`);
  }
  return v;
}

async function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', default: DEFAULT_MODEL },
      variant: { type: 'string', default: 'fp32' },
      n: { type: 'string', short: 'n', default: '16' },
      seed: { type: 'string', default: '0' },
      scale: { type: 'string', default: '2' },
      out: { type: 'string', short: 'o', default: 'samples.png' },
      threads: { type: 'string', default: '0' },
    },
  });
  const [n, seed, scale, threads] = [
    integer(values.n, 'n', 1),
    integer(values.seed, 'seed', 0),
    integer(values.scale, 'scale', 1),
    integer(values.threads, 'threads', 0),
  ];
  const vae = await loadVAE(values.model, { variant: values.variant, threads });
  const report = await vae.selftest();
  for (const line of report.lines) console.log(`  ${line}`);
  console.log(`selftest ${vae.variant} (onnxruntime-node ${vae.ort.env.versions?.common ?? ''}): ${report.summary}`);
  if (!report.passed) return 1;
  const grid = tile(await vae.sample(n, seed), vae.height, vae.width);
  const png = await encodePNG(upscale(grid, scale));
  await writeFile(`${values.out}.tmp`, png); // then rename: a reader never sees half a file
  await rename(`${values.out}.tmp`, values.out);
  console.log(
    `wrote ${values.out} (${n} samples, seed ${seed}, ${grid.width * scale} x ${grid.height * scale} pixels)`,
  );
  await vae.release();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`sample.mjs: error: ${err.message}`);
    if (err instanceof TypeError && err.code?.startsWith('ERR_PARSE_ARGS')) console.error(USAGE);
    process.exit(2);
  },
);

/**
 * The page's behaviour (index.html): load the model, self-test it, draw the grid and the latent walk.
 * Everything it shows is in `window.edgevae` too ({vae, report, seed, z, renders, walks}), for tests and
 * the browser console. A model that fails its checksums or its self-test shows no digits, only why.
 */

import { loadVAE } from './browser.js';
import { tile } from './grid.js';

const params = new URLSearchParams(location.search);
const MODEL = params.get('model') ?? '../runtime/models/default/';
const VARIANT = params.get('variant') ?? 'fp32';
const N = Number(params.get('n') ?? 16);
const SCALE = 3; // CSS pixels per image pixel
const $ = (id) => document.getElementById(id);
const state = { vae: null, report: null, seed: null, z: null, renders: 0, walks: 0 };
window.edgevae = state;
let queue = Promise.resolve(); // one graph run at a time

/** Run `task` after the ones before it; its error is shown on the page. */
function enqueue(task) {
  queue = queue.then(task).catch(showError);
  return queue;
}

function showError(err) {
  $('error').textContent = `${err.name ?? 'Error'}: ${err.message ?? err}`;
  $('error').hidden = false;
  $('status').textContent = 'Stopped: see the message above.';
  document.body.dataset.state = 'error';
}

/** Draw an 8-bit grayscale image on a canvas, scaled by CSS. */
function paint(canvas, { pixels, width, height }) {
  canvas.width = width;
  canvas.height = height;
  canvas.style.width = `${width * SCALE}px`;
  const rgba = new ImageData(width, height);
  pixels.forEach((v, i) => rgba.data.set([v, v, v, 255], 4 * i));
  canvas.getContext('2d').putImageData(rgba, 0, 0);
}

async function drawWalk() {
  const { vae, z } = state;
  const t = Number($('walk').value) / 100;
  const [first, last] = [z.data.subarray(0, vae.latent), z.data.subarray((z.rows - 1) * vae.latent)];
  const point = first.map((a, j) => (1 - t) * a + t * last[j]);
  const strip = await vae.decode([...first, ...point, ...last]); // the two ends, and the point at t between
  paint($('walk-image'), tile(strip, vae.height, vae.width, { cols: 3 }));
  state.walks += 1;
}

async function drawGrid(seed) {
  const { vae } = state;
  state.z = vae.sampleLatent(N, seed);
  paint($('grid'), tile(await vae.decode(state.z), vae.height, vae.width));
  await drawWalk();
  state.seed = seed;
  state.renders += 1;
  $('grid').dataset.seed = String(seed);
}

function onSeed() {
  const text = $('seed').value.trim();
  const seed = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(seed)) {
    $('seed-error').textContent = `seed must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}; got '${text}'`;
    return;
  }
  $('seed-error').textContent = '';
  return enqueue(() => drawGrid(seed));
}

function showVariant(vae) {
  const v = vae.manifest.variants?.[vae.variant] ?? {};
  const size = v.size ? `, ${v.size.toLocaleString('en')} bytes` : '';
  $('variant-info').textContent =
    `Variant in use: ${vae.variant} (${vae.files.join(' + ')}${size}): ${v.description ?? ''}`;
  $('variant').value = vae.variant;
}

function showReport(report) {
  $('selftest').className = report.passed ? 'pass' : 'fail';
  $('selftest').textContent = `${report.variant}, onnxruntime-web WASM: ${report.summary}`;
  $('selftest-lines').textContent = report.lines.join('\n');
}

async function main() {
  if (!Number.isInteger(N) || N < 2 || N > 256) {
    throw new RangeError(`n must be a whole number from 2 to 256; got ${params.get('n')}`);
  }
  $('seed').value = params.get('seed') ?? '0';
  $('variant').addEventListener('change', () => {
    params.set('variant', $('variant').value);
    location.search = params.toString();
  });
  state.vae = await loadVAE(MODEL, { variant: VARIANT });
  showVariant(state.vae);
  state.report = await state.vae.selftest();
  showReport(state.report);
  if (!state.report.passed) throw new Error(`the self-test failed (${state.report.summary}); no digits are shown`);
  $('seed').addEventListener('change', onSeed);
  $('walk').addEventListener('input', () => enqueue(drawWalk));
  await onSeed();
  if (document.body.dataset.state !== 'error') {
    $('status').textContent = `Ready: ${N} digits from ${MODEL}.`;
    document.body.dataset.state = 'ready';
  }
}

main().catch(showError);

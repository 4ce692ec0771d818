/**
 * Pictures of a batch of images: tile them into one 8-bit grayscale grid, and encode it as PNG.
 *
 *   const grid = tile(images, 28, 28);            // {pixels: Uint8Array, width, height}
 *   const png = await encodePNG(upscale(grid, 2));  // Uint8Array, a valid PNG file
 *
 * The layout is the Python runtime's (runtime/images.py): ceil(sqrt(n)) columns, 2 pixels of
 * white (1.0) around and between the images, values in [0, 1] rounded to 0..255. PNG (ISO/IEC 15948):
 * signature, IHDR, one zlib-compressed IDAT of filter-0 scanlines, IEND; CompressionStream('deflate')
 * writes the zlib stream (browsers and Node 18+).
 */

/**
 * Tile rows of height x width values in [0, 1] into one grayscale image.
 * @param {{data: Float32Array, rows: number}} images
 * @param {number} height
 * @param {number} width
 * @param {{cols?: number, pad?: number}} options
 * @returns {{pixels: Uint8Array, width: number, height: number, cols: number}}
 */
export function tile(images, height, width, { cols, pad = 2 } = {}) {
  const n = images.rows;
  const ncols = cols ?? Math.ceil(Math.sqrt(n));
  const nrows = Math.ceil(n / ncols);
  const W = ncols * (width + pad) + pad;
  const H = nrows * (height + pad) + pad;
  const pixels = new Uint8Array(W * H).fill(255);
  for (let i = 0; i < n; i++) {
    const top = pad + Math.floor(i / ncols) * (height + pad);
    const left = pad + (i % ncols) * (width + pad);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = images.data[i * height * width + y * width + x];
        pixels[(top + y) * W + left + x] = Math.round(Math.min(1, Math.max(0, v)) * 255);
      }
    }
  }
  return { pixels, width: W, height: H, cols: ncols };
}

/** The image scaled up `scale` times (nearest neighbour). */
export function upscale(image, scale) {
  const W = image.width * scale;
  const pixels = new Uint8Array(W * image.height * scale);
  for (let y = 0; y < image.height * scale; y++) {
    for (let x = 0; x < W; x++)
      pixels[y * W + x] = image.pixels[Math.floor(y / scale) * image.width + Math.floor(x / scale)];
  }
  return { pixels, width: W, height: image.height * scale };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * PNG bytes of an 8-bit grayscale image.
 * @param {{pixels: Uint8Array, width: number, height: number}} image
 * @returns {Promise<Uint8Array>}
 */
export async function encodePNG({ pixels, width, height }) {
  const raw = new Uint8Array(height * (width + 1)); // each scanline: filter type 0, then its pixels
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const zlib = new Uint8Array(
    await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream('deflate'))).arrayBuffer(),
  );
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8); // 8 bits, grayscale, deflate, adaptive filtering, no interlace
  const parts = [
    Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib),
    chunk('IEND', new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Reading a model folder and checking it: the manifest, then every file against its sha256.
 *
 *   const folder = await openFolder(read);                 // read(name) -> Promise<Uint8Array>
 *   const bytes = await folder.verified('decoder.onnx');   // throws ModelError unless intact
 *
 * Files are hashed with WebCrypto (crypto.subtle.digest, in browsers on https or localhost and in
 * Node 18+). The manifest carries a sha256 of its own canonical JSON (Python's json.dumps with
 * sorted keys and no spaces, itself left out); export writes it indented with sorted keys, so the
 * canonical text is the file's text without the whitespace outside strings and without that one
 * member. The manifest is refused when they disagree, as the Python runtime refuses it.
 */

import { CONTRACT } from './contract.js';

/** The error for a model folder that is missing, damaged or not what this package reads. */
export class ModelError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ModelError';
  }
}

/**
 * Lowercase hex sha256 of some bytes, by WebCrypto.
 * @param {Uint8Array} bytes
 * @returns {Promise<string>}
 */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * JSON text without the whitespace outside its strings.
 * @param {string} text
 * @returns {string}
 */
export function compactJson(text) {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i];
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (!' \t\n\r'.includes(c)) {
      out += c;
    }
  }
  return out;
}

/**
 * The parsed manifest, after checking its format, version and its own sha256.
 * @param {Uint8Array} raw the bytes of manifest.json
 * @param {string} where the folder, for messages
 * @returns {Promise<object>}
 */
export async function parseManifest(raw, where) {
  const path = `${where}${CONTRACT.manifestFile}`;
  let text;
  let manifest;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
    manifest = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`corrupt manifest ${path}: ${err.message}`);
  }
  if (manifest === null || typeof manifest !== 'object' || manifest.format !== CONTRACT.manifestFormat) {
    throw new ModelError(`${path} is not an edgevae manifest (format != '${CONTRACT.manifestFormat}')`);
  }
  const own = manifest[CONTRACT.manifestChecksum];
  if (own !== undefined) {
    const member = `,"${CONTRACT.manifestChecksum}":"${own}"`;
    const compact = compactJson(text);
    const body = compact.split(member);
    const enc = new TextEncoder();
    if (body.length !== 2 || (await sha256Hex(enc.encode(body.join('')))) !== own) {
      throw new ModelError(
        `corrupt manifest ${path}: its content does not match its own sha256 (modified or damaged after export)`,
      );
    }
  }
  if (manifest.version !== CONTRACT.manifestVersion) {
    throw new ModelError(
      `${path} has manifest version ${manifest.version}; this package reads ${CONTRACT.manifestVersion}`,
    );
  }
  for (const key of ['config', 'files']) {
    if (manifest[key] === null || typeof manifest[key] !== 'object') {
      throw new ModelError(`corrupt manifest ${path}: no '${key}' section`);
    }
  }
  return manifest;
}

/**
 * A model folder: its checked manifest and a way to read its other files, each checked against the
 * manifest's sha256 and size before it is returned.
 * @param {(name: string) => Promise<Uint8Array>} read the bytes of a file of the folder
 * @param {string} where the folder's name or URL, for messages (ending in '/')
 */
export async function openFolder(read, where = '') {
  const manifest = await parseManifest(await read(CONTRACT.manifestFile), where);
  /**
   * @param {string} name a file the manifest lists
   * @returns {Promise<Uint8Array>}
   */
  async function verified(name) {
    const entry = manifest.files[name];
    if (!entry || typeof entry.sha256 !== 'string') {
      throw new ModelError(`manifest in ${where} does not list ${name}`);
    }
    const bytes = await read(name);
    const digest = await sha256Hex(bytes);
    if (digest !== entry.sha256) {
      const what = bytes.length < (entry.size ?? 0) ? 'truncated' : 'modified';
      throw new ModelError(
        `model file ${where}${name} is corrupt (${what}): sha256 ${digest.slice(0, 16)}..., size ${bytes.length}; ` +
          `manifest expects ${entry.sha256.slice(0, 16)}..., size ${entry.size}`,
      );
    }
    return bytes;
  }
  return { manifest, verified, where };
}

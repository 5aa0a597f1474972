// selfcheck.cjs — run by ../install on a fresh install of this project (cwd: the install):
// @atproto/pds 0.4 reads every uploaded image's header with sharp, whose native code comes as
// the registry package @img/sharp-linux-x64 (no install script runs): check it loads and
// reads a real PNG, and that the PDS exports what lib/pds-server.mjs launches it with.
// And that the PDS and @atproto/repo share one @atproto/lexicon: with two copies (what a plain
// install of 0.4.176 resolves to today, @atproto/repo 0.8.13 wanting lexicon 0.6), importRepo's
// `instanceof BlobRef` never matches, so an imported repo's blobs are never linked to their
// records (listBlobs and listMissingBlobs answer nothing). package.json's overrides pin the
// @atproto packages to the versions 0.4.176 was released with.
const { createRequire } = require('node:module');
const zlib = require('node:zlib');
const path = require('node:path');

const req = createRequire(path.join(process.cwd(), 'package.json'));
const pdsReq = createRequire(req.resolve('@atproto/pds'));
const sharp = pdsReq('sharp');

function crc32(buf) {
  let c = ~0;
  for (const b of buf) { c ^= b; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1)); }
  return ~c >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
const ihdr = Buffer.from([0, 0, 0, 3, 0, 0, 0, 2, 8, 2, 0, 0, 0]); // 3x2, 8-bit RGB
const raw = Buffer.alloc(2 * (1 + 3 * 3), 0x7f);
raw[0] = 0; raw[10] = 0; // filter bytes
const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);

(async () => {
  const meta = await sharp(png).metadata();
  if (meta.format !== 'png' || meta.width !== 3 || meta.height !== 2) throw new Error(`sharp read ${JSON.stringify(meta)}`);
  const pds = req('@atproto/pds');
  const lexOfPds = pdsReq.resolve('@atproto/lexicon');
  const lexOfRepo = createRequire(pdsReq.resolve('@atproto/repo')).resolve('@atproto/lexicon');
  if (lexOfPds !== lexOfRepo) throw new Error(`two copies of @atproto/lexicon (${lexOfPds}, ${lexOfRepo}): imported blobs would not be linked to their records`);
  for (const f of ['PDS', 'readEnv', 'envToCfg', 'envToSecrets']) if (!pds[f]) throw new Error(`@atproto/pds exports no ${f}`);
  console.log(`pds-0.4 selfcheck: sharp ${sharp.versions?.sharp ?? '?'} (libvips ${sharp.versions?.vips ?? '?'}) read a PNG; @atproto/pds ${req('@atproto/pds/package.json').version}`);
})().catch((e) => { console.error(`pds-0.4 selfcheck: ${e.message}`); process.exit(1); });

// blobs.mjs — blob contents for the testbed's seed and mutate scripts.
import crypto from 'node:crypto';
import zlib from 'node:zlib';

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A valid 1x1 PNG of exactly `size` bytes (random padding in a private chunk: unique CIDs). */
export function png(size) {
  const ihdr = Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]); // 1x1, 8-bit greyscale
  const head = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(Buffer.from([0, crypto.randomInt(256)])))]);
  const end = pngChunk('IEND', Buffer.alloc(0));
  const pad = size - head.length - end.length - 12;
  if (pad < 0) return Buffer.concat([head, end]);
  return Buffer.concat([head, pngChunk('pdMv', crypto.randomBytes(pad)), end]);
}

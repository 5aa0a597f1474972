// mutate.mjs — changes a seeded account the way a day of use does: new posts (some with new
// images), edited records, deleted likes. Used by backup tests (incremental snapshots) and
// restore tests. Writes what changed to --out (JSON) so tests can compare.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { png } from './blobs.mjs';
import { die, parseArgs, writeFileAtomic } from './deps.mjs';
import { Session, xrpc } from './xrpc.mjs';

const PROG = 'testbed mutate';
const USAGE = `
usage: scripts/testbed/mutate --seed SEED.json --out FILE [--posts N] [--blobs N] [--edits N] [--deletes N]
                              [--deactivate]
Logs in as the account of SEED.json (the output of scripts/testbed/seed) and:
  --posts N    creates N new posts (default 5), the first --blobs of them with a new image blob
  --blobs N    new blobs (default 2)
  --edits N    rewrites N records of the custom collection with putRecord (default 3)
  --deletes N  deletes N likes (default 2)
  --deactivate then deactivates the account (deactivateAccount): its PDS serves its repo only
               with the account's own authentication
FILE gets {did, created:[uri], edited:[uri], deleted:[uri], newBlobs:[{cid,size}], total} where
total is the record count after the changes.
`;

const { opts } = parseArgs(PROG, process.argv.slice(2),
  { '--seed': 'str', '--out': 'str', '--posts': 'int', '--blobs': 'int', '--edits': 'int', '--deletes': 'int', '--deactivate': 'bool' }, USAGE);
if (!opts.seed || !opts.out) die(PROG, `--seed and --out are required\n${USAGE.trim()}`, 2);
const seed = JSON.parse(fs.readFileSync(opts.seed, 'utf8'));
const nPosts = opts.posts ?? 5, nBlobs = opts.blobs ?? 2, nEdits = opts.edits ?? 3, nDeletes = opts.deletes ?? 2;

const login = await xrpc(seed.pdsUrl, 'com.atproto.server.createSession', { body: { identifier: seed.did, password: seed.password } });
const s = new Session(seed.pdsUrl, login);
const out = { did: seed.did, created: [], edited: [], deleted: [], newBlobs: [] };
const now = () => new Date().toISOString();

for (let i = 0; i < nPosts; i++) {
  const record = { $type: 'app.bsky.feed.post', text: `day two, post ${i} ${crypto.randomBytes(4).toString('hex')}`, createdAt: now() };
  if (i < nBlobs) {
    const bytes = png(10000 + i * 7001); // a real PNG: random bytes may sniff as another type
    const up = await s.call('com.atproto.repo.uploadBlob', { body: bytes, contentType: 'image/png' });
    out.newBlobs.push({ cid: up.blob.ref.$link, size: bytes.length });
    record.embed = { $type: 'app.bsky.embed.images', images: [{ alt: `new image ${i}`, image: up.blob }] };
  }
  const r = await s.call('com.atproto.repo.createRecord', { body: { repo: seed.did, collection: 'app.bsky.feed.post', record } });
  out.created.push(r.uri);
}
const custom = nEdits > 0
  ? await s.call('com.atproto.repo.listRecords', { params: { repo: seed.did, collection: 'com.example.pdsmove.test', limit: nEdits } })
  : { records: [] };
for (const rec of custom.records.slice(0, nEdits)) {
  const rkey = rec.uri.split('/').pop();
  await s.call('com.atproto.repo.putRecord', {
    body: { repo: seed.did, collection: 'com.example.pdsmove.test', rkey, record: { ...rec.value, edited: now() } },
  });
  out.edited.push(rec.uri);
}
const likes = nDeletes > 0
  ? await s.call('com.atproto.repo.listRecords', { params: { repo: seed.did, collection: 'app.bsky.feed.like', limit: nDeletes } })
  : { records: [] };
for (const rec of likes.records.slice(0, nDeletes)) {
  await s.call('com.atproto.repo.deleteRecord', { body: { repo: seed.did, collection: 'app.bsky.feed.like', rkey: rec.uri.split('/').pop() } });
  out.deleted.push(rec.uri);
}
out.total = seed.inventory.total + out.created.length - out.deleted.length;
if (opts.deactivate) {
  await s.call('com.atproto.server.deactivateAccount', { body: {} });
  out.deactivated = true;
}
writeFileAtomic(opts.out, JSON.stringify(out, null, 2) + '\n', 0o600);
console.log(`mutated ${seed.handle}: +${out.created.length} posts, ${out.newBlobs.length} new blobs, ${out.edited.length} edits, -${out.deleted.length} likes -> ${out.total} records${out.deactivated ? ', deactivated' : ''}`);

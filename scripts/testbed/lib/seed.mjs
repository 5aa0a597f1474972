// seed.mjs — creates an account on one testbed PDS and fills it with a known inventory: posts
// (some replies, some with images), likes, follows, a profile with avatar and banner, records
// in a custom collection with record keys of many shapes, blobs of several sizes up to the
// upload limit, and preferences. Writes what tests compare against to --out (JSON, mode 0600).
import crypto from 'node:crypto';
import fs from 'node:fs';
import { png } from './blobs.mjs';
import { die, findPds, parseArgs, readTestbed, writeFileAtomic } from './deps.mjs';
import { Session, basicAuth, xrpc } from './xrpc.mjs';

const PROG = 'testbed seed';
const USAGE = `
usage: scripts/testbed/seed --testbed DIR/testbed.json --pds NAME --handle HANDLE --out FILE
                            [--profile small|large|large-lite|many-blobs] [--posts N] [--likes N] [--follows N]
                            [--blobs N] [--custom N] [--max-blob BYTES] [--password P]
Creates HANDLE (under the PDS's handle domain, e.g. alice.old.test) and fills its repo.
  --profile small   (default) 24 posts, 12 likes, 6 follows, 8 blobs, 16 custom records
  --profile large   30000 posts, 12000 likes, 5000 follows, 500 blobs, 3000 custom records
                    (50,001 records with the profile), for benchmarks; the blobs are photo
                    sized (16 KiB to 1 MB, a few of 2 MiB, one at --max-blob): about 270 MB,
                    the account issue 4's reference figures were measured with
  --profile large-lite  the same records with smaller blobs (1 KB to 256 KiB): about 48 MiB
  --profile many-blobs  the small profile's records with 1050 blobs of 100 to 1000 bytes (1052
                    with avatar and banner): more than a rate-limited PDS takes in a day
  --posts/--likes/--follows/--blobs/--custom N   override the profile's counts
  --max-blob BYTES  largest blob (default: the PDS's upload limit, at most 5 MiB)
Avatar and banner are two more blobs. FILE gets did, handle, password, the PDS url and the
inventory: records per collection, total, blobs [{cid, size, mimeType}], preferences.
`;

const PROFILES = {
  small: { posts: 24, likes: 12, follows: 6, blobs: 8, custom: 16 },
  large: { posts: 30000, likes: 12000, follows: 5000, blobs: 500, custom: 3000 },
  'large-lite': { posts: 30000, likes: 12000, follows: 5000, blobs: 500, custom: 3000 },
  // over the reference PDS's 1000 uploadBlob calls a day (rate-limit tests): tiny blobs
  'many-blobs': { posts: 24, likes: 12, follows: 6, blobs: 1050, custom: 130 },
};
const BATCH_WRITES = 200;          // com.atproto.repo.applyWrites allows at most 200 writes
const BATCH_JSON_BYTES = 100_000;  // and the PDS caps JSON bodies around 150 KB
const UPLOAD_CONCURRENCY = 4;
const MAX_BLOBS_PER_POST = 4;      // app.bsky.embed.images: 4 images
const MAX_POST_IMAGE_BYTES = 2_000_000; // of at most this size each
const MAX_BLOBS_PER_CUSTOM = 8;
const DEFAULT_MAX_BLOB = 5 * 1024 * 1024;
const CUSTOM = 'com.example.pdsmove.test';
// Record keys of every shape the syntax allows (besides TIDs, which most records get).
const LITERAL_RKEYS = ['self', 'a:b-c_d.e~f', 'literal:self', '~1.2-3_', '_', ':', '...', 'example.com',
  'dHJ1ZQ', 'UPPER.lower-09', 'x'.repeat(512)];

const { opts } = parseArgs(PROG, process.argv.slice(2), {
  '--testbed': 'string', '--pds': 'string', '--handle': 'string', '--out': 'string', '--profile': 'string',
  '--posts': 'int', '--likes': 'int', '--follows': 'int', '--blobs': 'int', '--custom': 'int',
  '--max-blob': 'int', '--password': 'string',
}, USAGE);
const tb = readTestbed(PROG, opts.testbed);
const pds = findPds(PROG, tb, opts.pds ?? 'old');
if (!opts.handle) die(PROG, '--handle is required', 2);
if (!opts.out) die(PROG, '--out FILE is required', 2);
const handle = opts.handle.toLowerCase();
if (!handle.endsWith(pds.handleDomain)) die(PROG, `handle ${handle} is not under ${pds.name}'s domain ${pds.handleDomain}`, 2);
const profileName = opts.profile ?? 'small';
const profile = PROFILES[profileName];
if (!profile) die(PROG, `--profile wants small, large, large-lite or many-blobs, got ${profileName}`, 2);
const n = Object.fromEntries(Object.keys(profile).map((k) => [k, opts[k] ?? profile[k]]));
const maxBlob = opts.maxBlob ?? Math.min(pds.blobLimit, DEFAULT_MAX_BLOB);
if (maxBlob < 100) die(PROG, '--max-blob must be at least 100 bytes', 2);

// --- content makers ---
const TID_CHARS = '234567abcdefghijklmnopqrstuvwxyz';
let lastTid = 0n;
/** A fresh, strictly increasing TID (13 chars, base32-sortable). */
function tid() {
  let v = (BigInt(Date.now()) * 1000n) << 10n;
  if (v <= lastTid) v = lastTid + 1n;
  lastTid = v;
  let s = '';
  for (let i = 0; i < 13; i++) { s = TID_CHARS[Number(v & 31n)] + s; v >>= 5n; }
  return s;
}

/** Bytes no file-type sniffer recognises, so the PDS keeps the declared octet-stream type. */
function opaque(size) {
  const tag = Buffer.from('pdsmove test blob\n');
  return Buffer.concat([tag, crypto.randomBytes(Math.max(0, size - tag.length))]).subarray(0, size);
}

function blobSize(i) {
  const small = [137, 4096, 65536, 700_001, 2 * 1024 * 1024];
  const lite = [1000, 4096, 16384, 65536, 262144];
  // photo sized: with 500 blobs about 270 MB in all, as in issue 4's reference measurement
  const large = [16384, 131072, 524288, 900_000, 1_000_000];
  if (profileName === 'many-blobs') return Math.min(maxBlob, [100, 300, 1000][i % 3]);
  if (i === 0 && n.blobs >= 3) return maxBlob; // one blob right at the limit
  if (profileName.startsWith('large')) {
    const mix = profileName === 'large' ? large : lite;
    return Math.min(maxBlob, i % 100 === 50 ? 2 * 1024 * 1024 : mix[i % mix.length]);
  }
  return Math.min(maxBlob, small[(i - 1 + small.length) % small.length]);
}

function fakeDid(i) {
  const h = crypto.createHash('sha256').update(`${handle}/follow/${i}`).digest();
  let s = '';
  for (let k = 0; k < 24; k++) s += TID_CHARS[h[k] & 31];
  return `did:plc:${s}`;
}

function timeAt(i) {
  return new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString();
}

// --- the plan, checked before anything is created ---
// Every third blob is opaque bytes (custom records only), the rest PNGs; PNGs small enough go
// on posts (4 per post) while posts last, everything else on custom records.
const plan = Array.from({ length: n.blobs }, (_, i) => ({ image: i % 3 !== 2, size: blobSize(i) }));
const postable = (b) => b.image && b.size <= MAX_POST_IMAGE_BYTES;
const postImageCount = Math.min(plan.filter(postable).length, n.posts * MAX_BLOBS_PER_POST);
if (n.blobs - postImageCount > n.custom * MAX_BLOBS_PER_CUSTOM) {
  die(PROG, `${n.blobs - postImageCount} blobs need records to reference them: raise --custom (or --posts) or lower --blobs`, 2);
}

// --- seeding ---
const t0 = Date.now();
const password = opts.password ?? crypto.randomBytes(18).toString('base64url');
const email = `${handle.split('.')[0]}-${crypto.randomBytes(4).toString('hex')}@example.com`;
let inviteCode;
if (pds.inviteRequired) {
  const r = await xrpc(pds.url, 'com.atproto.server.createInviteCode', { body: { useCount: 1 }, auth: basicAuth('admin', pds.adminPassword) });
  inviteCode = r.code;
}
const session = new Session(pds.url, await xrpc(pds.url, 'com.atproto.server.createAccount', {
  body: { handle, email, password, ...(inviteCode ? { inviteCode } : {}) },
}));
const did = session.did;

const records = {};
const count = (collection) => { records[collection] = (records[collection] ?? 0) + 1; };
const blobs = [];

async function upload(bytes, mime) {
  const r = await session.call('com.atproto.repo.uploadBlob', { body: bytes, contentType: mime });
  if (r.blob.size !== bytes.length) die(PROG, `uploadBlob stored ${r.blob.size} bytes, sent ${bytes.length}`);
  return r.blob;
}

const uploaded = new Array(n.blobs);
for (let next = 0; next < n.blobs;) {
  const wave = [];
  for (; next < n.blobs && wave.length < UPLOAD_CONCURRENCY; next++) {
    const i = next;
    const { image, size } = plan[i];
    wave.push(upload(image ? png(size) : opaque(size), image ? 'image/png' : 'application/octet-stream')
      .then((ref) => { uploaded[i] = { ref, postable: postable(plan[i]) }; }));
  }
  await Promise.all(wave);
}
const avatar = await upload(png(2000), 'image/png');
const banner = await upload(png(30000), 'image/png');
for (const ref of [...uploaded.map((b) => b.ref), avatar, banner]) {
  blobs.push({ cid: ref.ref.$link, size: ref.size, mimeType: ref.mimeType });
}

// Profile and preferences.
const profileRes = await session.call('com.atproto.repo.putRecord', {
  body: {
    repo: did, collection: 'app.bsky.actor.profile', rkey: 'self',
    record: {
      $type: 'app.bsky.actor.profile', displayName: `Seeded ${handle}`,
      description: `pdsmove testbed account (${profileName} profile). Ünïcødé ✓ 🦋`,
      avatar, banner, createdAt: timeAt(0),
    },
  },
});
count('app.bsky.actor.profile');
const preferences = [
  { $type: 'app.bsky.actor.defs#adultContentPref', enabled: false },
  { $type: 'app.bsky.actor.defs#contentLabelPref', label: 'graphic-media', visibility: 'warn' },
  { $type: 'app.bsky.actor.defs#savedFeedsPrefV2', items: [{ id: '3l6fsmxq4k42c', type: 'timeline', value: 'following', pinned: true }] },
  { $type: 'app.bsky.actor.defs#threadViewPref', sort: 'oldest' },
];
await session.call('app.bsky.actor.putPreferences', { body: { preferences } });
const storedPrefs = (await session.call('app.bsky.actor.getPreferences')).preferences ?? [];
if (storedPrefs.length !== preferences.length) die(PROG, `getPreferences returns ${storedPrefs.length} preferences, we put ${preferences.length}`);

// Records go through applyWrites in batches; `pending` holds writes not sent yet.
let pending = [];
let pendingBytes = 0;
async function flush() {
  if (!pending.length) return [];
  const writes = pending;
  pending = [];
  pendingBytes = 0;
  const r = await session.call('com.atproto.repo.applyWrites', { body: { repo: did, writes } });
  const results = r?.results ?? [];
  if (results.length !== writes.length) die(PROG, `applyWrites answered ${results.length} results for ${writes.length} writes`);
  writes.forEach((w) => count(w.collection));
  return results;
}
async function create(collection, value, rkey) {
  const w = { $type: 'com.atproto.repo.applyWrites#create', collection, value, ...(rkey ? { rkey } : {}) };
  const size = JSON.stringify(w).length;
  let results = [];
  if (pending.length >= BATCH_WRITES || pendingBytes + size > BATCH_JSON_BYTES) results = await flush();
  pending.push(w);
  pendingBytes += size;
  return results;
}

// Blob carriers, as planned above.
const imageQueue = uploaded.filter((b) => b.postable).map((b) => b.ref);
const otherQueue = uploaded.filter((b) => !b.postable).map((b) => b.ref);
const postsWithImages = Math.min(n.posts, Math.ceil(imageQueue.length / MAX_BLOBS_PER_POST));
const postImages = [];
for (let i = 0; i < postsWithImages; i++) postImages.push(imageQueue.splice(0, MAX_BLOBS_PER_POST));
const customBlobs = [...otherQueue, ...imageQueue];
if (customBlobs.length > n.custom * MAX_BLOBS_PER_CUSTOM) die(PROG, 'internal: blob plan and carriers disagree');

// Posts: every 7th replies to an earlier post (from an earlier batch, whose CID is known).
const postRefs = [];
for (let i = 0; i < n.posts; i++) {
  const post = { $type: 'app.bsky.feed.post', text: `post ${i + 1} of ${n.posts} from ${handle}`, langs: ['en'], createdAt: timeAt(i + 1) };
  if (i < postImages.length) {
    post.embed = { $type: 'app.bsky.embed.images', images: postImages[i].map((image, k) => ({ image, alt: `image ${k + 1} of post ${i + 1}` })) };
  }
  if (i % 7 === 6 && postRefs.length) {
    const parent = postRefs[postRefs.length - 1];
    post.reply = { root: postRefs[0], parent };
  }
  const res = await create('app.bsky.feed.post', post);
  for (const r of res) if (r.uri.includes('/app.bsky.feed.post/')) postRefs.push({ uri: r.uri, cid: r.cid });
}
for (const r of await flush()) if (r.uri.includes('/app.bsky.feed.post/')) postRefs.push({ uri: r.uri, cid: r.cid });

const likeTargets = postRefs.length ? postRefs : [{ uri: profileRes.uri, cid: profileRes.cid }];
for (let i = 0; i < n.likes; i++) {
  await create('app.bsky.feed.like', { $type: 'app.bsky.feed.like', subject: likeTargets[i % likeTargets.length], createdAt: timeAt(n.posts + i + 1) });
}
for (let i = 0; i < n.follows; i++) {
  await create('app.bsky.graph.follow', { $type: 'app.bsky.graph.follow', subject: fakeDid(i), createdAt: timeAt(i + 1) });
}
const perCustom = n.custom ? Math.ceil(customBlobs.length / n.custom) : 0;
for (let i = 0; i < n.custom; i++) {
  const rkey = i < LITERAL_RKEYS.length ? LITERAL_RKEYS[i] : i % 2 ? tid() : `k${i}_x.y~z:w-${i}`;
  const value = {
    $type: CUSTOM, n: i, text: `custom record ${i}`, createdAt: timeAt(i + 1),
    nested: { list: [1, -2, 'three', true, null], empty: {}, deep: { deeper: { deepest: i } } },
    bytes: { $bytes: crypto.createHash('sha256').update(`${i}`).digest('base64').replace(/=+$/, '') },
  };
  if (postRefs.length) value.link = { $link: postRefs[i % postRefs.length].cid };
  const mine = customBlobs.splice(0, perCustom);
  if (mine.length) value.blobs = mine;
  await create(CUSTOM, value, rkey);
}
await flush();

// --- self-check: what the PDS now holds is what we are about to report ---
const total = Object.values(records).reduce((a, b) => a + b, 0);
let listed = 0;
let cursor;
do {
  const r = await session.call('com.atproto.sync.listBlobs', { params: { did, limit: 1000, cursor } });
  listed += r.cids.length;
  cursor = r.cids.length ? r.cursor : undefined;
} while (cursor);
if (listed !== blobs.length) die(PROG, `the PDS lists ${listed} blobs for ${did}, we uploaded ${blobs.length}`);
const desc = await session.call('com.atproto.repo.describeRepo', { params: { repo: did } });
const want = Object.keys(records).sort().join(',');
if ([...desc.collections].sort().join(',') !== want) die(PROG, `describeRepo lists collections ${desc.collections.join(',')}, expected ${want}`);

const out = {
  did, handle, password, email,
  pds: pds.name, pdsUrl: pds.url,
  profile: profileName,
  inventory: {
    records: Object.fromEntries(Object.entries(records).sort()),
    total,
    blobs,
    blobBytes: blobs.reduce((a, b) => a + b.size, 0),
    preferences: preferences.length,
  },
  seconds: (Date.now() - t0) / 1000,
};
writeFileAtomic(opts.out, `${JSON.stringify(out, null, 2)}\n`, 0o600);
console.log(`seeded ${handle} (${did}) on ${pds.name}: ${total} records, ${blobs.length} blobs (${out.inventory.blobBytes} bytes) in ${out.seconds.toFixed(1)} s -> ${opts.out}`);

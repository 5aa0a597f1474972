// build-car.mjs — writes a repository CAR of N records built by the official @atproto/repo
// (Repo.create over a MemoryBlockstore with N creates, then blocksToCarFile), for the
// large-repo mode of scripts/bench. Run with the testbed's Node from its install dir:
//   node build-car.mjs N OUT.car
// Records are deterministic (posts, likes, follows in 6:3:1), so the same N gives the same tree
// shape; the signing key is fresh each run.
import fs from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(process.env.PDSMOVE_TESTBED_HOME + '/package.json')
const { Repo, MemoryBlockstore, WriteOpAction, blocksToCarFile } = require('@atproto/repo')
const { Secp256k1Keypair } = require('@atproto/crypto')

const n = Number(process.argv[2])
const out = process.argv[3]
if (!Number.isInteger(n) || n < 1 || !out) {
  console.error('usage: build-car.mjs N OUT.car')
  process.exit(2)
}

const S32 = '234567abcdefghijklmnopqrstuvwxyz'
function tid(i) {
  // 13-char TID: microsecond timestamp (base32-sortable) + clock id
  let t = BigInt(1700000000000000 + i * 1000) * 1024n
  let s = ''
  for (let k = 0; k < 13; k++) { s = S32[Number(t & 31n)] + s; t >>= 5n }
  return s
}

const did = 'did:plc:benchbenchbenchbenchbenc'
const writes = []
for (let i = 0; i < n; i++) {
  const createdAt = new Date(1700000000000 + i * 1000).toISOString()
  const m = i % 10
  if (m < 6) {
    writes.push({ action: WriteOpAction.Create, collection: 'app.bsky.feed.post', rkey: tid(i),
      record: { $type: 'app.bsky.feed.post', text: `benchmark post number ${i}: some words to give it a size`, createdAt } })
  } else if (m < 9) {
    writes.push({ action: WriteOpAction.Create, collection: 'app.bsky.feed.like', rkey: tid(i),
      record: { $type: 'app.bsky.feed.like', createdAt,
        subject: { uri: `at://${did}/app.bsky.feed.post/${tid(i - 3)}`, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' } } })
  } else {
    writes.push({ action: WriteOpAction.Create, collection: 'app.bsky.graph.follow', rkey: tid(i),
      record: { $type: 'app.bsky.graph.follow', subject: `did:plc:follow${String(i).padStart(19, '0')}`, createdAt } })
  }
}
const t0 = Date.now()
const storage = new MemoryBlockstore()
const keypair = await Secp256k1Keypair.create()
await Repo.create(storage, did, keypair, writes)
const car = await blocksToCarFile(storage.root, storage.blocks)
fs.writeFileSync(out + '.part', car)
fs.renameSync(out + '.part', out)
console.error(`build-car: ${n} records, ${car.length} bytes, ${((Date.now() - t0) / 1000).toFixed(1)} s`)

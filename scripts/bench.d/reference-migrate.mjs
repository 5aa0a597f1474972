// reference-migrate.mjs — the official account-migration flow on the JS client @atproto/api,
// sequential as the guides show it, for scripts/bench to compare pdsmove against. Progress lines
// on stderr use pdsmove's format ("==> step", "    ok step: detail") so one parser times both;
// a JSON summary (records not counted; CAR bytes, blobs, blob bytes) goes to stdout.
//   node reference-migrate.mjs --old URL --new URL --handle H --password-file F
//        --new-handle H --new-password-file F --email E --account-db OLD_ACCOUNT_SQLITE
// Run with the testbed's Node 22 and PDSMOVE_TESTBED_HOME set (deps.mjs finds the packages).
import fs from 'node:fs';
import { die, load, parseArgs, requireDep, sleep } from '../testbed/lib/deps.mjs';

const PROG = 'reference-migrate';
const USAGE = `
usage: reference-migrate.mjs --old URL --new URL --handle H --password-file F --new-handle H
                             --new-password-file F --email E --account-db PATH [--invite-code C]
`;
const { opts } = parseArgs(PROG, process.argv.slice(2), {
  '--old': 'string', '--new': 'string', '--handle': 'string', '--password-file': 'string',
  '--new-handle': 'string', '--new-password-file': 'string', '--email': 'string',
  '--account-db': 'string', '--invite-code': 'string',
}, USAGE);
for (const k of ['old', 'new', 'handle', 'passwordFile', 'newHandle', 'newPasswordFile', 'email', 'accountDb']) {
  if (!opts[k]) die(PROG, `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is required`, 2);
}
const password = fs.readFileSync(opts.passwordFile, 'utf8').trim();
const newPassword = fs.readFileSync(opts.newPasswordFile, 'utf8').trim();

const { AtpAgent } = await load('@atproto/api');
const Database = requireDep('better-sqlite3');

let current = null;
const begin = (step) => { current = step; process.stderr.write(`==> ${step}\n`); };
const ok = (detail) => process.stderr.write(`    ok ${current}${detail ? `: ${detail}` : ''}\n`);
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

/** The newest plc_operation email token of did in the old PDS's account.sqlite (no SMTP here). */
async function tokenFromDb(did) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const db = new Database(opts.accountDb, { readonly: true, fileMustExist: true });
    try {
      const row = db.prepare("SELECT token FROM email_token WHERE did = ? AND purpose = 'plc_operation' ORDER BY requestedAt DESC LIMIT 1").get(did);
      if (row) return row.token;
    } finally {
      db.close();
    }
    if (Date.now() > deadline) die(PROG, `no plc_operation token for ${did} in ${opts.accountDb}`);
    await sleep(50);
  }
}

try {
  const oldAgent = new AtpAgent({ service: opts.old });
  const newAgent = new AtpAgent({ service: opts.new });

  begin('preflight');
  await oldAgent.login({ identifier: opts.handle, password });
  const accountDid = oldAgent.session?.did;
  const describeRes = await newAgent.com.atproto.server.describeServer();
  const newServerDid = describeRes.data.did;
  ok(accountDid);

  begin('create-account');
  const serviceJwtRes = await oldAgent.com.atproto.server.getServiceAuth({
    aud: newServerDid,
    lxm: 'com.atproto.server.createAccount',
  });
  await newAgent.com.atproto.server.createAccount({
    handle: opts.newHandle, email: opts.email, password: newPassword, did: accountDid,
    ...(opts.inviteCode ? { inviteCode: opts.inviteCode } : {}),
  }, {
    headers: { authorization: `Bearer ${serviceJwtRes.data.token}` },
    encoding: 'application/json',
  });
  await newAgent.login({ identifier: opts.newHandle, password: newPassword });
  ok(opts.newHandle);

  begin('export');
  const repoRes = await oldAgent.com.atproto.sync.getRepo({ did: accountDid });
  const carBytes = repoRes.data.length;
  ok(`repo ${mib(carBytes)}`);

  begin('import');
  await newAgent.com.atproto.repo.importRepo(repoRes.data, { encoding: 'application/vnd.ipld.car' });
  ok();

  begin('blobs');
  let blobs = 0;
  let blobBytes = 0;
  let blobCursor;
  do {
    const listedBlobs = await oldAgent.com.atproto.sync.listBlobs({ did: accountDid, cursor: blobCursor });
    for (const cid of listedBlobs.data.cids) {
      const blobRes = await oldAgent.com.atproto.sync.getBlob({ did: accountDid, cid });
      await newAgent.com.atproto.repo.uploadBlob(blobRes.data, { encoding: blobRes.headers['content-type'] });
      blobs++;
      blobBytes += blobRes.data.length;
    }
    blobCursor = listedBlobs.data.cursor;
  } while (blobCursor);
  ok(`${blobs} blobs, ${mib(blobBytes)}`);

  begin('preferences');
  const prefs = await oldAgent.app.bsky.actor.getPreferences();
  await newAgent.app.bsky.actor.putPreferences(prefs.data);
  ok();

  begin('identity');
  const getDidCredentials = await newAgent.com.atproto.identity.getRecommendedDidCredentials();
  const rotationKeys = getDidCredentials.data.rotationKeys ?? [];
  if (!rotationKeys.length) throw new Error('No rotation key provided');
  const credentials = { ...getDidCredentials.data, rotationKeys };
  await oldAgent.com.atproto.identity.requestPlcOperationSignature();
  const token = await tokenFromDb(accountDid);
  const plcOp = await oldAgent.com.atproto.identity.signPlcOperation({ token, ...credentials });
  await newAgent.com.atproto.identity.submitPlcOperation({ operation: plcOp.data.operation });
  ok();

  begin('activate');
  await newAgent.com.atproto.server.activateAccount();
  ok();

  begin('deactivate-old');
  await oldAgent.com.atproto.server.deactivateAccount({});
  ok();

  console.log(JSON.stringify({ did: accountDid, car_bytes: carBytes, blobs, blob_bytes: blobBytes }));
} catch (e) {
  if (current) process.stderr.write(`    FAILED ${current}\n`);
  die(PROG, `${current ?? 'start'}: ${e?.error ? `${e.error}: ` : ''}${e?.message ?? e}`);
}

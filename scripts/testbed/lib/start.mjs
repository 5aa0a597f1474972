// start.mjs — starts the testbed: one PLC directory and N reference PDSes on loopback, each
// with its own port, data dir, keys and secrets, as detached processes logging into DIR; waits
// until all are healthy and writes DIR/testbed.json. On any failure it prints the log tail and
// stops everything it started. Run through scripts/testbed/start (see its --help).
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { die, isOurProcess, parseArgs, pollHealthy, sleep, writeFileAtomic } from './deps.mjs';
import { pdsRuntime } from './versions.mjs';

const PROG = 'testbed start';
const USAGE = `
usage: scripts/testbed/start [--dir DIR] [--pds N] [--invite-required] [--rate-limits]
                             [--blob-limit BYTES] [--import-limit BYTES] [--timeout SECONDS]
                             [--proxied] [--pds-version NAME=V[,NAME=V...]]
                             [--extra-pds NAME:SWITCHES]...
Starts a PLC directory and N reference PDSes (default 2: "old" on .old.test, "new" on .new.test)
on 127.0.0.1, writes DIR/testbed.json (default DIR: /tmp/pdsmove-testbed). Stop with
scripts/testbed/stop --dir DIR.
  --invite-required    PDS_INVITE_REQUIRED=true (make codes with scripts/testbed/invite)
  --rate-limits        PDS_RATE_LIMITS_ENABLED=true (429 handling)
  --blob-limit BYTES   PDS_BLOB_UPLOAD_LIMIT (default 104857600, as the official installer)
  --import-limit BYTES PDS_MAX_REPO_IMPORT_SIZE (default: unset, so the PDS uses the blob limit)
  --timeout SECONDS    how long to wait for each server to become healthy (default 120)
  --extra-pds NAME:SWITCHES
                       one more PDS named NAME (handles *.NAME.test) configured differently:
                       SWITCHES is a comma-separated list of invite-required, rate-limits,
                       blob-limit=BYTES, import-limit=BYTES, ratelimit-bypass-key=HEX (sets
                       PDS_RATE_LIMIT_BYPASS_KEY), version=V, applied on top of the switches
                       above. Repeatable. E.g. --extra-pds strict:invite-required,blob-limit=1000000
  --pds-version NAME=V runs PDS NAME (old, new, ...) from the older release line V (e.g. 0.4,
                       from scripts/testbed/pds-0.4, installed on first use) instead of the
                       current one; version=V does the same for an --extra-pds
  --proxied            each PDS listens on another free port (listenPort in testbed.json) and
                       leaves its advertised port (port, url) to a proxy you start in front of
                       it, e.g. scripts/bench.d/wanproxy.mjs; nothing answers there until then
`;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PLC_PROGRAM = path.join(HERE, 'plc-server.mjs');
const PDS_PROGRAM = path.join(HERE, 'pds-server.mjs');
const DEFAULT_BLOB_LIMIT = 104857600;
const MAX_PDS = 8;
// secp256k1 group order: a private key must be in [1, n-1].
const K256_N = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141');

// --extra-pds may repeat, which parseArgs does not do: take those out first.
const argv = [];
const extraSpecs = [];
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--extra-pds') {
    if (i + 1 >= process.argv.length) die(PROG, '--extra-pds needs a value', 2);
    extraSpecs.push(process.argv[++i]);
  } else if (a.startsWith('--extra-pds=')) {
    extraSpecs.push(a.slice('--extra-pds='.length));
  } else {
    argv.push(a);
  }
}
const { opts } = parseArgs(PROG, argv, {
  '--dir': 'string', '--pds': 'int', '--invite-required': 'bool', '--rate-limits': 'bool',
  '--blob-limit': 'int', '--import-limit': 'int', '--timeout': 'int', '--proxied': 'bool',
  '--pds-version': 'string',
}, USAGE);
const dir = path.resolve(opts.dir ?? '/tmp/pdsmove-testbed');
const nPds = opts.pds ?? 2;
if (nPds < 1 || nPds > MAX_PDS) die(PROG, `--pds wants 1..${MAX_PDS}, got ${nPds}`, 2);
if (opts.blobLimit === 0) die(PROG, '--blob-limit must be positive', 2);
if (opts.importLimit === 0) die(PROG, '--import-limit must be positive', 2);
const blobLimit = opts.blobLimit ?? DEFAULT_BLOB_LIMIT;
const timeoutMs = (opts.timeout ?? 120) * 1000;
const tbFile = path.join(dir, 'testbed.json');
const dirArg = `--testbed-dir=${dir}`;

const pdsName = (i) => (i === 0 ? 'old' : i === 1 ? 'new' : `pds${i + 1}`);

// What each PDS gets: the global switches, then (for --extra-pds) its own on top.
const globalSettings = {
  inviteRequired: !!opts.inviteRequired,
  rateLimits: !!opts.rateLimits,
  blobLimit,
  importLimit: opts.importLimit ?? null, // null: PDS_MAX_REPO_IMPORT_SIZE unset (= the blob limit)
};
function parseExtra(spec) {
  const colon = spec.indexOf(':');
  const name = colon < 0 ? spec : spec.slice(0, colon);
  const what = `--extra-pds ${spec}`;
  if (!/^[a-z][a-z0-9]{0,15}$/.test(name)) die(PROG, `${what}: NAME must be 1-16 lowercase letters/digits, starting with a letter`, 2);
  if (name === 'old' || name === 'new' || /^pds[0-9]+$/.test(name)) die(PROG, `${what}: the name ${name} is taken by the --pds ones`, 2);
  const settings = { ...globalSettings };
  for (const sw of colon < 0 ? [] : spec.slice(colon + 1).split(',').filter((x) => x !== '')) {
    const eq = sw.indexOf('=');
    const key = eq < 0 ? sw : sw.slice(0, eq);
    const val = eq < 0 ? undefined : sw.slice(eq + 1);
    const bytes = () => {
      if (val === undefined || !/^[0-9]+$/.test(val) || Number(val) === 0) die(PROG, `${what}: ${key} wants a positive number of bytes`, 2);
      return Number(val);
    };
    if (key === 'invite-required' && val === undefined) settings.inviteRequired = true;
    else if (key === 'rate-limits' && val === undefined) settings.rateLimits = true;
    else if (key === 'blob-limit') settings.blobLimit = bytes();
    else if (key === 'import-limit') settings.importLimit = bytes();
    else if (key === 'ratelimit-bypass-key' && /^[0-9a-f]{16,128}$/.test(val ?? '')) settings.rateLimitBypassKey = val;
    else if (key === 'version' && val) settings.version = val;
    else die(PROG, `${what}: unknown switch "${sw}" (have: invite-required, rate-limits, blob-limit=BYTES, import-limit=BYTES, ratelimit-bypass-key=HEX of 16-128 digits, version=V)`, 2);
  }
  return { name, settings };
}
const plan = [];
for (let i = 0; i < nPds; i++) plan.push({ name: pdsName(i), settings: globalSettings });
for (const spec of extraSpecs) {
  const x = parseExtra(spec);
  if (plan.some((p) => p.name === x.name)) die(PROG, `--extra-pds: two PDSes named ${x.name}`, 2);
  plan.push(x);
}
if (plan.length > MAX_PDS) die(PROG, `at most ${MAX_PDS} PDSes in all, asked for ${plan.length}`, 2);
for (const nv of (opts.pdsVersion ?? '').split(',').filter((x) => x !== '')) {
  const [name, v] = nv.split('=');
  const i = plan.findIndex((p) => p.name === name);
  if (i < 0 || !v) die(PROG, `--pds-version ${nv}: wants NAME=V with NAME one of ${plan.map((p) => p.name).join(', ')}`, 2);
  plan[i] = { name, settings: { ...plan[i].settings, version: v } };
}
// Each PDS's Node project (installs an older line on first use, before anything starts).
const runtimes = new Map();
for (const { settings } of plan) {
  const v = settings.version ?? 'current';
  if (!runtimes.has(v)) runtimes.set(v, pdsRuntime(PROG, v));
}
const nAll = plan.length;
const hex = (n) => crypto.randomBytes(n).toString('hex');
function k256PrivateKeyHex() {
  for (;;) {
    const k = crypto.randomBytes(32);
    const v = BigInt(`0x${k.toString('hex')}`);
    if (v > 0n && v < K256_N) return k.toString('hex');
  }
}

/** A port the kernel says is free right now on loopback (the server binds it moments later). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// --- the directory: fresh, or one an earlier (stopped) testbed left ---
const OUR_ENTRIES = /^(testbed(\.stopped)?\.json|plc\.log|pds-[a-z0-9]+(\.log)?|.*\.tmp-\d+)$/;
function prepareDir() {
  fs.mkdirSync(dir, { recursive: true });
  if (fs.existsSync(tbFile)) {
    let old = null;
    try { old = JSON.parse(fs.readFileSync(tbFile, 'utf8')); } catch { /* unreadable: treat as stale */ }
    const procs = old ? [old.plc, ...(old.pds ?? [])].filter(Boolean) : [];
    const live = procs.filter((p) => isOurProcess(p.pid, [p.program, dirArg]));
    if (live.length) die(PROG, `a testbed is already running in ${dir} (pids ${live.map((p) => p.pid).join(' ')}); stop it first: scripts/testbed/stop --dir ${dir}`);
  }
  const entries = fs.readdirSync(dir);
  const ours = entries.filter((e) => OUR_ENTRIES.test(e));
  if (ours.length === 0 && entries.length > 0) {
    const foreign = entries.filter((e) => !OUR_ENTRIES.test(e));
    die(PROG, `${dir} is not empty and was never a testbed (${foreign.slice(0, 5).join(', ')}): pick another --dir`);
  }
  // The PLC directory keeps its state in memory, so PDS data from an earlier run would refer to
  // DIDs that no longer exist: always start from clean data. Other files (seed outputs, CARs)
  // are left alone.
  for (const e of ours) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
}

// --- processes ---
const started = []; // { name, pid, child, log, exited }

function launch(name, program, args, env, log, node = process.execPath) {
  const fd = fs.openSync(log, 'a');
  const child = spawn(node, [program, dirArg, ...args], {
    cwd: dir, env, detached: true, stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  const rec = { name, pid: child.pid, child, log, program, exited: null };
  child.on('exit', (code, signal) => { rec.exited = signal ? `killed by ${signal}` : `exited with status ${code}`; });
  child.on('error', (e) => { rec.exited = `could not start: ${e.message}`; });
  child.unref();
  started.push(rec);
  return rec;
}

function tail(file, lines = 40) {
  try {
    const text = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch (e) {
    return `(no log: ${e.message})`;
  }
}

async function stopStarted() {
  for (const r of started) if (!r.exited) { try { process.kill(r.pid, 'SIGTERM'); } catch { /* gone */ } }
  const deadline = Date.now() + 8000;
  while (started.some((r) => !r.exited) && Date.now() < deadline) await sleep(100);
  for (const r of started) if (!r.exited) { try { process.kill(r.pid, 'SIGKILL'); } catch { /* gone */ } }
  while (started.some((r) => !r.exited) && Date.now() < deadline + 3000) await sleep(50);
}

async function fail(msg, rec) {
  console.error(`${PROG}: ${msg}`);
  if (rec) console.error(`--- last lines of ${rec.log} ---\n${tail(rec.log)}\n---`);
  await stopStarted();
  fs.rmSync(tbFile, { force: true });
  process.exit(1);
}

async function waitHealthy(rec, url) {
  const why = await pollHealthy(url, timeoutMs, () => rec.exited);
  if (why) return fail(`${rec.name} ${why}`, rec);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => fail(`interrupted by ${sig}`));
}

// --- main ---
prepareDir();
const t0 = Date.now();
const ports = new Set();
// --proxied: one more port per PDS, the one it really listens on (its advertised port is the proxy's).
while (ports.size < nAll + 1 + (opts.proxied ? nAll : 0)) ports.add(await freePort());
const [plcPort, ...morePorts] = [...ports];
const pdsPorts = morePorts.slice(0, nAll);
const listenPorts = opts.proxied ? morePorts.slice(nAll) : pdsPorts;

const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PDS_')));
const plcUrl = `http://localhost:${plcPort}`;
const plc = launch('plc', PLC_PROGRAM, [`--port=${plcPort}`], baseEnv, path.join(dir, 'plc.log'));
await waitHealthy(plc, `http://127.0.0.1:${plcPort}/_health`);

const pdses = [];
for (let i = 0; i < nAll; i++) {
  const { name, settings } = plan[i];
  const port = pdsPorts[i];
  const root = path.join(dir, `pds-${name}`);
  const dataDir = path.join(root, 'data');
  const blobDir = path.join(root, 'blobs');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(blobDir, { recursive: true, mode: 0o700 });
  const p = {
    name,
    url: `http://localhost:${port}`,
    port,
    listenPort: listenPorts[i],
    did: `did:web:localhost%3A${port}`,
    handleDomain: `.${name}.test`,
    dataDir,
    blobDir,
    accountDb: path.join(dataDir, 'account.sqlite'),
    log: path.join(dir, `pds-${name}.log`),
    adminPassword: hex(16),
    jwtSecret: hex(16),
    rotationKeyHex: k256PrivateKeyHex(),
    inviteRequired: settings.inviteRequired,
    rateLimits: settings.rateLimits,
    blobLimit: settings.blobLimit,
    importLimit: settings.importLimit ?? settings.blobLimit,
    rateLimitBypassKey: settings.rateLimitBypassKey ?? null,
    // what scripts/testbed/restart starts it with again (program and environment)
    envFile: path.join(root, 'env.json'),
  };
  const env = {
    ...baseEnv,
    PDS_HOSTNAME: 'localhost',
    PDS_PORT: String(port),
    PDS_SERVICE_DID: p.did,
    PDS_DEV_MODE: 'true',
    PDS_INVITE_REQUIRED: String(p.inviteRequired),
    PDS_JWT_SECRET: p.jwtSecret,
    PDS_ADMIN_PASSWORD: p.adminPassword,
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: p.rotationKeyHex,
    PDS_DATA_DIRECTORY: dataDir,
    PDS_BLOBSTORE_DISK_LOCATION: blobDir,
    // A host name, not 127.0.0.1: the PDS's DID resolver refuses IP literals.
    PDS_DID_PLC_URL: plcUrl,
    PDS_SERVICE_HANDLE_DOMAINS: p.handleDomain,
    PDS_CRAWLERS: '',
    // Some app view must be configured or app.bsky.actor.{get,put}Preferences are not served;
    // preferences are then stored locally and this address is never contacted.
    PDS_BSKY_APP_VIEW_URL: 'http://127.0.0.1:1',
    PDS_BSKY_APP_VIEW_DID: 'did:example:appview',
    PDS_RATE_LIMITS_ENABLED: String(p.rateLimits),
    PDS_DISABLE_SSRF_PROTECTION: 'true',
    PDS_DID_CACHE_STALE_TTL: '1000',
    PDS_DID_CACHE_MAX_TTL: '5000',
    PDS_BLOB_UPLOAD_LIMIT: String(settings.blobLimit),
    LOG_ENABLED: 'true',
    LOG_LEVEL: process.env.TESTBED_LOG_LEVEL || 'info',
  };
  if (settings.importLimit) env.PDS_MAX_REPO_IMPORT_SIZE = String(settings.importLimit);
  if (opts.proxied) env.TESTBED_LISTEN_PORT = String(p.listenPort);
  if (p.rateLimitBypassKey) env.PDS_RATE_LIMIT_BYPASS_KEY = p.rateLimitBypassKey;
  // Which release runs it, and how: `node program --testbed-dir=DIR --name=NAME` with this
  // env and PDSMOVE_TESTBED_HOME=home starts it again the same way (scripts/testbed/restart).
  const rt = runtimes.get(settings.version ?? 'current');
  Object.assign(p, { version: rt.version, pdsVersion: rt.pdsVersion, node: rt.node, home: rt.home });
  env.PDSMOVE_TESTBED_HOME = rt.home;
  // only what we set: restart puts it on top of its own environment, as here
  const own = Object.fromEntries(Object.entries(env).filter(([k]) => !(k in baseEnv) || baseEnv[k] !== env[k]));
  writeFileAtomic(p.envFile, `${JSON.stringify(own)}\n`, 0o600);
  const rec = launch(`pds ${name}`, PDS_PROGRAM, [`--name=${name}`], env, p.log, rt.node);
  p.pid = rec.pid;
  p.program = PDS_PROGRAM;
  pdses.push({ p, rec });
}
await Promise.all(pdses.map(({ p, rec }) => waitHealthy(rec, `http://127.0.0.1:${p.listenPort}/xrpc/_health`)));

const testbed = {
  version: 1,
  dir,
  startedAt: new Date().toISOString(),
  plc: { url: plcUrl, port: plcPort, pid: plc.pid, program: PLC_PROGRAM, log: plc.log },
  pds: pdses.map(({ p }) => p),
};
writeFileAtomic(tbFile, `${JSON.stringify(testbed, null, 2)}\n`, 0o600);

console.log(`testbed up in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${tbFile}`);
console.log(`  plc        ${plcUrl}  pid ${plc.pid}`);
for (const { p } of pdses) {
  const behind = p.listenPort !== p.port ? `  (listens on ${p.listenPort}: start a proxy on ${p.port})` : '';
  console.log(`  pds ${p.name.padEnd(6)} ${p.url}  pid ${p.pid}  handles *${p.handleDomain}  ${p.did}  @atproto/pds ${p.pdsVersion}${behind}`);
}
console.log(`stop it with: scripts/testbed/stop --dir ${dir}`);
process.exit(0);

// deps.mjs — loads the testbed's npm packages from the cached install (PDSMOVE_TESTBED_HOME,
// set by common.sh) so the programs here can live in the work tree while node_modules lives
// in the cache. Also small helpers shared by the testbed programs.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import fs from 'node:fs';

const home = process.env.PDSMOVE_TESTBED_HOME;
if (!home) {
  console.error('PDSMOVE_TESTBED_HOME is not set: run this through scripts/testbed/*, not directly');
  process.exit(2);
}
export const testbedHome = home;

// A failure prints one line naming the program (TESTBED_DEBUG=1 for the stack), not a trace.
process.on('uncaughtException', (e) => {
  const prog = (process.argv[1] ?? 'testbed').replace(/^.*\//, '').replace(/\.mjs$/, '');
  console.error(`testbed ${prog}: ${e?.message ?? e}`);
  if (process.env.TESTBED_DEBUG) console.error(e?.stack);
  process.exit(1);
});
export const requireDep = createRequire(`${home}/package.json`);

/** import() a package of the cached install by name (ESM or CommonJS). */
export async function load(name) {
  return import(pathToFileURL(requireDep.resolve(name)).href);
}

export function die(prog, msg, code = 1) {
  console.error(`${prog}: ${msg}`);
  process.exit(code);
}

/**
 * Tiny option parser: spec maps '--name' to 'string' | 'int' | 'bool'. Returns { opts, rest }.
 * Unknown options are an error, so a typo never silently falls back to a default.
 */
export function parseArgs(prog, argv, spec, usage) {
  const opts = {};
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { console.log(usage.trim()); process.exit(0); }
    if (!a.startsWith('--')) { rest.push(a); continue; }
    let [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const kind = spec[name];
    if (!kind) die(prog, `unknown option ${name}\n${usage.trim()}`, 2);
    const key = name.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (kind === 'bool') { opts[key] = true; continue; }
    const v = inline ?? argv[++i];
    if (v === undefined) die(prog, `${name} needs a value`, 2);
    if (kind === 'int') {
      if (!/^[0-9]+$/.test(v)) die(prog, `${name} wants a non-negative integer, got "${v}"`, 2);
      opts[key] = Number(v);
    } else {
      opts[key] = v;
    }
  }
  return { opts, rest };
}

/** Reads a testbed.json written by start; `which` names a PDS ("old", "new", ...). */
export function readTestbed(prog, file) {
  if (!file) die(prog, '--testbed FILE is required (the testbed.json written by scripts/testbed/start)', 2);
  let tb;
  try { tb = JSON.parse(fs.readFileSync(file, 'utf8')); } catch (e) { die(prog, `cannot read ${file}: ${e.message}`); }
  if (!tb || !tb.plc || !Array.isArray(tb.pds)) die(prog, `${file} is not a testbed.json`);
  return tb;
}

export function findPds(prog, tb, name) {
  const pds = tb.pds.find((p) => p.name === name);
  if (!pds) die(prog, `no PDS named "${name}" in the testbed (have: ${tb.pds.map((p) => p.name).join(', ')})`, 2);
  return pds;
}

/** Writes a file atomically (temp file + rename), so readers never see half a file. */
export function writeFileAtomic(file, data, mode = 0o644) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

/**
 * Whether pid is a live process that is one of ours: its command line contains every marker
 * as whole arguments (the server program and its --testbed-dir=DIR), so a recycled pid is never signalled.
 * A zombie has an empty command line and counts as gone.
 */
export function isOurProcess(pid, markers) {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  let cmd;
  try { cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'); } catch { return false; }
  return markers.every((m) => cmd.includes(m));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls url until it answers 2xx. Returns null when healthy, else why not: gone() (a string
// when the server process ended) or the last answer when timeoutMs passed.
export async function pollHealthy(url, timeoutMs, gone, intervalMs = 150) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const why = gone();
    if (why) return `${why} before it became healthy`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
      if (res.ok) return null;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = e.cause?.code ?? e.message;
    }
    await sleep(intervalMs);
  }
  return `not healthy after ${timeoutMs / 1000} s at ${url} (${last})`;
}

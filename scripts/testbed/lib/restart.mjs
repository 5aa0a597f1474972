// restart.mjs — restarts one PDS of a running testbed with the same node binary, program,
// arguments and environment start.mjs gave it (recorded in testbed.json — node, program, home,
// version — and its env.json), and waits until it
// is healthy again. Its data stays; what it keeps in memory (the rate limiter's counters, caches)
// starts afresh — the tests use it to stand in for a daily rate limit's reset.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { die, isOurProcess, parseArgs, pollHealthy, sleep, writeFileAtomic } from './deps.mjs';

const PROG = 'testbed restart';
const USAGE = `
usage: scripts/testbed/restart [--dir DIR] [--timeout SECONDS] NAME
Restarts the PDS named NAME ("old", "new", or an --extra-pds name) of the testbed in DIR (default
/tmp/pdsmove-testbed) with the program and environment it was started with. Its data (accounts,
repos, blobs) stays; its in-memory state, such as the rate limiter's counters, is reset.
`;
const { opts, rest } = parseArgs(PROG, process.argv.slice(2), { '--dir': 'string', '--timeout': 'int' }, USAGE);
if (rest.length !== 1) die(PROG, `give the name of one PDS${USAGE}`, 2);
const name = rest[0];
const dir = path.resolve(opts.dir ?? '/tmp/pdsmove-testbed');
const timeoutMs = (opts.timeout ?? 120) * 1000;
const tbFile = path.join(dir, 'testbed.json');
let tb;
try { tb = JSON.parse(fs.readFileSync(tbFile, 'utf8')); } catch (e) { die(PROG, `no running testbed in ${dir} (${e.message})`); }
const p = (tb.pds ?? []).find((x) => x.name === name);
if (!p) die(PROG, `the testbed in ${dir} has no PDS named ${name} (it has ${(tb.pds ?? []).map((x) => x.name).join(', ')})`, 2);
if (!p.envFile || !p.program) die(PROG, `testbed.json does not record how ${name} was started (started by an older start.mjs?)`);
let own;
try { own = JSON.parse(fs.readFileSync(p.envFile, 'utf8')); } catch (e) { die(PROG, `cannot read ${p.envFile}: ${e.message}`); }
const dirArg = `--testbed-dir=${tb.dir ?? dir}`;

// stop it (only if the pid still runs our program for this testbed)
const ours = () => isOurProcess(p.pid, [p.program, dirArg]);
if (ours()) {
  try { process.kill(p.pid, 'SIGTERM'); } catch { /* ended meanwhile */ }
  let deadline = Date.now() + 10000;
  while (ours() && Date.now() < deadline) await sleep(50);
  if (ours()) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* ended meanwhile */ }
    deadline = Date.now() + 5000;
    while (ours() && Date.now() < deadline) await sleep(50);
    if (ours()) die(PROG, `pds ${name} (pid ${p.pid}) does not end`);
  }
}

const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PDS_')));
const fd = fs.openSync(p.log, 'a');
// the node binary of its release line (start.mjs records it: a PDS of --pds-version 0.4 runs on
// that line's node, with PDSMOVE_TESTBED_HOME, in its env.json, pointing at that install)
const node = p.node ?? process.execPath;
if (!fs.existsSync(node)) die(PROG, `the node binary ${node} that ran pds ${name} (version ${p.version ?? 'current'}) is gone: run scripts/testbed/install${p.version && p.version !== 'current' ? ` --version ${p.version}` : ''}`);
const child = spawn(node, [p.program, dirArg, `--name=${name}`], {
  cwd: tb.dir ?? dir, env: { ...baseEnv, ...own }, detached: true, stdio: ['ignore', fd, fd],
});
fs.closeSync(fd);
let exited = null;
child.on('exit', (code, signal) => { exited = signal ? `killed by ${signal}` : `exited with status ${code}`; });
child.unref();

const url = `http://127.0.0.1:${p.listenPort ?? p.port}/xrpc/_health`;
const why = await pollHealthy(url, timeoutMs, () => exited, 100);
if (why) {
  try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
  die(PROG, `pds ${name} ${why} (see ${p.log})`);
}
p.pid = child.pid;
writeFileAtomic(tbFile, `${JSON.stringify(tb, null, 2)}\n`, 0o600);
console.log(`pds ${name} restarted: ${p.url}  pid ${p.pid}`);
process.exit(0);

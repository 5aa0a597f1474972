// stop.mjs — stops a testbed: signals exactly the processes recorded in DIR/testbed.json (and
// only if each pid still runs our server program for that DIR, so a recycled pid is never
// touched), waits for them to end, then renames testbed.json to testbed.stopped.json.
import fs from 'node:fs';
import path from 'node:path';
import { die, isOurProcess, parseArgs, sleep } from './deps.mjs';

const PROG = 'testbed stop';
const USAGE = `
usage: scripts/testbed/stop [--dir DIR] [--quiet]
Stops the testbed that scripts/testbed/start wrote to DIR/testbed.json (default DIR:
/tmp/pdsmove-testbed). Its logs and data stay in DIR.
`;
const { opts } = parseArgs(PROG, process.argv.slice(2), { '--dir': 'string', '--quiet': 'bool' }, USAGE);
const dir = path.resolve(opts.dir ?? '/tmp/pdsmove-testbed');
const tbFile = path.join(dir, 'testbed.json');
const say = (m) => { if (!opts.quiet) console.log(m); };

if (!fs.existsSync(tbFile)) {
  say(`${PROG}: no running testbed in ${dir} (no testbed.json)`);
  process.exit(0);
}
let tb;
try { tb = JSON.parse(fs.readFileSync(tbFile, 'utf8')); } catch (e) { die(PROG, `cannot read ${tbFile}: ${e.message}`); }
const dirArg = `--testbed-dir=${tb.dir ?? dir}`;
// PDSes first, then the PLC directory they talk to.
const procs = [...(tb.pds ?? []).map((p) => ({ ...p, name: `pds ${p.name}` })), { ...tb.plc, name: 'plc' }];
const ours = (p) => isOurProcess(p.pid, [p.program, dirArg]);

const live = procs.filter(ours);
for (const p of live) {
  try { process.kill(p.pid, 'SIGTERM'); } catch { /* ended meanwhile */ }
}
const deadline = Date.now() + 10000;
while (live.some(ours) && Date.now() < deadline) await sleep(100);
for (const p of live.filter(ours)) {
  console.error(`${PROG}: ${p.name} (pid ${p.pid}) ignored SIGTERM for 10 s: SIGKILL`);
  try { process.kill(p.pid, 'SIGKILL'); } catch { /* ended meanwhile */ }
}
while (live.some(ours) && Date.now() < deadline + 5000) await sleep(50);
const left = live.filter(ours);
if (left.length) die(PROG, `still running: ${left.map((p) => `${p.name} pid ${p.pid}`).join(', ')}`);

fs.renameSync(tbFile, path.join(dir, 'testbed.stopped.json'));
say(`testbed stopped (${live.length ? live.map((p) => `${p.name} pid ${p.pid}`).join(', ') : 'nothing was running'})`);

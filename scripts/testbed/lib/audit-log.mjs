// audit-log.mjs — prints a DID's audit log from the testbed's PLC directory
// (GET /<did>/log/audit: every operation, nullified ones included), as pdsmove plc verify-log reads it.
import fs from 'node:fs';
import { die, parseArgs, readTestbed, writeFileAtomic } from './deps.mjs';

const PROG = 'testbed audit-log';
const USAGE = `
usage: scripts/testbed/audit-log --testbed FILE --did DID [--out FILE] [--data]
Prints the PLC audit log JSON of DID (or writes it to --out). --data prints the current
state (/<did>/data: rotation keys, signing key, handle, PDS) instead.
`;
const { opts } = parseArgs(PROG, process.argv.slice(2), {
  '--testbed': 'string', '--did': 'string', '--out': 'string', '--data': 'bool',
}, USAGE);
const tb = readTestbed(PROG, opts.testbed);
if (!opts.did || !opts.did.startsWith('did:plc:')) die(PROG, '--did did:plc:... is required', 2);
const url = `${tb.plc.url}/${encodeURIComponent(opts.did)}/${opts.data ? 'data' : 'log/audit'}`;
const res = await fetch(url, { signal: AbortSignal.timeout(30000) });
const text = await res.text();
if (!res.ok) die(PROG, `GET ${url}: HTTP ${res.status} ${text.slice(0, 300)}`);
if (opts.out) writeFileAtomic(opts.out, text.endsWith('\n') ? text : `${text}\n`);
else fs.writeSync(1, text.endsWith('\n') ? text : `${text}\n`);

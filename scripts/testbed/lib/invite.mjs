// invite.mjs — creates an invite code on a testbed PDS through the admin API (basic auth
// admin:<adminPassword from testbed.json>) and prints it.
import { die, findPds, parseArgs, readTestbed } from './deps.mjs';
import { basicAuth, xrpc } from './xrpc.mjs';

const PROG = 'testbed invite';
const USAGE = `
usage: scripts/testbed/invite --testbed FILE --pds NAME [--uses N] [--for-account DID]
Prints a fresh invite code (usable N times, default 1) for a PDS started with --invite-required.
`;
const { opts } = parseArgs(PROG, process.argv.slice(2), {
  '--testbed': 'string', '--pds': 'string', '--uses': 'int', '--for-account': 'string',
}, USAGE);
const tb = readTestbed(PROG, opts.testbed);
const pds = findPds(PROG, tb, opts.pds ?? 'new');
const uses = opts.uses ?? 1;
if (uses < 1) die(PROG, '--uses must be at least 1', 2);
const r = await xrpc(pds.url, 'com.atproto.server.createInviteCode', {
  body: { useCount: uses, ...(opts.forAccount ? { forAccount: opts.forAccount } : {}) },
  auth: basicAuth('admin', pds.adminPassword),
});
console.log(r.code);

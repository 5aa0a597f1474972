// plc-token.mjs — prints the email token a testbed PDS issued to an account (default purpose
// plc_operation, as requested by com.atproto.identity.requestPlcOperationSignature). No SMTP
// is configured, so the token only exists in the PDS's account.sqlite (WAL: readable live).
import { die, findPds, parseArgs, readTestbed, requireDep } from './deps.mjs';

const PROG = 'testbed plc-token';
const USAGE = `
usage: scripts/testbed/plc-token --testbed FILE --pds NAME --did DID [--purpose P]
Prints the newest email token of DID on that PDS (purpose default: plc_operation; others:
confirm_email, update_email, reset_password, delete_account). Exit 1 when there is none.
`;
const { opts } = parseArgs(PROG, process.argv.slice(2), {
  '--testbed': 'string', '--pds': 'string', '--did': 'string', '--purpose': 'string',
}, USAGE);
const tb = readTestbed(PROG, opts.testbed);
const pds = findPds(PROG, tb, opts.pds ?? 'old');
if (!opts.did) die(PROG, '--did is required', 2);
const purpose = opts.purpose ?? 'plc_operation';

const Database = requireDep('better-sqlite3');
const db = new Database(pds.accountDb, { readonly: true, fileMustExist: true });
try {
  const row = db.prepare('SELECT token FROM email_token WHERE did = ? AND purpose = ? ORDER BY requestedAt DESC LIMIT 1').get(opts.did, purpose);
  if (!row) die(PROG, `no ${purpose} token for ${opts.did} on ${pds.name} (request one first, e.g. com.atproto.identity.requestPlcOperationSignature)`);
  console.log(row.token);
} finally {
  db.close();
}

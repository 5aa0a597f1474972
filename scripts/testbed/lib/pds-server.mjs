// pds-server.mjs — one reference PDS (@atproto/pds), configured by the same PDS_* environment
// variables as the official distribution (start.mjs sets them), listening on loopback only.
// Started detached by start.mjs; ends on SIGTERM.
//   node pds-server.mjs --testbed-dir=DIR --name=NAME
// TESTBED_LISTEN_PORT (optional) makes it listen on another port than PDS_PORT, which stays
// the advertised one: room for a latency proxy in front of it (docs/testbed.md).
import { load } from './deps.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const eq = a.indexOf('=');
  return eq < 0 ? [a.replace(/^--/, ''), ''] : [a.slice(0, eq).replace(/^--/, ''), a.slice(eq + 1)];
}));
if (!args['testbed-dir'] || !args.name) {
  console.error('pds-server: needs --testbed-dir=DIR --name=NAME');
  process.exit(2);
}
const host = process.env.TESTBED_LISTEN_HOST || '127.0.0.1';
const listenPort = process.env.TESTBED_LISTEN_PORT ? Number(process.env.TESTBED_LISTEN_PORT) : null;

const { PDS, envToCfg, envToSecrets, readEnv } = await load('@atproto/pds');
const env = readEnv();
const pds = await PDS.create(envToCfg(env), envToSecrets(env));
// PDS.start() calls app.listen(port), which binds every interface: pin it to loopback.
const listen = pds.app.listen.bind(pds.app);
pds.app.listen = (p, ...rest) => listen(listenPort ?? p, host, ...rest);
await pds.start();
console.log(`pds-server ${args.name}: listening on http://${host}:${listenPort ?? env.port} (pid ${process.pid})`);

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 5000).unref();
    try { await pds.destroy(); } catch (e) { console.error(`pds-server: destroy: ${e.message}`); }
    process.exit(0);
  });
}

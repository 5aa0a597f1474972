// plc-server.mjs — one PLC directory (@did-plc/server with its in-memory Database.mock(): the
// real server code, so signatures, rotation-key authority, prev chains and nullification are
// all checked) listening on loopback only. Started detached by start.mjs; ends on SIGTERM.
//   node plc-server.mjs --testbed-dir=DIR --port=PORT
import { load } from './deps.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const eq = a.indexOf('=');
  return eq < 0 ? [a.replace(/^--/, ''), ''] : [a.slice(0, eq).replace(/^--/, ''), a.slice(eq + 1)];
}));
const port = Number(args.port);
const host = process.env.TESTBED_LISTEN_HOST || '127.0.0.1';
if (!args['testbed-dir'] || !(port > 0)) {
  console.error('plc-server: needs --testbed-dir=DIR --port=PORT');
  process.exit(2);
}

const plc = await load('@did-plc/server');
const { PlcServer, Database } = plc.default ?? plc;
const server = PlcServer.create({ db: Database.mock(), port });
// The server calls app.listen(port), which binds every interface: pin it to loopback.
const listen = server.app.listen.bind(server.app);
server.app.listen = (p, ...rest) => listen(p, host, ...rest);
await server.start();
console.log(`plc-server: listening on http://${host}:${port} (pid ${process.pid})`);

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 3000).unref();
    try { await server.destroy(); } catch (e) { console.error(`plc-server: destroy: ${e.message}`); }
    process.exit(0);
  });
}

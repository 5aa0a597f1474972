// wanproxy.mjs — a TCP proxy that emulates a WAN link (one-way latency + a bandwidth shared by
// all connections, per direction) in front of a server on loopback; scripts/bench puts one in
// front of each testbed PDS (started with --proxied). No netem in this kernel, hence this.
//
//   node wanproxy.mjs --listen PORT --target PORT [--latency-ms 20] [--rate-mbit 100] [--stats FILE]
//                     [--trace FILE]
//
// Model: each direction is one FIFO link. A chunk read at time t leaves the link at
// max(t, link busy until) + bytes/rate and arrives latency later; a new connection's first
// client bytes wait one round trip (the TCP handshake). Each connection keeps at most HIGH
// bytes queued (the socket is paused beyond that), so memory is bounded and the sender feels
// the link like TCP flow control. Not modelled: TCP slow start, loss, TLS handshakes.
// --latency-ms 0 --rate-mbit 0 is a plain pass-through. SIGUSR1 writes the byte counters to
// --stats FILE as JSON; SIGTERM/SIGINT end it. Prints "wanproxy: listening ..." once ready.
// --trace FILE appends one JSON line per closed connection: when it opened and closed, and per
// direction its bytes and the times of its first and last byte (ms since the proxy started).
import fs from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  if (i + 1 >= process.argv.length) fail(`${name} needs a value`);
  return process.argv[i + 1];
}
function fail(msg) {
  console.error(`wanproxy: ${msg}`);
  process.exit(2);
}
function num(name, dflt) {
  const v = arg(name, dflt);
  if (v === undefined || !/^[0-9]+(\.[0-9]+)?$/.test(String(v))) fail(`${name} wants a non-negative number, got ${v}`);
  return Number(v);
}

const listenPort = num('--listen');
const targetPort = num('--target');
const host = arg('--host', '127.0.0.1');
const latency = num('--latency-ms', '0');
const rateMbit = num('--rate-mbit', '0');
const statsFile = arg('--stats', null);
const traceFile = arg('--trace', null);
const T0 = performance.now();
const bytesPerMs = rateMbit > 0 ? (rateMbit * 1e6) / 8 / 1000 : Infinity;
const HIGH = 2 << 20; // bytes queued per connection and direction before its sender is paused (> 40 ms at 100 Mbit/s)
const LOW = HIGH / 2;

const stats = { up: 0, down: 0, connections: 0, latencyMs: latency, rateMbit };

/** One direction of the emulated link, shared by every connection. */
class Link {
  constructor() { this.busyUntil = 0; }
  /** Arrival time (performance.now() ms) of `bytes` that enter the link at `t`. */
  arrival(t, bytes) {
    const start = Math.max(t, this.busyUntil);
    const end = start + bytes / bytesPerMs;
    this.busyUntil = end;
    return end + latency;
  }
}
const upLink = new Link();
const downLink = new Link();

/** Pipes src → dst through `link`: delays each chunk to its arrival time, keeps order, ends dst after src ends. */
function pipe(src, dst, link, counter, notBefore, tr) {
  const queue = [];
  let queued = 0;
  let timer = null;
  let srcEnded = false;
  let closed = false;

  const flush = () => {
    timer = null;
    if (closed) return;
    const now = performance.now();
    while (queue.length && queue[0].at <= now + 0.5) {
      const { data } = queue.shift();
      queued -= data.length;
      dst.write(data);
    }
    if (queue.length) {
      timer = setTimeout(flush, Math.max(0, queue[0].at - now));
    } else if (srcEnded) {
      dst.end();
    }
    if (src.isPaused() && queued + dst.writableLength < LOW) src.resume();
  };

  src.on('data', (data) => {
    stats[counter] += data.length;
    const now = performance.now();
    tr.bytes += data.length;
    if (tr.first === null) tr.first = Math.round(now - T0);
    tr.last = Math.round(now - T0);
    const at = link.arrival(Math.max(now, notBefore()), data.length);
    queue.push({ data, at });
    queued += data.length;
    if (queued + dst.writableLength > HIGH) src.pause();
    if (!timer) timer = setTimeout(flush, Math.max(0, at - now));
  });
  dst.on('drain', () => { if (src.isPaused() && queued + dst.writableLength < LOW) src.resume(); });
  src.on('end', () => {
    srcEnded = true;
    if (!queue.length && !timer) dst.end();
  });
  return () => {
    closed = true;
    if (timer) clearTimeout(timer);
    queue.length = 0;
  };
}

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
  stats.connections++;
  const trace = { id: stats.connections, opened: Math.round(performance.now() - T0), closed: null,
    up: { bytes: 0, first: null, last: null }, down: { bytes: 0, first: null, last: null } };
  const handshakeDone = performance.now() + 2 * latency;
  const upstream = net.connect({ host, port: targetPort, allowHalfOpen: true, noDelay: true });
  const stopUp = pipe(client, upstream, upLink, 'up', () => handshakeDone, trace.up);
  const stopDown = pipe(upstream, client, downLink, 'down', () => 0, trace.down);
  let done = false;
  const teardown = () => {
    if (done) return;
    done = true;
    trace.closed = Math.round(performance.now() - T0);
    if (traceFile) fs.appendFileSync(traceFile, `${JSON.stringify(trace)}\n`);
    stopUp();
    stopDown();
    client.destroy();
    upstream.destroy();
  };
  // An error on either side ends both; a normal close ends the connection once both sides closed.
  client.on('error', teardown);
  upstream.on('error', teardown);
  let closes = 0;
  const onClose = () => { if (++closes === 2) teardown(); };
  client.on('close', onClose);
  upstream.on('close', onClose);
});
server.on('error', (e) => fail(`cannot listen on ${host}:${listenPort}: ${e.message}`));
server.listen(listenPort, host, () => {
  console.log(`wanproxy: listening on ${host}:${listenPort} -> ${host}:${targetPort}` +
    ` (latency ${latency} ms each way, ${rateMbit > 0 ? `${rateMbit} Mbit/s per direction` : 'unlimited bandwidth'}, pid ${process.pid})`);
});

process.on('SIGUSR1', () => {
  if (statsFile) fs.writeFileSync(statsFile, `${JSON.stringify(stats)}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => {
    if (statsFile) fs.writeFileSync(statsFile, `${JSON.stringify(stats)}\n`);
    process.exit(0);
  });
}

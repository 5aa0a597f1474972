// faultproxy.mjs — an HTTP proxy in front of a REAL server (a testbed PDS) that injects the
// faults pdsmove must survive: 5xx answers, 429 with ratelimit-reset, and connections dropped
// mid-body. It forwards everything else untouched. Not a fake PDS: every answer that is not
// an injected fault comes from the real server behind it.
//
//   faultproxy --target http://localhost:PORT --rules '[{"match":"com.atproto.sync.getBlob","action":"500","count":2}]'
//
// rules (JSON array, applied in order, each used `count` times; `skip` first lets N matching
// requests through): action "500" | "502" | "503" (error JSON), "429" (ratelimit-reset now+`reset`
// seconds, default 1), "drop" (forward, then cut the connection after `afterBytes` of the
// response body, default 100), "2fa" (emulates PDS gatekeeper's email 2FA on createSession: without
// "authFactorToken": `token` in the body → 401 AuthFactorTokenRequired; with it → forwarded),
// "delay" (forward after `ms` milliseconds, default 200: a slow server or link), "corrupt"
// (forward, with the first byte of the answer's body flipped: same length, other bytes),
// "plcop" (a hostile PDS: forward com.atproto.identity.signPlcOperation, then change the
// operation the PDS signed — `change` "drop-first-key" | "key-first" (the signer's own key put
// first) | "add-service" — and sign it again with `keyHex`, a k256 rotation key of the account
// such as the PDS's rotationKeyHex from testbed.json: a different, validly signed operation),
// "recommend-key" (a lying PDS: forward getRecommendedDidCredentials and add `key`, a did:key,
// to the rotation keys it calls its own).
// Prints "listening <port>" once ready; the counts of injected
// faults go to stderr as they happen.
import http from 'node:http';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const target = new URL(arg('--target'));
const rules = JSON.parse(arg('--rules', '[]')).map((r) => ({ skip: 0, count: 1, ...r, used: 0, seen: 0 }));
const listenPort = Number(arg('--port', '0'));

function pick(path) {
  for (const r of rules) {
    if (!path.includes(r.match)) continue;
    r.seen++;
    if (r.seen <= r.skip || r.used >= r.count) continue;
    r.used++;
    return r;
  }
  return null;
}

function forward2fa(req, res, rule) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    let body = {};
    try { body = JSON.parse(raw.toString() || '{}'); } catch { /* forwarded as is */ }
    if (body.authFactorToken !== rule.token) {
      process.stderr.write(`faultproxy: 2fa challenge for ${req.url.split('?')[0]}\n`);
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'AuthFactorTokenRequired', message: 'A sign in code has been sent to your email address' }));
      return;
    }
    delete body.authFactorToken;
    const out = Buffer.from(JSON.stringify(body));
    const headers = { ...req.headers, host: target.host, 'content-length': String(out.length) };
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', (err) => { res.writeHead(502); res.end(String(err)); });
    up.end(out);
  });
}

/** The operation op (signed by the PDS), changed as rule.change says and signed with rule.keyHex. */
async function alterOp(op, rule) {
  const { load } = await import('./deps.mjs');
  const cryptoMod = await load('@atproto/crypto');
  const plcMod = await load('@did-plc/lib');
  const Secp256k1Keypair = cryptoMod.Secp256k1Keypair ?? cryptoMod.default.Secp256k1Keypair;
  const signOperation = plcMod.signOperation ?? plcMod.default.signOperation;
  const key = await Secp256k1Keypair.import(rule.keyHex);
  const { sig: _sig, ...unsigned } = op;
  if (rule.change === 'drop-first-key') unsigned.rotationKeys = unsigned.rotationKeys.slice(1);
  else if (rule.change === 'key-first') unsigned.rotationKeys = [key.did(), ...unsigned.rotationKeys.filter((k) => k !== key.did())];
  else if (rule.change === 'add-service') {
    unsigned.services = { ...unsigned.services, evil: { type: 'AtprotoPersonalDataServer', endpoint: 'https://evil.example' } };
  } else throw new Error(`plcop: unknown change "${rule.change}"`);
  return signOperation(unsigned, key);
}

/** Forwards req; a 200 JSON answer comes back as edit(body) makes it (async). */
function forwardRewrite(req, res, rule, edit) {
  const headers = { ...req.headers, host: target.host };
  delete headers['accept-encoding']; // the body is rewritten: keep it plain
  const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (ur) => {
    const chunks = [];
    ur.on('data', (c) => chunks.push(c));
    ur.on('end', async () => {
      const raw = Buffer.concat(chunks);
      let out = raw;
      const h = { ...ur.headers };
      if (ur.statusCode === 200) {
        try {
          out = Buffer.from(JSON.stringify(await edit(JSON.parse(raw.toString()))));
          process.stderr.write(`faultproxy: ${rule.action} ${rule.change ?? rule.key ?? ''} for ${req.url.split('?')[0]}\n`);
        } catch (err) {
          process.stderr.write(`faultproxy: ${rule.action} failed: ${err?.message ?? err}\n`);
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: 'InternalServerError', message: `faultproxy ${rule.action}: ${err?.message ?? err}` }));
          return;
        }
      }
      delete h['transfer-encoding'];
      h['content-length'] = String(out.length);
      res.writeHead(ur.statusCode, h);
      res.end(out);
    });
  });
  up.on('error', (err) => { res.writeHead(502); res.end(String(err)); });
  req.pipe(up);
}

const server = http.createServer((req, res) => {
  const rule = pick(req.url);
  if (rule && rule.action === 'plcop') {
    forwardRewrite(req, res, rule, async (body) => ({ ...body, operation: await alterOp(body.operation, rule) }));
    return;
  }
  if (rule && rule.action === 'recommend-key') {
    forwardRewrite(req, res, rule, async (body) => ({ ...body, rotationKeys: [...(body.rotationKeys ?? []), rule.key] }));
    return;
  }
  if (rule && rule.action === 'delay') {
    req.pause();
    setTimeout(() => forward(req, res, null), rule.ms ?? 200);
    return;
  }
  if (rule && rule.action === '2fa') {
    rule.used--; // a standing rule: every createSession is challenged
    forward2fa(req, res, rule);
    return;
  }
  if (rule && rule.action !== 'drop' && rule.action !== 'corrupt') {
    req.resume();
    const status = Number(rule.action);
    const headers = { 'content-type': 'application/json' };
    if (status === 429) headers['ratelimit-reset'] = String(Math.floor(Date.now() / 1000) + (rule.reset ?? 1));
    process.stderr.write(`faultproxy: ${status} for ${req.method} ${req.url.split('?')[0]}\n`);
    res.writeHead(status, headers);
    res.end(JSON.stringify({ error: status === 429 ? 'RateLimitExceeded' : 'InternalServerError', message: 'injected by faultproxy' }));
    return;
  }
  forward(req, res, rule);
});

/** Passes req on to the target; a "drop" rule cuts the answer short. */
function forward(req, res, rule) {
  const up = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
    (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      if (rule && rule.action === 'drop') {
        let sent = 0;
        const limit = rule.afterBytes ?? 100;
        ur.on('data', (chunk) => {
          if (sent >= limit) return;
          const part = chunk.subarray(0, Math.max(0, limit - sent));
          sent += part.length;
          res.write(part);
          if (sent >= limit) {
            process.stderr.write(`faultproxy: dropped ${req.method} ${req.url.split('?')[0]} after ${sent} bytes\n`);
            res.socket.destroy();
            ur.destroy();
          }
        });
        ur.on('end', () => res.end());
      } else if (rule && rule.action === 'corrupt') {
        let done = false;
        ur.on('data', (chunk) => {
          if (!done && chunk.length) {
            chunk = Buffer.from(chunk);
            chunk[0] ^= 0xff;
            done = true;
            process.stderr.write(`faultproxy: corrupted ${req.method} ${req.url.split('?')[0]}\n`);
          }
          res.write(chunk);
        });
        ur.on('end', () => res.end());
      } else {
        ur.pipe(res);
      }
    },
  );
  up.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'BadGateway', message: String(err) }));
  });
  req.pipe(up);
}
server.listen(listenPort, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));

// xrpc.mjs — a minimal XRPC client over fetch for the testbed programs (seed, invite): JSON
// and raw-bytes calls, bearer or admin basic auth, retries on 429 (rate limits on) honouring
// ratelimit-reset, and a session that refreshes itself once its access token expires.
import { sleep } from './deps.mjs';

const MAX_RATE_LIMIT_WAIT_MS = 10 * 60 * 1000;
const REQUEST_TIMEOUT_MS = 120 * 1000;

export class XrpcError extends Error {
  constructor(nsid, status, body) {
    const err = body && typeof body === 'object' ? body : {};
    super(`${nsid}: HTTP ${status}${err.error ? ` ${err.error}` : ''}${err.message ? `: ${err.message}` : typeof body === 'string' && body ? `: ${body.slice(0, 300)}` : ''}`);
    this.status = status;
    this.error = err.error;
  }
}

/**
 * One XRPC call. opts: { method, params, body (object → JSON, Buffer → raw), contentType,
 * auth ('Bearer …' / 'Basic …' header value) }. Returns the parsed JSON reply (or null).
 */
export async function xrpc(base, nsid, opts = {}) {
  const url = new URL(`/xrpc/${nsid}`, base);
  for (const [k, v] of Object.entries(opts.params ?? {})) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, String(x)));
    else if (v !== undefined) url.searchParams.set(k, String(v));
  }
  const headers = {};
  let body;
  if (Buffer.isBuffer(opts.body) || opts.body instanceof Uint8Array) {
    body = opts.body;
    headers['content-type'] = opts.contentType ?? 'application/octet-stream';
  } else if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers['content-type'] = 'application/json';
  }
  if (opts.auth) headers.authorization = opts.auth;
  const method = opts.method ?? (body !== undefined ? 'POST' : 'GET');
  const waitUntil = Date.now() + MAX_RATE_LIMIT_WAIT_MS;
  for (;;) {
    const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const text = await res.text();
    let parsed = text;
    try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (res.status === 429 && Date.now() < waitUntil) {
      const reset = Number(res.headers.get('ratelimit-reset'));
      const ms = reset > 0 ? Math.max(250, reset * 1000 - Date.now() + 100) : 1000;
      await sleep(Math.min(ms, waitUntil - Date.now(), 60_000));
      continue;
    }
    if (!res.ok) throw new XrpcError(nsid, res.status, parsed);
    return parsed;
  }
}

export const basicAuth = (user, password) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** A logged-in account; call() refreshes the access token when the PDS says it expired. */
export class Session {
  constructor(base, reply) {
    this.base = base;
    this.update(reply);
  }

  update(reply) {
    this.did = reply.did;
    this.handle = reply.handle;
    this.accessJwt = reply.accessJwt;
    this.refreshJwt = reply.refreshJwt;
  }

  async call(nsid, opts = {}) {
    try {
      return await xrpc(this.base, nsid, { ...opts, auth: `Bearer ${this.accessJwt}` });
    } catch (e) {
      if (!(e instanceof XrpcError) || e.error !== 'ExpiredToken') throw e;
      this.update(await xrpc(this.base, 'com.atproto.server.refreshSession', { method: 'POST', auth: `Bearer ${this.refreshJwt}` }));
      return xrpc(this.base, nsid, { ...opts, auth: `Bearer ${this.accessJwt}` });
    }
  }
}

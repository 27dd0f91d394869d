// CGI/1.1 conventions of Wisp's command ABI, ported from crates/core/src/cgi.rs
// (build_cgi_env, parse_cgi_response, parse_query) and from the server's
// finishing of a response (crates/executor header_map + crates/server invoke.rs).
// The browser must match the server byte for byte: when cgi.rs changes, change
// this file too; the parity tests in test/ compare real outputs of both.
//
// Pure functions, no DOM: imported by the page (env) and by the worker (parse).

/** `SERVER_SOFTWARE` as the server sets it (`wisp/` + the workspace version). */
export const SERVER_SOFTWARE = 'wisp/0.1.0';

/** The names a query parameter may not take (cgi.rs META_VARIABLES). */
const META_VARIABLES = new Set([
  'AUTH_TYPE', 'CONTENT_LENGTH', 'CONTENT_TYPE', 'GATEWAY_INTERFACE',
  'HTTPS', 'REQUEST_URI', 'REQUEST_SCHEME', 'DOCUMENT_ROOT', 'SCRIPT_FILENAME',
  'REDIRECT_STATUS', 'REMOTE_PORT', 'UNIQUE_ID', 'PATH_INFO', 'PATH_TRANSLATED',
  'QUERY_STRING', 'REMOTE_ADDR', 'REMOTE_HOST', 'REMOTE_IDENT', 'REMOTE_USER',
  'REQUEST_METHOD', 'SCRIPT_NAME', 'SERVER_NAME',
]);

// Rust's str::to_ascii_uppercase: ASCII letters only (toUpperCase would also
// map e.g. 'ß' to 'SS').
const asciiUpper = (s) => s.replace(/[a-z]+/g, (m) => m.toUpperCase());
const asciiLower = (s) => s.replace(/[A-Z]+/g, (m) => m.toLowerCase());

function reserved(name) {
  const upper = asciiUpper(name);
  return upper.startsWith('HTTP_') || upper.startsWith('SERVER_') || META_VARIABLES.has(upper);
}

const utf8 = new TextEncoder();
const lossy = new TextDecoder('utf-8'); // U+FFFD per maximal subpart, as String::from_utf8_lossy
const strict = new TextDecoder('utf-8', { fatal: true });

function hexval(c) {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** Percent-decode one query component (`+` is a space, a bad `%` stays). */
function decode(s) {
  const b = utf8.encode(s);
  const out = new Uint8Array(b.length);
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c === 0x2b) {
      out[n++] = 0x20;
    } else if (c === 0x25 && hexval(b[i + 1]) >= 0 && hexval(b[i + 2]) >= 0) {
      out[n++] = hexval(b[i + 1]) * 16 + hexval(b[i + 2]);
      i += 2;
    } else {
      out[n++] = c;
    }
  }
  return lossy.decode(out.subarray(0, n));
}

/** Split and percent-decode `a=1&b=two+words` (cgi.rs parse_query). */
export function parseQuery(q) {
  return q
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      return eq < 0 ? [decode(p), ''] : [decode(p.slice(0, eq)), decode(p.slice(eq + 1))];
    });
}

// http::HeaderValue::to_str: visible ASCII and tab only.
const VISIBLE_ASCII = /^[\t\x20-\x7e]*$/;
// HTTP/1 parsing (httparse) drops leading and trailing spaces and tabs of a value.
const trimOws = (v) => v.replace(/^[\t ]+|[\t ]+$/g, '');

/**
 * Normalise request headers as the server's `http::HeaderMap` holds them:
 * lower-case names, every value of one name grouped at that name's first
 * position, values trimmed of surrounding spaces and tabs.
 * @param {Array<[string,string]>|Record<string,string>|Headers|undefined} headers
 * @returns {Array<[string,string]>}
 */
export function headerList(headers) {
  let pairs;
  if (!headers) pairs = [];
  else if (Array.isArray(headers)) pairs = headers;
  else if (typeof headers.entries === 'function' && typeof headers.get === 'function') pairs = [...headers.entries()];
  else pairs = Object.entries(headers);
  const groups = new Map();
  for (const [k, v] of pairs) {
    const name = asciiLower(String(k));
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) {
      throw new TypeError(`invalid header name ${JSON.stringify(k)}`);
    }
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(trimOws(String(v)));
  }
  const out = [];
  for (const [name, values] of groups) for (const v of values) out.push([name, v]);
  return out;
}

/**
 * The guest environment for a request, exactly as cgi.rs build_cgi_env:
 * CGI meta-variables, `HTTP_*` headers, query parameters, then the function's
 * own env (which wins, replacing every earlier entry of the same name).
 * @param {{method:string, pathInfo:string, query:string, headers:Array<[string,string]>,
 *          contentLength:number, function:string, serverName:string, serverPort:number,
 *          remoteAddr:string, serverSoftware?:string}} req  headers as from headerList()
 * @param {Array<[string,string]>} fnEnv
 * @returns {Array<[string,string]>}
 */
export function buildCgiEnv(req, fnEnv = []) {
  let env = [];
  const put = (k, v) => env.push([k, v]);
  put('GATEWAY_INTERFACE', 'CGI/1.1');
  put('SERVER_PROTOCOL', 'HTTP/1.1');
  put('SERVER_SOFTWARE', req.serverSoftware ?? SERVER_SOFTWARE);
  put('REQUEST_METHOD', req.method);
  put('SCRIPT_NAME', `/fn/${req.function}`);
  put('PATH_INFO', req.pathInfo);
  put('QUERY_STRING', req.query);
  put('SERVER_NAME', req.serverName);
  put('SERVER_PORT', String(req.serverPort));
  put('REMOTE_ADDR', req.remoteAddr);
  put('CONTENT_LENGTH', String(req.contentLength));
  let contentType = '';
  for (const [k, v] of req.headers) {
    if (!VISIBLE_ASCII.test(v)) continue;
    if (k === 'content-type') {
      contentType = v;
      continue;
    }
    // Credentials are not passed (RFC 3875 §4.1.18); `Proxy` would become
    // HTTP_PROXY (httpoxy).
    if (k === 'content-length' || k === 'authorization' || k === 'proxy') continue;
    put('HTTP_' + asciiUpper(k).replaceAll('-', '_'), v);
  }
  put('CONTENT_TYPE', contentType);
  for (const [k, v] of parseQuery(req.query)) {
    if (k !== '' && !k.includes('=') && !k.includes('\0') && !v.includes('\0') && !reserved(k)) {
      put(k, v);
    }
  }
  for (const [k, v] of fnEnv) {
    env = env.filter(([ek]) => ek !== k);
    env.push([k, v]);
  }
  return env;
}

// Rust's char::is_whitespace (Unicode White_Space), for str::trim and
// split_whitespace. Differs from JS's trim: U+0085 yes, U+FEFF no.
const RUST_WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const RUST_TRIM = new RegExp(`^[${RUST_WS}]+|[${RUST_WS}]+$`, 'g');
const RUST_SPLIT = new RegExp(`[${RUST_WS}]+`);
const rustTrim = (s) => s.replace(RUST_TRIM, '');

const MAX_HEADER_BLOCK = 64 * 1024;

/**
 * Returns [headers, bodyOffset], or null if `out` does not start with a
 * well-formed header block (cgi.rs split_headers).
 * @param {Uint8Array} out
 */
function splitHeaders(out) {
  const headers = [];
  let pos = 0;
  for (;;) {
    const nl = out.indexOf(0x0a, pos);
    if (nl < 0) return null;
    let end = nl;
    if (end > pos && out[end - 1] === 0x0d) end--;
    const line = out.subarray(pos, end);
    pos = nl + 1;
    if (line.length === 0) return headers.length === 0 ? null : [headers, pos];
    if (pos > MAX_HEADER_BLOCK) return null;
    const colon = line.indexOf(0x3a);
    if (colon <= 0) return null;
    for (let i = 0; i < colon; i++) {
      const b = line[i];
      const ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x5f;
      if (!ok) return null;
    }
    let value;
    try {
      value = strict.decode(line.subarray(colon + 1));
    } catch {
      return null;
    }
    headers.push([String.fromCharCode(...line.subarray(0, colon)), rustTrim(value)]);
  }
}

/** Rust's `str::parse::<u16>`: optional `+`, ASCII digits, no overflow. */
function parseU16(s) {
  if (!/^\+?[0-9]+$/.test(s)) return null;
  const n = Number(s);
  return n <= 65535 ? n : null;
}

/**
 * Parse a guest's stdout (cgi.rs parse_cgi_response): optional CGI header
 * lines, a blank line, then the body. Without a header block it is all body,
 * served as text/plain.
 * @param {Uint8Array} out
 * @returns {{status:number, headers:Array<[string,string]>, bodyOffset:number}}
 */
export function parseCgiResponse(out) {
  const split = splitHeaders(out);
  if (!split) {
    return { status: 200, headers: [['Content-Type', 'text/plain; charset=utf-8']], bodyOffset: 0 };
  }
  const [lines, bodyOffset] = split;
  let status = 200;
  let hasLocation = false;
  const headers = [];
  for (const [k, v] of lines) {
    const lk = asciiLower(k);
    if (lk === 'status') {
      const first = v.split(RUST_SPLIT).find((w) => w !== '');
      const code = first === undefined ? null : parseU16(first);
      if (code !== null && code >= 100 && code <= 999) status = code;
    } else {
      if (lk === 'location') hasLocation = true;
      headers.push([k, v]);
    }
  }
  if (hasLocation && status === 200) status = 302;
  return { status, headers, bodyOffset };
}

// http::HeaderValue::try_from(String): no control characters but tab.
const isHeaderValue = (v) => !/[\x00-\x08\x0a-\x1f\x7f]/.test(v);
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'keep-alive']);

/**
 * The response headers as `wisp serve` sends them for a command module (minus
 * its own `Wisp-*` and `Server-Timing` headers): lower-case names grouped like
 * an http::HeaderMap, invalid values dropped, framing headers removed, and
 * `content-type: text/plain; charset=utf-8` when the guest set none.
 * @param {Array<[string,string]>} cgiHeaders  from parseCgiResponse
 * @returns {Array<[string,string]>}
 */
export function servedHeaders(cgiHeaders) {
  const groups = new Map();
  for (const [k, v] of cgiHeaders) {
    const name = asciiLower(k);
    if (!isHeaderValue(v) || FRAMING.has(name)) continue;
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(v);
  }
  if (!groups.has('content-type')) groups.set('content-type', ['text/plain; charset=utf-8']);
  const out = [];
  for (const [name, values] of groups) for (const v of values) out.push([name, v]);
  return out;
}

/** Rust's `Debug` of a whole-millisecond `Duration` (`10s`, `1.5s`, `250ms`). */
export function durationDebug(ms) {
  if (ms < 1000) return `${ms}ms`;
  return `${ms / 1000}s`;
}

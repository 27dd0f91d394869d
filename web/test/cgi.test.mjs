// cgi.js and limits.js without a browser: the cases of crates/core/src/cgi.rs's
// unit tests, plus the Rust-specific corners the port must keep.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCgiEnv, headerList, parseCgiResponse, parseQuery, servedHeaders } from '../src/cgi.js';
import { capMemory } from '../src/limits.js';

const enc = (s) => new TextEncoder().encode(s);
const parse = (s) => {
  const b = typeof s === 'string' ? enc(s) : s;
  const r = parseCgiResponse(b);
  return { ...r, body: new TextDecoder().decode(b.subarray(r.bodyOffset)) };
};

test('plain text is body', () => {
  const r = parse('hello\nworld\n');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'hello\nworld\n');
  assert.deepEqual(r.headers, [['Content-Type', 'text/plain; charset=utf-8']]);
});

test('headers and status', () => {
  const r = parse('Status: 404 Not Found\r\nContent-Type: application/json\r\nX-A: b\r\n\r\n{}');
  assert.equal(r.status, 404);
  assert.deepEqual(r.headers, [['Content-Type', 'application/json'], ['X-A', 'b']]);
  assert.equal(r.body, '{}');
});

test('location redirects; Rust parsing corners of Status', () => {
  assert.equal(parse('Location: /x\n\n').status, 302);
  assert.equal(parse('Status: +201\n\n').status, 201, 'u16::from_str takes a plus sign');
  assert.equal(parse('Status: 70000\n\n').status, 200, 'out of u16');
  assert.equal(parse('Status: 99\n\n').status, 200, 'below 100');
  assert.equal(parse('Status:\u00a0404\u00a0x\n\n').status, 404, 'Unicode whitespace splits');
});

test('colon in text is not a header; bad names and invalid UTF-8 end the header block', () => {
  assert.equal(parse('note: this has a colon\nbut no blank line').body, 'note: this has a colon\nbut no blank line');
  assert.equal(parse('Bad Name: x\n\nbody').bodyOffset, 0);
  assert.equal(parse(new Uint8Array([...enc('X: '), 0xff, 10, 10])).bodyOffset, 0);
  assert.equal(parse('\nbody').bodyOffset, 0, 'an empty header block is body');
});

test('values are trimmed as Rust trims (U+0085 yes, U+FEFF no)', () => {
  assert.deepEqual(parse('X: \u0085a\ufeff\r\r\n\n').headers, [['X', 'a\ufeff']]);
});

test('served headers: lower-case, grouped, framing dropped, text/plain default', () => {
  assert.deepEqual(
    servedHeaders([['X-A', '1'], ['Content-Length', '9'], ['x-b', '2'], ['x-a', '3'], ['X-C', 'bad\u0001']]),
    [['x-a', '1'], ['x-a', '3'], ['x-b', '2'], ['content-type', 'text/plain; charset=utf-8']],
  );
});

test('query decoding', () => {
  assert.deepEqual(parseQuery('a=1&b=two+words&c=%41%zz&d'), [['a', '1'], ['b', 'two words'], ['c', 'A%zz'], ['d', '']]);
  assert.deepEqual(parseQuery('u=%C3%A9%FF&p=%4'), [['u', 'é\ufffd'], ['p', '%4']]);
});

const req = (over) => ({
  method: 'GET', pathInfo: '', query: '', headers: [], contentLength: 0, function: 'f',
  serverName: 'localhost', serverPort: 8080, remoteAddr: '127.0.0.1', ...over,
});

test('env has CGI vars, query and the function env wins', () => {
  const env = buildCgiEnv(
    req({
      method: 'POST', pathInfo: '/a/b', query: 'n=40&MODE=evil', contentLength: 3,
      headers: headerList({ 'x-trace-id': '7', 'content-type': 'text/csv', authorization: 'Bearer s' }),
    }),
    [['MODE', 'safe']],
  );
  const get = (k) => env.findLast(([ek]) => ek === k)?.[1];
  assert.equal(get('REQUEST_METHOD'), 'POST');
  assert.equal(get('PATH_INFO'), '/a/b');
  assert.equal(get('QUERY_STRING'), 'n=40&MODE=evil');
  assert.equal(get('HTTP_X_TRACE_ID'), '7');
  assert.equal(get('CONTENT_TYPE'), 'text/csv');
  assert.equal(get('CONTENT_LENGTH'), '3');
  assert.equal(get('HTTP_AUTHORIZATION'), undefined);
  assert.equal(get('n'), '40');
  assert.equal(get('MODE'), 'safe');
  assert.equal(env.filter(([k]) => k === 'MODE').length, 1);
  assert.equal(env[2][1].startsWith('wisp/'), true);
});

test('query cannot set meta-variables or headers', () => {
  const env = buildCgiEnv(
    req({
      query: 'HTTP_X_FORWARDED_FOR=6.6.6.6&HTTP_AUTHORIZATION=Bearer+x&http_cookie=a&REMOTE_ADDR=6.6.6.6&SERVER_PORT=1&Request_Method=PUT&HTTPS=on&n=1',
      headers: headerList([['X-Forwarded-For', '1.1.1.1'], ['proxy', 'http://evil:1']]),
    }),
  );
  const all = (k) => env.filter(([ek]) => ek.toUpperCase() === k).map(([, v]) => v);
  assert.deepEqual(all('HTTP_X_FORWARDED_FOR'), ['1.1.1.1']);
  assert.deepEqual(all('HTTP_AUTHORIZATION'), []);
  assert.deepEqual(all('HTTP_COOKIE'), []);
  assert.deepEqual(all('HTTP_PROXY'), [], 'httpoxy');
  assert.deepEqual(all('REMOTE_ADDR'), ['127.0.0.1']);
  assert.deepEqual(all('SERVER_PORT'), ['8080']);
  assert.deepEqual(all('REQUEST_METHOD'), ['GET']);
  assert.deepEqual(all('HTTPS'), []);
  assert.deepEqual(all('N'), ['1']);
});

test('headers group like an http::HeaderMap', () => {
  assert.deepEqual(headerList([['X-A', ' 1 '], ['B', '2'], ['x-a', '3']]), [['x-a', '1'], ['x-a', '3'], ['b', '2']]);
  assert.throws(() => headerList([['bad name', 'x']]), /invalid header name/);
});

test('capMemory sets or lowers the maximum, refuses a too-large minimum', () => {
  // (module (memory 2)) and (memory 1 100)
  const m = (limits) => Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, limits.length + 1, 1, ...limits);
  assert.deepEqual([...capMemory(m([0, 2]), 4 * 65536)].slice(8), [5, 4, 1, 1, 2, 4]);
  assert.deepEqual([...capMemory(m([1, 1, 100]), 1 << 30)].slice(8), [5, 4, 1, 1, 1, 100]);
  assert.deepEqual([...capMemory(m([1, 1, 100]), 10 * 65536)].slice(8), [5, 4, 1, 1, 1, 10]);
  assert.throws(() => capMemory(m([0, 8]), 4 * 65536), /starts at 524288 bytes, past the 262144-byte memory limit/);
  assert.throws(() => capMemory(Uint8Array.of(0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0), 65536), /component/);
});

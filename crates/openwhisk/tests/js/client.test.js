// The OpenWhisk controller API of a live `wisp serve`, driven by the real
// `openwhisk` npm client (3.21). crates/cli/tests/all/openwhisk_api.rs
// starts the server, creates two namespaces and runs this file with:
//
//   WISP_URL       the server (apihost)
//   WISP_KEY_A     namespace team-a's uuid:key
//   WISP_KEY_B     namespace team-b's uuid:key
//   WISP_ACTION    functions/test-action built for wasm32-wasip1 (see its doc comment)
//   WISP_PHASE     "api" (every case below), "enqueue" (queue slow activations,
//                  print their ids) or "collect" (WISP_IDS: fetch them after a restart)
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const openwhisk = require('openwhisk')

const apihost = process.env.WISP_URL
const keyA = process.env.WISP_KEY_A
const keyB = process.env.WISP_KEY_B
const wasm = fs.readFileSync(process.env.WISP_ACTION)
const phase = process.env.WISP_PHASE || 'api'

const owA = openwhisk({ apihost, api_key: keyA })
const owB = openwhisk({ apihost, api_key: keyB })
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/** An activation, once its record is there (non-blocking invokes). */
async function waitFor (ow, activationId, ms = 20000) {
  const until = Date.now() + ms
  for (;;) {
    try {
      return await ow.activations.get({ activationId })
    } catch (e) {
      if (e.statusCode !== 404 || Date.now() > until) throw e
      await sleep(100)
    }
  }
}

/** The error a rejected call carries (its HTTP status and body). */
async function failure (promise) {
  try {
    await promise
  } catch (e) {
    return e
  }
  assert.fail('expected the call to fail')
}

const annotation = (a, key) => (a.annotations.find(x => x.key === key) || {}).value

if (phase === 'enqueue') {
  test('queue slow activations', async () => {
    await owA.actions.create({ name: 'slow', action: wasm, kind: 'wasm:0.1', params: { sleep_ms: 1500 }, overwrite: true })
    const ids = []
    for (let i = 0; i < 6; i++) {
      const r = await owA.actions.invoke({ name: 'slow', params: { i } })
      assert.match(r.activationId, /^[0-9a-f]{32}$/)
      ids.push(r.activationId)
    }
    console.log('IDS ' + JSON.stringify(ids))
  })
} else if (phase === 'collect') {
  test('queued activations completed after the restart', async () => {
    const ids = JSON.parse(process.env.WISP_IDS)
    for (let i = 0; i < ids.length; i++) {
      const a = await waitFor(owA, ids[i], 60000)
      assert.equal(a.name, 'slow')
      assert.equal(a.response.status, 'success', JSON.stringify(a))
      assert.equal(a.response.result.params.i, i)
      assert.equal(a.response.result.params.sleep_ms, 1500)
    }
  })
} else {
  test('actions: create, get with and without code, list, update, delete', async () => {
    const created = await owA.actions.create({
      name: 'hello', action: wasm, kind: 'wasm:0.1', params: { greeting: 'hi', who: 'default' }
    })
    assert.equal(created.name, 'hello')
    assert.equal(created.namespace, 'team-a')
    assert.equal(created.version, '0.0.1')
    assert.equal(created.exec.kind, 'wasm:0.1')
    assert.deepEqual(created.limits, { timeout: 60000, memory: 256, logs: 10, concurrency: 1 })

    const withCode = await owA.actions.get({ name: 'hello' })
    assert.equal(Buffer.from(withCode.exec.code, 'base64').compare(wasm), 0)
    assert.deepEqual(withCode.parameters, [{ key: 'greeting', value: 'hi' }, { key: 'who', value: 'default' }])
    const noCode = await owA.actions.get({ name: 'hello', code: false })
    assert.equal(noCode.exec.code, undefined)

    // Creating it again without overwrite is a conflict.
    const again = await failure(owA.actions.create({ name: 'hello', action: wasm, kind: 'wasm:0.1' }))
    assert.equal(again.statusCode, 409)
    assert.equal(typeof again.error.code, 'string')

    // An update keeps what it does not change, and bumps the version.
    const updated = await owA.actions.update({ name: 'hello', action: { limits: { timeout: 5000, memory: 128 } } })
    assert.equal(updated.version, '0.0.2')
    assert.deepEqual(updated.limits, { timeout: 5000, memory: 128, logs: 10, concurrency: 1 })
    assert.equal(updated.parameters.length, 2)

    // OpenWhisk's bounds and words.
    const bad = await failure(owA.actions.create({ name: 'fast', action: wasm, kind: 'wasm:0.1', limits: { timeout: 50 } }))
    assert.equal(bad.statusCode, 400)
    assert.match(bad.error.error, /duration 50 milliseconds below allowed threshold of 100 milliseconds/)
    const kind = await failure(owA.actions.create({ name: 'js', action: 'function main() {}', kind: 'nodejs:20' }))
    assert.equal(kind.statusCode, 400)
    const notWasm = await failure(owA.actions.create({ name: 'junk', action: Buffer.from('not wasm'), kind: 'wasm:0.1' }))
    assert.equal(notWasm.statusCode, 400)

    await owA.actions.create({ name: 'doomed', action: wasm, kind: 'wasm' })
    const list = await owA.actions.list()
    assert.deepEqual(list.map(a => a.name).sort(), ['doomed', 'hello'])
    assert.deepEqual((await owA.actions.list({ limit: 1, skip: 1 })).map(a => a.name), ['hello'])
    const deleted = await owA.actions.delete({ name: 'doomed' })
    assert.equal(deleted.name, 'doomed')
    assert.equal((await failure(owA.actions.get({ name: 'doomed' }))).statusCode, 404)
    assert.equal((await failure(owA.actions.delete({ name: 'doomed' }))).statusCode, 404)
  })

  test('blocking invokes with and without result; default parameters merged under the invoke', async () => {
    const a = await owA.actions.invoke({ name: 'hello', blocking: true, params: { who: 'wisp', log: 'a line' } })
    assert.match(a.activationId, /^[0-9a-f]{32}$/)
    assert.equal(a.namespace, 'team-a')
    assert.equal(a.name, 'hello')
    assert.equal(a.version, '0.0.2')
    assert.equal(a.subject, 'team-a')
    assert.ok(a.end >= a.start && a.duration === a.end - a.start, JSON.stringify(a))
    assert.deepEqual(Object.keys(a.response).sort(), ['result', 'status', 'statusCode', 'success'])
    assert.equal(a.response.status, 'success')
    assert.equal(a.response.statusCode, 0)
    assert.equal(a.response.success, true)
    assert.deepEqual(a.response.result.params, { greeting: 'hi', who: 'wisp', log: 'a line' })
    assert.equal(a.response.result.context.__OW_ACTIVATION_ID, a.activationId)
    assert.equal(a.response.result.context.__OW_ACTION_NAME, '/team-a/hello')
    assert.equal(a.response.result.context.__OW_NAMESPACE, 'team-a')
    assert.ok(a.logs.some(l => /stderr: a line$/.test(l)), JSON.stringify(a.logs))
    assert.equal(annotation(a, 'path'), 'team-a/hello')
    assert.equal(annotation(a, 'kind'), 'wasm:0.1')
    assert.equal(typeof annotation(a, 'waitTime'), 'number')
    assert.deepEqual(annotation(a, 'limits'), { timeout: 5000, memory: 128, logs: 10, concurrency: 1 })

    // result=true: the client asks for the record and hands back its result...
    const r = await owA.actions.invoke({ name: 'hello', blocking: true, result: true, params: { who: 'r' } })
    assert.deepEqual(r.params, { greeting: 'hi', who: 'r' })
    // ...and the server answers with the result alone when asked to.
    const raw = await fetch(`${apihost}/api/v1/namespaces/_/actions/hello?blocking=true&result=true`, {
      method: 'POST',
      headers: { authorization: 'Basic ' + Buffer.from(keyA).toString('base64'), 'content-type': 'application/json' },
      body: JSON.stringify({ who: 'raw' })
    })
    assert.equal(raw.status, 200)
    assert.match(raw.headers.get('x-openwhisk-activation-id'), /^[0-9a-f]{32}$/)
    assert.deepEqual((await raw.json()).params, { greeting: 'hi', who: 'raw' })
  })

  test('non-blocking invoke, then its activation, logs and result', async () => {
    const { activationId } = await owA.actions.invoke({ name: 'hello', params: { log: 'queued\nsecond line' } })
    const a = await waitFor(owA, activationId)
    assert.equal(a.response.success, true)
    assert.equal(a.response.result.params.log, 'queued\nsecond line')
    const logs = await owA.activations.logs({ activationId })
    assert.equal(logs.logs.length, 2)
    assert.match(logs.logs[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z stderr: queued$/)
    const result = await owA.activations.result({ activationId })
    assert.equal(result.success, true)
    assert.equal(result.result.params.greeting, 'hi')
    const listed = await owA.activations.list({ name: 'hello', limit: 50 })
    assert.ok(listed.some(x => x.activationId === activationId))
    assert.ok(listed.every(x => x.name === 'hello' && typeof x.statusCode === 'number'))
    const docs = await owA.activations.list({ name: 'hello', docs: true, limit: 1 })
    assert.equal(docs.length, 1)
    assert.ok(docs[0].response && Array.isArray(docs[0].logs))
    const since = await owA.activations.list({ since: Date.now() + 60000 })
    assert.deepEqual(since, [])
  })

  test('an application error, and an action developer error', async () => {
    const e = await failure(owA.actions.invoke({ name: 'hello', blocking: true, params: { error: 'boom' } }))
    assert.equal(e.statusCode, 502)
    assert.equal(e.error.response.status, 'application error')
    assert.equal(e.error.response.statusCode, 1)
    assert.equal(e.error.response.success, false)
    assert.deepEqual(e.error.response.result, { error: 'boom' })
    const failed = await failure(owA.actions.invoke({ name: 'hello', blocking: true, result: true, params: { fail: 'bad input' } }))
    assert.equal(failed.statusCode, 502)
    assert.deepEqual(failed.error.response.result, { error: 'bad input' })
    const trap = await failure(owA.actions.invoke({ name: 'hello', blocking: true, params: { trap: true } }))
    assert.equal(trap.statusCode, 502)
    assert.equal(trap.error.response.status, 'action developer error')
    assert.match(trap.error.response.result.error, /trapped/)
  })

  test('a sequence of three: each output is the next input, one activation each plus its own', async () => {
    for (const [name, add] of [['inc1', 1], ['inc10', 10], ['inc100', 100]]) {
      await owA.actions.create({ name, action: wasm, kind: 'wasm:0.1', params: { add } })
    }
    const seq = await owA.actions.create({ name: 'chain', sequence: ['inc1', '/team-a/inc10', '_/inc100'] })
    assert.equal(seq.exec.kind, 'sequence')
    assert.deepEqual(seq.exec.components, ['/team-a/inc1', '/team-a/inc10', '/team-a/inc100'])
    const a = await owA.actions.invoke({ name: 'chain', blocking: true, params: { n: 5 } })
    assert.deepEqual(a.response.result, { n: 116 })
    assert.equal(annotation(a, 'kind'), 'sequence')
    assert.equal(annotation(a, 'topmost'), true)
    assert.equal(a.logs.length, 3)
    const parts = []
    for (const id of a.logs) parts.push(await waitFor(owA, id))
    assert.deepEqual(parts.map(p => p.name), ['inc1', 'inc10', 'inc100'])
    assert.deepEqual(parts.map(p => p.response.result.n), [6, 16, 116])
    assert.ok(parts.every(p => p.cause === a.activationId))
    // A sequence may not name itself, nor a component that is not there.
    const cyclic = await failure(owA.actions.update({ name: 'chain', sequence: ['inc1', 'chain'] }))
    assert.equal(cyclic.statusCode, 400)
    const missing = await failure(owA.actions.create({ name: 'broken', sequence: ['nope'] }))
    assert.equal(missing.statusCode, 400)
    // Non-blocking works for sequences too.
    const { activationId } = await owA.actions.invoke({ name: 'chain', params: { n: 0 } })
    assert.deepEqual((await waitFor(owA, activationId)).response.result, { n: 111 })
  })

  test('a trigger with a rule, fired by an alarm; rules enable and disable', async () => {
    await owA.triggers.create({ name: 'tick', trigger: { parameters: [{ key: 'from', value: 'trigger' }] } })
    const rule = await owA.rules.create({ name: 'on-tick', trigger: 'tick', action: 'inc1' })
    assert.equal(rule.status, 'active')
    assert.deepEqual(rule.trigger, { name: 'tick', path: 'team-a' })
    const feed = await owA.feeds.create({
      name: '/whisk.system/alarms/alarm', trigger: 'tick', params: { cron: '* * * * * *', trigger_payload: { n: 41 } }
    })
    assert.equal(feed.response.success, true)
    // Within a few seconds the alarm fires the trigger and the rule runs inc1.
    const until = Date.now() + 15000
    let fired
    while (!fired) {
      assert.ok(Date.now() < until, 'the alarm did not fire the rule within 15 s')
      await sleep(250)
      const acts = await owA.activations.list({ name: 'inc1', limit: 20, docs: true })
      fired = acts.find(x => x.response.result.n === 42)
    }
    assert.equal(fired.response.success, true)
    const triggerAct = await waitFor(owA, fired.cause)
    assert.equal(triggerAct.name, 'tick')
    const line = JSON.parse(triggerAct.logs[0])
    assert.equal(line.activationId, fired.activationId)
    assert.equal(line.rule, 'team-a/on-tick')
    const read = await owA.feeds.get({ name: '/whisk.system/alarms/alarm', trigger: 'tick' })
    assert.equal(read.response.result.config.cron, '* * * * * *')
    await owA.feeds.delete({ name: '/whisk.system/alarms/alarm', trigger: 'tick' })

    // Fired by hand: the trigger's parameters under the fire's.
    const fire = await owA.triggers.invoke({ name: 'tick', params: { n: 1 } })
    const ruled = await waitFor(owA, JSON.parse((await waitFor(owA, fire.activationId)).logs[0]).activationId)
    assert.deepEqual(ruled.response.result, { n: 2 })
    const t = await owA.triggers.get({ name: 'tick' })
    assert.deepEqual(t.rules['team-a/on-tick'].status, 'active')
    await owA.rules.disable({ name: 'on-tick' })
    assert.equal((await owA.rules.get({ name: 'on-tick' })).status, 'inactive')
    // No active rule: nothing runs (204, no activation).
    const none = await owA.triggers.invoke({ name: 'tick', params: { n: 1 } })
    assert.ok(!(none && none.activationId), JSON.stringify(none))
    await owA.rules.enable({ name: 'on-tick' })
    assert.equal((await owA.rules.get({ name: 'on-tick' })).status, 'active')
    await owA.rules.delete({ name: 'on-tick' })
    await owA.triggers.delete({ name: 'tick' })
    assert.equal((await failure(owA.triggers.get({ name: 'tick' }))).statusCode, 404)
  })

  test('a wrong key gets 401', async () => {
    const uuid = keyA.split(':')[0]
    for (const key of [`${uuid}:${'x'.repeat(64)}`, 'nobody:nothing']) {
      const ow = openwhisk({ apihost, api_key: key })
      const e = await failure(ow.actions.list())
      assert.equal(e.statusCode, 401)
      assert.equal(e.error.error, 'The supplied authentication is invalid.')
    }
  })

  test('namespace B can neither see nor invoke namespace A\'s actions', async () => {
    assert.deepEqual(await owB.actions.list(), [])
    const onA = { namespace: 'team-a' }
    assert.equal((await failure(owB.actions.get({ name: 'hello', ...onA }))).statusCode, 403)
    assert.equal((await failure(owB.actions.list(onA))).statusCode, 403)
    assert.equal((await failure(owB.actions.invoke({ name: 'hello', blocking: true, ...onA }))).statusCode, 403)
    assert.equal((await failure(owB.actions.invoke({ name: 'hello' }))).statusCode, 404)
    assert.equal((await failure(owB.actions.delete({ name: 'hello', ...onA }))).statusCode, 403)
    const mine = await owA.actions.invoke({ name: 'hello', blocking: true })
    assert.equal((await failure(owB.activations.get({ activationId: mine.activationId }))).statusCode, 404)
    assert.equal((await failure(owB.activations.get({ activationId: mine.activationId, ...onA }))).statusCode, 403)
    assert.ok((await owB.activations.list({ limit: 200 })).every(a => a.namespace === 'team-b'))
    assert.deepEqual(await owB.namespaces.list(), ['team-b'])
    // B's own action of the same name is B's.
    await owB.actions.create({ name: 'hello', action: wasm, kind: 'wasm:0.1', params: { mine: 'b' } })
    const b = await owB.actions.invoke({ name: 'hello', blocking: true, result: true })
    assert.deepEqual(b.params, { mine: 'b' })
    // A non-web action is not on the public invoke route.
    assert.equal((await fetch(`${apihost}/ns/team-a/fn/hello`)).status, 404)
  })
}

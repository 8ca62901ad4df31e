#!/usr/bin/env node
// kafkajs scenarios for tests/test_kafkajs.py: `node kafkajs_driver.js COMMAND 'JSON ARGS'`.
//
// Each command runs one scenario against the brokers in args.brokers and prints one JSON object
// on stdout (kafkajs' own log lines go to stderr); pytest checks it. Every wait has a deadline,
// and a watchdog ends the process (exit 3) after args.timeoutMs whatever it is doing, so a hung
// client never outlives its test (pytest also kills it past its own timeout).
//
// Commands:
//   roundtrip  create a topic, produce with one codec (idempotent, acks=all), consume it back,
//              look offsets up by timestamp
//   edges      acks=0 and 1, a tombstone, an empty value, a large message, one too large
//   group      two members share a topic's partitions and commit; one leaves, the other takes
//              everything; a third joins and resumes from the committed offsets
//   admin      createTopics, fetchTopicMetadata, describeCluster, listGroups, describeGroups,
//              fetchOffsets, setOffsets, deleteGroups, deleteTopics

'use strict'

const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')

const POLL_MS = 50

// Calls of each codec's compress/decompress, reported by `roundtrip`: proof that a batch really
// went out compressed and came back compressed.
const codecCalls = {}

function counted(name, codec) {
  codecCalls[name] = { compress: 0, decompress: 0 }
  return () => {
    const c = codec()
    return {
      async compress(encoder) {
        codecCalls[name].compress += 1
        return c.compress(encoder)
      },
      async decompress(buffer) {
        codecCalls[name].decompress += 1
        return c.decompress(buffer)
      },
    }
  }
}

// zstd: @kafkajs/zstd needs the native cppzst 2.0.6, which does not compile against Node 20's
// headers (C++17 required); zstd-codec is libzstd compiled to WebAssembly, so nothing is built.
// A Kafka zstd batch is one standard zstd frame; the streaming decoder also reads frames that
// do not record their content size (Java's ZstdOutputStream writes those).
async function zstdCodec() {
  const { ZstdCodec } = require('zstd-codec')
  const zstd = await new Promise(resolve => ZstdCodec.run(resolve))
  const simple = new zstd.Simple()
  const streaming = new zstd.Streaming()
  return () => ({
    async compress(encoder) {
      return Buffer.from(simple.compress(encoder.buffer, 3))
    },
    async decompress(buffer) {
      return Buffer.from(streaming.decompress(buffer))
    },
  })
}

// Codecs that could not be loaded (name -> error): a codec package whose native part did not
// build fails only the scenarios that use it.
const codecErrors = {}

async function registerCodecs() {
  const codecs = {
    // gzip is built into kafkajs; counted through the same wrapper.
    gzip: [CompressionTypes.GZIP, async () => CompressionCodecs[CompressionTypes.GZIP]],
    snappy: [CompressionTypes.Snappy, async () => require('kafkajs-snappy')],
    // kafkajs-lz4 uses the lz4 package's native binding (built by node-gyp at install).
    lz4: [CompressionTypes.LZ4, async () => new (require('kafkajs-lz4'))().codec],
    zstd: [CompressionTypes.ZSTD, () => zstdCodec()],
  }
  for (const [name, [type, load]] of Object.entries(codecs)) {
    try {
      CompressionCodecs[type] = counted(name, await load())
    } catch (e) {
      codecErrors[name] = String(e.message || e)
    }
  }
}

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}

function stderrLogger() {
  return ({ namespace, level, label, log }) => {
    const { message, ...extra } = log
    process.stderr.write(`${new Date().toISOString()} ${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
  }
}

function client(args, clientId) {
  return new Kafka({
    clientId,
    brokers: args.brokers.split(','),
    connectionTimeout: 10000,
    requestTimeout: 30000,
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
  })
}

// Idempotent, one request in flight (kafkajs' requirement for ordering under retries), retried
// without limit as kafkajs wants for idempotence: the watchdog bounds the whole run instead.
function idempotentProducer(kafka) {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 2000 },
  })
}

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

async function waitFor(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(POLL_MS)
  }
}

async function createTopic(admin, args, topic, numPartitions, replicationFactor) {
  const created = await admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor }], waitForLeaders: false, timeout: 30000 })
  if (!created) throw new Error(`createTopics(${topic}) answered false: the topic existed`)
  await waitForLeaders(admin, args, topic, numPartitions)
}

// kafkajs' own waitForLeaders gives up at once when Metadata answers UNKNOWN_TOPIC_OR_PARTITION,
// which Apache Kafka does for a moment after CreateTopics (a broker learns of a new topic from
// the controller asynchronously): poll Metadata until every partition has a leader.
async function waitForLeaders(admin, args, topic, numPartitions) {
  await waitFor(async () => {
    try {
      const [t] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics
      return t.partitions.length === numPartitions && t.partitions.every(p => p.leader >= 0)
    } catch (e) {
      if (e.type === 'UNKNOWN_TOPIC_OR_PARTITION' || e.type === 'LEADER_NOT_AVAILABLE') return false
      throw e
    }
  }, args.waitMs, `a leader for each partition of ${topic}`)
}

function messageJson(partition, message) {
  const headers = {}
  for (const [k, v] of Object.entries(message.headers || {})) headers[k] = v === null ? null : v.toString()
  return {
    partition,
    offset: Number(message.offset),
    timestamp: Number(message.timestamp),
    key: message.key === null ? null : message.key.toString(),
    value: message.value === null ? null : message.value.toString(),
    headers,
  }
}

// ---------------------------------------------------------------------------------- roundtrip
async function roundtrip(args) {
  const { topic, codec, partitions, count, batch } = args
  if (codecErrors[codec]) throw new Error(`codec ${codec} could not be loaded: ${codecErrors[codec]}`)
  const kafka = client(args, `kafkajs-roundtrip-${codec}`)
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, args, topic, partitions, args.replicationFactor || 1)

  const producer = idempotentProducer(kafka)
  await producer.connect()
  const acks = []
  // Message i carries the timestamp ts0 + i (CreateTime), for the lookups by timestamp below.
  const ts0 = Date.now() - 3600 * 1000
  for (let start = 0; start < count; start += batch) {
    const messages = []
    for (let i = start; i < Math.min(count, start + batch); i++) {
      messages.push({
        partition: i % partitions,
        key: `k${i}`,
        // Compressible, so every codec really shrinks the batch.
        value: `value-${i}-${'abcdefgh'.repeat(16)}`,
        headers: { seq: String(i), codec },
        timestamp: String(ts0 + i),
      })
    }
    const meta = await producer.send({ topic, acks: -1, compression: CODECS[codec], messages })
    for (const m of meta) acks.push({ partition: m.partition, errorCode: m.errorCode, baseOffset: Number(m.baseOffset), sent: messages.filter(x => x.partition === m.partition).length })
  }
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: `${topic}-reader`, maxWaitTimeInMs: 500 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const messages = []
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      messages.push(messageJson(partition, message))
    },
  })
  await waitFor(() => messages.length >= count, args.waitMs, `${count} messages (have ${messages.length})`)
  await consumer.disconnect()
  const offsets = await admin.fetchTopicOffsets(topic)
  // ListOffsets by timestamp: the earliest offset whose timestamp is >= the target (kafkajs
  // substitutes the high watermark when the broker answers -1: no such message).
  const byTimestamp = {}
  for (const k of args.timestampTargets) {
    const found = await admin.fetchTopicOffsetsByTimestamp(topic, ts0 + k)
    byTimestamp[k] = Object.fromEntries(found.map(o => [o.partition, Number(o.offset)]))
  }
  await admin.disconnect()
  return {
    ts0, acks, messages, byTimestamp, codecCalls,
    offsets: offsets.map(o => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) })),
  }
}

// ---------------------------------------------------------------------------------- edges
// acks=0 and acks=1 next to acks=all, a tombstone (null value), an empty value, a 900 KiB message
// and one over the broker's 1 MiB message.max.bytes default (MESSAGE_TOO_LARGE), read back.
async function edges(args) {
  const { topic } = args
  const kafka = client(args, 'kafkajs-edges')
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, args, topic, 1, 1)
  const producer = kafka.producer()
  await producer.connect()
  const out = {}
  const meta = ms => ms.map(m => ({ errorCode: m.errorCode, baseOffset: Number(m.baseOffset) }))
  // acks=0: no answer, so kafkajs reports nothing; the same connection keeps the order.
  out.acks0 = meta(await producer.send({ topic, acks: 0, messages: [{ value: 'a' }, { value: 'b' }] }))
  out.acks1 = meta(await producer.send({
    topic, acks: 1, compression: CompressionTypes.GZIP,
    messages: [{ key: 'tomb', value: null }, { key: 'empty', value: '' }, { value: 'h', headers: { x: '1', y: '' } }],
  }))
  out.large = meta(await producer.send({ topic, acks: -1, messages: [{ value: 'x'.repeat(900 * 1024) }] }))
  try {
    await producer.send({ topic, acks: -1, messages: [{ value: 'y'.repeat(1100 * 1024) }] })
    out.tooLarge = null
  } catch (e) {
    out.tooLarge = (e.cause || e).type || e.name
  }
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: `${topic}-reader`, maxWaitTimeInMs: 300 })
  const messages = []
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ message }) => {
      const m = messageJson(0, message)
      messages.push({ offset: m.offset, key: m.key, size: m.value === null ? null : m.value.length, headers: m.headers })
    },
  })
  await waitFor(() => messages.length >= 6, args.waitMs, `6 messages (have ${messages.length})`)
  await consumer.disconnect()
  out.messages = messages
  out.offsets = (await admin.fetchTopicOffsets(topic)).map(o => ({ low: Number(o.low), high: Number(o.high) }))
  await admin.disconnect()
  return out
}

// ---------------------------------------------------------------------------------- group
// One group member: what it was assigned at each join and every message it was handed.
class Member {
  constructor(kafka, name, groupId, topic) {
    this.name = name
    this.topic = topic
    this.consumer = kafka.consumer({
      groupId,
      sessionTimeout: 10000,
      rebalanceTimeout: 20000,
      heartbeatInterval: 300,
      maxWaitTimeInMs: 300,
    })
    this.joins = [] // one entry per GROUP_JOIN: the partitions of the topic it was given
    this.seen = [] // [partition, offset] in delivery order
    this.consumer.on(this.consumer.events.GROUP_JOIN, e => {
      const parts = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
      this.joins.push(parts)
    })
  }

  async start() {
    await this.consumer.connect()
    await this.consumer.subscribe({ topics: [this.topic], fromBeginning: true })
    await this.consumer.run({
      eachMessage: async ({ partition, message }) => {
        this.seen.push([partition, Number(message.offset)])
      },
    })
  }

  assignment() {
    return this.joins.length ? this.joins[this.joins.length - 1] : null
  }
}

async function produceRound(producer, topic, partitions, perPartition, round) {
  const messages = []
  for (let p = 0; p < partitions; p++) {
    for (let i = 0; i < perPartition; i++) messages.push({ partition: p, key: `r${round}`, value: `round${round}-p${p}-${i}` })
  }
  await producer.send({ topic, acks: -1, messages })
}

async function committed(admin, groupId, topic) {
  const [t] = await admin.fetchOffsets({ groupId, topics: [topic] })
  const out = {}
  for (const p of t.partitions) out[p.partition] = Number(p.offset)
  return out
}

function delivered(members, partitions, upTo) {
  // Every offset below upTo of every partition was handed to some member.
  const have = new Set()
  for (const m of members) for (const [p, o] of m.seen) have.add(`${p}:${o}`)
  for (let p = 0; p < partitions; p++) for (let o = 0; o < upTo; o++) if (!have.has(`${p}:${o}`)) return false
  return true
}

function allCommitted(offsets, partitions, value) {
  for (let p = 0; p < partitions; p++) if (offsets[p] !== value) return false
  return true
}

function partitionsCovered(assignments, partitions) {
  // Every member assigned, pairwise disjoint, together exactly 0..partitions-1.
  if (assignments.some(a => a === null)) return false
  const all = assignments.flat().sort((a, b) => a - b)
  return all.length === partitions && all.every((p, i) => p === i)
}

async function group(args) {
  const { topic, partitions } = args
  const kafka = client(args, 'kafkajs-group')
  const admin = kafka.admin()
  await admin.connect()
  await createTopic(admin, args, topic, partitions, 1)
  const producer = idempotentProducer(kafka)
  await producer.connect()
  const phases = {}
  const members = {}
  try {
    return await groupPhases(args, kafka, admin, producer, phases, members)
  } catch (e) {
    // What each member had been given so far, for the test's failure message.
    e.state = { phases, members: Object.fromEntries(Object.entries(members).map(([k, m]) => [k, { joins: m.joins, seen: m.seen }])) }
    throw e
  }
}

async function groupPhases(args, kafka, admin, producer, phases, members) {
  const { topic, groupId, partitions, perRound } = args

  // Phase 1: two members split the partitions, then read round 0; everything gets committed.
  const a = (members.a = new Member(kafka, 'a', groupId, topic))
  const b = (members.b = new Member(kafka, 'b', groupId, topic))
  await a.start()
  await b.start()
  await waitFor(() => partitionsCovered([a.assignment(), b.assignment()], partitions) && a.assignment().length > 0 && b.assignment().length > 0,
    args.waitMs, 'a and b to share the partitions')
  await produceRound(producer, topic, partitions, perRound, 0)
  await waitFor(() => delivered([a, b], partitions, perRound), args.waitMs, 'round 0 delivered')
  await waitFor(async () => allCommitted(await committed(admin, groupId, topic), partitions, perRound), args.waitMs, 'round 0 committed')
  phases.shared = { a: a.assignment(), b: b.assignment(), committed: await committed(admin, groupId, topic) }
  const described = await admin.describeGroups([groupId])
  phases.shared.describe = described.groups.map(g => ({
    groupId: g.groupId, errorCode: g.errorCode, state: g.state, protocolType: g.protocolType, protocol: g.protocol,
    members: g.members.map(m => ({ clientId: m.clientId, hasAssignment: m.memberAssignment.length > 0 })),
  }))

  // Phase 2: b leaves (LeaveGroup); a rejoins with every partition and reads round 1.
  await b.consumer.disconnect()
  const aJoins = a.joins.length
  await waitFor(() => a.joins.length > aJoins && partitionsCovered([a.assignment()], partitions), args.waitMs, 'a to take every partition')
  await produceRound(producer, topic, partitions, perRound, 1)
  await waitFor(() => delivered([a, b], partitions, 2 * perRound), args.waitMs, 'round 1 delivered')
  await waitFor(async () => allCommitted(await committed(admin, groupId, topic), partitions, 2 * perRound), args.waitMs, 'round 1 committed')
  phases.alone = { a: a.assignment(), committed: await committed(admin, groupId, topic) }

  // Phase 3: c joins; a and c split the partitions again, and c starts at the committed offsets.
  const c = (members.c = new Member(kafka, 'c', groupId, topic))
  await c.start()
  await waitFor(() => partitionsCovered([a.assignment(), c.assignment()], partitions) && c.assignment().length > 0 && a.assignment().length > 0,
    args.waitMs, 'a and c to share the partitions')
  await produceRound(producer, topic, partitions, perRound, 2)
  await waitFor(() => delivered([a, b, c], partitions, 3 * perRound), args.waitMs, 'round 2 delivered')
  await waitFor(async () => allCommitted(await committed(admin, groupId, topic), partitions, 3 * perRound), args.waitMs, 'round 2 committed')
  phases.rejoined = { a: a.assignment(), c: c.assignment(), committed: await committed(admin, groupId, topic) }

  await a.consumer.disconnect()
  await c.consumer.disconnect()
  await producer.disconnect()
  const after = await admin.describeGroups([groupId])
  phases.empty = { state: after.groups[0].state, members: after.groups[0].members.length }
  await admin.disconnect()
  return { phases, seen: { a: a.seen, b: b.seen, c: c.seen }, joins: { a: a.joins, b: b.joins, c: c.joins } }
}

// ---------------------------------------------------------------------------------- admin
async function adminScenario(args) {
  const { topic, groupId } = args
  const kafka = client(args, 'kafkajs-admin')
  const admin = kafka.admin()
  await admin.connect()
  const out = {}

  out.cluster = await admin.describeCluster()
  out.created = await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: false, timeout: 30000 })
  await waitForLeaders(admin, args, topic, 3)
  // A second create of the same name is TOPIC_ALREADY_EXISTS, which kafkajs reports as false.
  out.createdAgain = await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: false, timeout: 30000 })
  const md = await admin.fetchTopicMetadata({ topics: [topic] })
  out.metadata = md.topics.map(t => ({
    name: t.name,
    partitions: t.partitions.map(p => ({ partitionId: p.partitionId, errorCode: p.partitionErrorCode, leader: p.leader, replicas: p.replicas, isr: p.isr }))
      .sort((x, y) => x.partitionId - y.partitionId),
  }))
  out.listedBeforeDelete = (await admin.listTopics()).includes(topic)

  // A group with a committed offset and one live member, for listGroups and describeGroups.
  const producer = idempotentProducer(kafka)
  await producer.connect()
  await producer.send({ topic, acks: -1, messages: [{ partition: 0, value: 'one' }] })
  await producer.disconnect()
  const consumer = kafka.consumer({ groupId, heartbeatInterval: 300, maxWaitTimeInMs: 300, sessionTimeout: 10000 })
  let got = 0
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({ eachMessage: async () => { got += 1 } })
  await waitFor(() => got >= 1, args.waitMs, 'the one message')
  await waitFor(async () => (await committed(admin, groupId, topic))[0] === 1, args.waitMs, 'the commit')
  const listed = await admin.listGroups()
  out.listGroups = listed.groups.filter(g => g.groupId === groupId)
  const described = await admin.describeGroups([groupId, `${groupId}-never-existed`])
  out.describeGroups = described.groups.map(g => ({
    groupId: g.groupId, errorCode: g.errorCode, state: g.state, protocolType: g.protocolType, protocol: g.protocol,
    members: g.members.map(m => ({ clientId: m.clientId, memberAssignmentBytes: m.memberAssignment.length })),
  }))
  out.fetchOffsets = await committed(admin, groupId, topic)
  out.deleteLiveGroup = await deleteGroupsError(kafka, [groupId])
  await consumer.disconnect()

  // The group is Empty now: offsets can be set from outside, and the group deleted.
  await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '0' }, { partition: 2, offset: '1' }] })
  out.setOffsets = await committed(admin, groupId, topic)
  out.deleteGroups = (await admin.deleteGroups([groupId])).map(r => ({ groupId: r.groupId, errorCode: r.errorCode }))
  out.listedAfterDeleteGroups = (await admin.listGroups()).groups.some(g => g.groupId === groupId)
  out.offsetsAfterDeleteGroups = await committed(admin, groupId, topic)
  out.deleteUnknownGroup = await deleteGroupsError(kafka, [`${groupId}-never-existed`])

  await admin.deleteTopics({ topics: [topic], timeout: 30000 })
  out.listedAfterDelete = await waitFor(async () => !(await admin.listTopics()).includes(topic), args.waitMs, 'the topic to disappear from listTopics')
  // Deleting it again: UNKNOWN_TOPIC_OR_PARTITION, which kafkajs retries (so no retries here).
  const once = kafka.admin({ retry: { retries: 0 } })
  await once.connect()
  try {
    await once.deleteTopics({ topics: [topic], timeout: 30000 })
    out.deleteAgain = { error: null }
  } catch (e) {
    const cause = e.cause || e
    out.deleteAgain = { error: cause.type || cause.name }
  }
  await once.disconnect()
  await admin.disconnect()
  return out
}

// The error code DeleteGroups answered for each group, or null where it succeeded (kafkajs throws
// KafkaJSDeleteGroupsError listing the groups that failed; no retries, so it does so at once).
async function deleteGroupsError(kafka, groupIds) {
  const once = kafka.admin({ retry: { retries: 0 } })
  await once.connect()
  try {
    await once.deleteGroups(groupIds)
    return null
  } catch (e) {
    const cause = e.cause || e
    if (!cause.groups) throw e
    return cause.groups.map(g => ({ groupId: g.groupId, errorCode: g.errorCode, error: g.error && g.error.type }))
  } finally {
    await once.disconnect()
  }
}

// ---------------------------------------------------------------------------------- main
const COMMANDS = { roundtrip, edges, group, admin: adminScenario }

async function main() {
  const [command, json] = process.argv.slice(2)
  const run = COMMANDS[command]
  if (!run) throw new Error(`unknown command ${command}; one of ${Object.keys(COMMANDS).join(', ')}`)
  const args = { timeoutMs: 90000, waitMs: 45000, ...JSON.parse(json || '{}') }
  setTimeout(() => {
    process.stderr.write(`watchdog: ${command} still running after ${args.timeoutMs} ms\n`)
    process.exit(3)
  }, args.timeoutMs).unref()
  await registerCodecs()
  const result = await run(args)
  return result
}

// process.exit() right after a write to a pipe would cut the output at the pipe's buffer (64 KiB):
// exit only once the write has been flushed.
function finish(result, code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
}

main().then(result => finish(result, 0), e => {
  process.stderr.write(`${e.stack || e}\n`)
  finish({ error: String(e.message || e), type: e.type || e.name, state: e.state }, 1)
})

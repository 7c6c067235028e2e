/**
 * `npm run bench:ceiling`: how fast each Kafka client behind the transport seam can read a topic
 * of real-sized AuditEvents when the work per record is nothing: a group consumer, read_committed,
 * from the beginning, records counted in the batch callback, nothing decoded. The ceiling any
 * detector throughput sits under. Runs alternate between clients; medians and the ratio go into
 * BENCHMARKS.md ("Consumer ceiling").
 *
 *   npm run bench:ceiling -- [--events 500000] [--runs 3] [--brokers 127.0.0.1:39092]
 *                            [--registry http://127.0.0.1:38080/apis/ccompat/v7] [--no-write]
 *
 * Defaults point at a second local stack (ports 39092/38080), so tests on the default stack
 * neither disturb nor are disturbed by it:
 *   TRAILWATCH_STACK_KAFKA_PORT=39092 TRAILWATCH_STACK_REGISTRY_PORT=38080 npm run stack -- up
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { kafkaSchema, registrySchema } from '../src/config/schema.ts';
import { createLogger } from '../src/logger.ts';
import { createRegistry } from '../src/runtime/registry.ts';
import { createKafkajsTransport } from '../src/transport/kafkajs/index.ts';
import { createPlatformaticTransport } from '../src/transport/platformatic/index.ts';
import type { ClientName, Transport } from '../src/transport/types.ts';
import { fillTopic } from './lib/fill.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '500000' },
    runs: { type: 'string', default: '3' },
    days: { type: 'string', default: '7' },
    principals: { type: 'string', default: '500' },
    brokers: { type: 'string', default: '127.0.0.1:39092' },
    registry: { type: 'string', default: 'http://127.0.0.1:38080/apis/ccompat/v7' },
    'no-write': { type: 'boolean', default: false },
  },
});
const EVENTS = Number(values.events);
const RUNS = Number(values.runs);
const DAYS = Number(values.days);
const PRINCIPALS = Number(values.principals);
const PARTITIONS = 6;
const TOPIC = `trailwatch.bench.ceiling.${EVENTS}`;
/** Per-partition fetch bound, the same for both clients (the Java client's default). */
const FETCH_BYTES = 1_048_576;

const logger = createLogger({ level: 'warn' });
const kafka = kafkaSchema.parse({ brokers: values.brokers.split(','), clientId: 'trailwatch-bench-ceiling' });
const transports: Record<ClientName, Transport> = {
  kafkajs: createKafkajsTransport(kafka, logger),
  platformatic: createPlatformaticTransport(kafka, logger),
};

interface Run {
  records: number;
  bytes: number;
  seconds: number;
}

/** Reads the whole topic once in a fresh group; the clock runs from run() to the last record. */
async function readAll(transport: Transport, run: number): Promise<Run> {
  let records = 0;
  let bytes = 0;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const consumer = transport.groupConsumer({
    groupId: `trailwatch-bench-ceiling-${transport.client}-${process.pid}-${run}`,
    topics: [TOPIC],
    fromBeginning: true,
    maxBytesPerPartition: FETCH_BYTES,
    sessionTimeoutMs: 30_000,
  });
  // The clock starts at the first batch: joining the group is not reading.
  let started = 0n;
  await consumer.run({
    onBatch: async (batch) => {
      if (started === 0n) started = process.hrtime.bigint();
      records += batch.records.length;
      for (const r of batch.records) bytes += (r.value?.length ?? 0) + (r.key?.length ?? 0);
      if (records >= EVENTS) done();
    },
    onCrash: (err) => {
      throw err;
    },
  });
  await finished;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await consumer.close();
  return { records, bytes, seconds };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

const fill = await fillTopic({
  transport: transports.platformatic,
  registry: createRegistry(registrySchema.parse({ url: values.registry })),
  topic: TOPIC,
  events: EVENTS,
  days: DAYS,
  principals: PRINCIPALS,
  partitions: PARTITIONS,
  onProgress: (n) => {
    if (n % 100_000 === 0) process.stderr.write(`filled ${n}\n`);
  },
});
process.stderr.write(`${fill.reused ? 'reusing' : 'filled'} ${TOPIC}: ${fill.events} events (${fill.seconds.toFixed(1)} s)\n`);

const results: Record<ClientName, Run[]> = { kafkajs: [], platformatic: [] };
for (let run = 0; run < RUNS; run++) {
  for (const client of ['kafkajs', 'platformatic'] as const) {
    const r = await readAll(transports[client], run);
    results[client].push(r);
    process.stderr.write(
      `${client} run ${run + 1}: ${r.records} records in ${r.seconds.toFixed(2)} s = ${Math.round(r.records / r.seconds)} records/s, ${(r.bytes / r.seconds / 2 ** 20).toFixed(1)} MiB/s\n`,
    );
  }
}

const rps = (c: ClientName) => results[c].map((r) => r.records / r.seconds);
const mbps = (c: ClientName) => results[c].map((r) => r.bytes / r.seconds / 2 ** 20);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const avgBytes = (results.kafkajs[0]?.bytes ?? 0) / (results.kafkajs[0]?.records || 1);
const ratio = median(rps('platformatic')) / median(rps('kafkajs'));
const rows = (['kafkajs', 'platformatic'] as const).map(
  (c) => `| ${c} | ${fmt(median(rps(c)))} | ${median(mbps(c)).toFixed(1)} | ${rps(c).map(fmt).join(', ')} |`,
);
const section = [
  '<!-- ceiling:start -->',
  '## Consumer ceiling',
  '',
  'A no-op group consumer through the transport seam (`src/transport/`), one per client: read_committed, from the beginning, records counted in the batch callback, nothing decoded (`bench/ceiling.ts`). The ceiling any detector throughput sits under.',
  '',
  `- command: \`npm run bench:ceiling -- --events ${EVENTS} --runs ${RUNS}\` against a second local stack (\`TRAILWATCH_STACK_KAFKA_PORT=39092 TRAILWATCH_STACK_REGISTRY_PORT=38080 npm run stack -- up\`)`,
  `- machine: ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}; the broker on the same machine; **other work was running on the machine** (its 2 cores are shared), so figures move between runs`,
  `- topic: ${PARTITIONS} partitions, ${EVENTS.toLocaleString('en-US')} AuditEvents (quality generator traffic over ${DAYS} days, ${PRINCIPALS} principals, Avro in the Confluent wire format), ${Math.round(avgBytes)} B a record (key + value), no compression, written by an idempotent producer (\`bench/lib/fill.ts\`)`,
  `- consumers: a fresh group each run, one member, timed from its first batch to its last record (the group join is left out), fetch bound ${FETCH_BYTES / 2 ** 20} MiB per partition; runs alternate between the clients; MB/s counts key and value bytes`,
  '',
  '| client | records/s (median) | MiB/s (median) | records/s per run |',
  '|---|---:|---:|---|',
  ...rows,
  `| ratio platformatic / kafkajs | ${ratio.toFixed(2)} | | |`,
  '<!-- ceiling:end -->',
].join('\n');
process.stdout.write(`${section}\n`);
if (!values['no-write']) {
  const file = join(import.meta.dirname, '../BENCHMARKS.md');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const re = /<!-- ceiling:start -->[\s\S]*?<!-- ceiling:end -->/;
  writeFileSync(file, re.test(text) ? text.replace(re, section) : `${text.trimEnd()}\n\n${section}\n`);
}
process.exit(0);

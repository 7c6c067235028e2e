/**
 * Publish throughput: `trailwatch publish cloudtrail` end to end against a plain kafkajs producer
 * sending the same records, already encoded, in the same run.
 * Run: npm run bench:publish [-- --records 300000 --runs 3 --partitions 6 --no-write]
 *
 * (a) publish: the CLI in a child process over a generated tree of `.json.gz` deliveries
 *     (bench/publish/generate.ts), to a fresh topic with `--partitions` partitions: gunzip, JSON
 *     parse, normalize, Avro encode, produce with acks=all. Records/s is records over the time
 *     the command reports (connect, topic creation, registry and every acknowledgement included;
 *     Node's start-up, about half a second, not); the child's wall time is printed too.
 * (b) plain kafkajs: the same records, normalized and encoded before the clock starts, sent by
 *     a default kafkajs producer (acks=all, no compression) in requests of 1,000 records, one
 *     at a time, to a fresh topic of the same shape.
 * Medians of `--runs` runs; the ratio is median(a) / median(b).
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Kafka, logLevel, type Message } from 'kafkajs';
import { auditEventType } from '../src/contracts/schemas.ts';
import { normalizeDeliveries, readCloudTrailDeliveries } from '../src/ingest/files.ts';
import { stackStatus } from '../src/stack/local.ts';
import { generateTree } from './publish/generate.ts';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '300000' },
    runs: { type: 'string', default: '3' },
    partitions: { type: 'string', default: '6' },
    'no-write': { type: 'boolean' },
  },
});
const records = Number(values.records);
const runs = Number(values.runs);
const partitions = Number(values.partitions);
const root = join(import.meta.dirname, '..');

const status = await stackStatus();
const brokers = process.env.KAFKA_BROKERS?.split(',') ?? (status.running ? status.brokers : []);
const registryUrl = process.env.SCHEMA_REGISTRY_URL ?? (status.running ? status.registryUrl : '');
if (brokers.length === 0 || !registryUrl)
  throw new Error('no Kafka: start the local stack (npm run stack -- up) or set KAFKA_BROKERS and SCHEMA_REGISTRY_URL');

const tree = await generateTree({ sourceDir: join(root, '../shared/data/cloudtrail'), records });
console.log(`tree: ${tree.records} records in ${tree.files} files, ${mb(tree.gzBytes)} gzipped, ${mb(tree.jsonBytes)} JSON (${tree.dir})`);

const kafka = new Kafka({ clientId: 'trailwatch-bench', brokers, logLevel: logLevel.NOTHING });
const admin = kafka.admin();
await admin.connect();
const created: string[] = [];

async function freshTopic(prefix: string): Promise<string> {
  const topic = `${prefix}-${process.pid}-${Date.now().toString(36)}`;
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  created.push(topic);
  return topic;
}

async function publishRun(): Promise<{ rate: number; seconds: number; wallSeconds: number }> {
  const topic = await freshTopic('tw-bench-publish');
  const started = performance.now();
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'src/cli/main.ts'), 'publish', 'cloudtrail', '--topic', topic, tree.dir], {
      env: { ...process.env, KAFKA_BROKERS: brokers.join(','), SCHEMA_REGISTRY_URL: registryUrl, TRAILWATCH_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`publish exited ${code}: ${stdout}`))));
  });
  const wallSeconds = (performance.now() - started) / 1000;
  const m = /^(\d+) records published .* in ([\d.]+) s/m.exec(out);
  if (!m || Number(m[1]) !== tree.records) throw new Error(`unexpected publish output: ${out}`);
  const seconds = Number(m[2]);
  const offsets = await admin.fetchTopicOffsets(topic);
  const stored = offsets.reduce((n, o) => n + Number(o.high), 0);
  if (stored !== tree.records) throw new Error(`topic holds ${stored} records, published ${tree.records}`);
  return { rate: tree.records / seconds, seconds, wallSeconds };
}

// The same records, encoded as publish encodes them (schema id 1 stands in for the registry's).
const encoded: Message[] = [];
for await (const item of normalizeDeliveries(readCloudTrailDeliveries([tree.dir]))) {
  if (item.kind !== 'event') continue;
  const header = Buffer.from([0, 0, 0, 0, 1]);
  encoded.push({
    key: `${item.event.accountId}|${item.event.principal}`,
    value: Buffer.concat([header, auditEventType.toBuffer(item.event)]),
  });
}

/** 1,000 records of ~650 bytes stay under the broker's 1 MiB record batch limit even when they all land in one partition. */
const PLAIN_BATCH = 1_000;

async function plainRun(): Promise<{ rate: number; seconds: number }> {
  const topic = await freshTopic('tw-bench-plain');
  const producer = kafka.producer();
  await producer.connect();
  const started = performance.now();
  for (let i = 0; i < encoded.length; i += PLAIN_BATCH) await producer.send({ topic, messages: encoded.slice(i, i + PLAIN_BATCH) });
  const seconds = (performance.now() - started) / 1000;
  await producer.disconnect();
  return { rate: encoded.length / seconds, seconds };
}

const publishRates: number[] = [];
const plainRates: number[] = [];
try {
  for (let run = 1; run <= runs; run++) {
    const a = await publishRun();
    const b = await plainRun();
    publishRates.push(a.rate);
    plainRates.push(b.rate);
    console.log(
      `run ${run}: publish ${fmt(a.rate)} records/s (${a.seconds} s, ${a.wallSeconds.toFixed(1)} s wall); plain kafkajs ${fmt(b.rate)} records/s (${b.seconds.toFixed(1)} s)`,
    );
  }
} finally {
  await admin.deleteTopics({ topics: created }).catch(() => undefined);
  await admin.disconnect();
}

const publishMedian = median(publishRates);
const plainMedian = median(plainRates);
const ratio = publishMedian / plainMedian;
console.log(`median: publish ${fmt(publishMedian)} records/s, plain kafkajs ${fmt(plainMedian)} records/s, ratio ${ratio.toFixed(2)}`);

if (!values['no-write']) {
  const cpu = cpus()[0]?.model.split(' ').slice(0, 2).join(' ') ?? 'unknown CPU';
  const section = [
    '<!-- publish:start -->',
    '## Publish',
    '',
    '`trailwatch publish cloudtrail` end to end (gunzip, JSON parse, normalize, Avro encode, produce with acks=all to a fresh topic) against a plain kafkajs producer sending the same records already encoded, in the same run (`bench/publish.ts`).',
    '',
    `- command: \`npm run bench:publish -- --records ${records} --runs ${runs} --partitions ${partitions}\``,
    `- machine: ${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}; the local stack's broker on the same machine; **other work was running on the machine** (its 2 cores are shared), so figures move by ±30 % between runs`,
    `- input: ${tree.records.toLocaleString('en')} records in ${tree.files} \`.json.gz\` deliveries (${mb(tree.gzBytes)} gzipped, ${mb(tree.jsonBytes)} JSON), grown from the shared real deliveries (\`bench/publish/generate.ts\`: new ids and times, 8 accounts, 10–2,500 records a file)`,
    `- topic: ${partitions} partitions, no compression; publish: its defaults (requests of 2,000 records, at most 2 unacknowledged); plain: \`kafka.producer()\` defaults, \`send\` of ${PLAIN_BATCH.toLocaleString('en')} records at a time (2,000 can put more than the broker's 1 MiB record batch into one partition: one file is one account, a few principals)`,
    '',
    '| | records/s (median) | runs |',
    '|---|---:|---|',
    `| publish, end to end | ${fmt(publishMedian)} | ${publishRates.map(fmt).join(', ')} |`,
    `| plain kafkajs, pre-encoded | ${fmt(plainMedian)} | ${plainRates.map(fmt).join(', ')} |`,
    `| ratio publish / plain | ${ratio.toFixed(2)} | |`,
    '<!-- publish:end -->',
  ].join('\n');
  const file = join(root, 'BENCHMARKS.md');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const re = /<!-- publish:start -->[\s\S]*?<!-- publish:end -->/;
  writeFileSync(file, re.test(text) ? text.replace(re, section) : `${text.trimEnd()}\n\n${section}\n`);
  console.log('BENCHMARKS.md: Publish section written');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en');
}

function mb(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

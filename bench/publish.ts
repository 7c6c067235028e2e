/**
 * Publish throughput per Kafka client: `trailwatch publish cloudtrail` end to end against a plain
 * producer of the same client sending the same records, already encoded, in the same requests,
 * in the same run.
 * Run: npm run bench:publish [-- --records 300000 --runs 3 --partitions 6 --clients kafkajs,platformatic --workers N --profile --no-write]
 *
 * (a) publish: the CLI in a child process (kafka.client set through TRAILWATCH_KAFKA__CLIENT)
 *     over a generated tree of `.json.gz` deliveries (bench/publish/generate.ts), to a fresh
 *     topic with `--partitions` partitions, its defaults otherwise (a checkpoint, in a temporary
 *     directory): gunzip, JSON parse, normalize, Avro encode (in the ingest worker threads),
 *     produce with acks=all from the main thread. Records/s is records over the time the command
 *     reports (connect, topic creation, registry and every acknowledgement included; Node's
 *     start-up, about half a second, not); the child's CPU time (user + system, all its threads)
 *     is printed too.
 * (b) plain: the same records, encoded by the same ingest pipeline before the clock starts (same
 *     keys, values and partitions), sent by the transport seam's producer of the same client (the
 *     idempotent producer publish uses, acks=all, no compression) in the requests publish makes:
 *     up to 2,000 records, none carrying more of one partition than the topic's max.message.bytes
 *     (transport/batching.ts), one at a time, to a fresh topic of the same shape. Timed from the
 *     first send to the last acknowledgement (connecting left out); CPU of this process meanwhile.
 * Medians of `--runs` runs, clients interleaved within a run; ratios are of medians. `--profile`
 * adds one publish per client under `--cpu-prof` and writes where its time goes, per thread
 * (bench/publish/profile.ts).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { validateConfig } from '../src/config/load.ts';
import { OPEN_RANGE, planInputs } from '../src/ingest/inputs.ts';
import { encodeInputs, META_FIELDS } from '../src/ingest/pipeline.ts';
import { cloudTrailSource } from '../src/ingest/sources/cloudtrail.ts';
import { createLogger } from '../src/logger.ts';
import { DEFAULT_BATCH_RECORDS } from '../src/runtime/publisher.ts';
import { stackStatus } from '../src/stack/local.ts';
import { planSends } from '../src/transport/batching.ts';
import { createTransport } from '../src/transport/index.ts';
import type { OutRecord, Producer } from '../src/transport/types.ts';
import { machine } from './lib/common.ts';
import { generateTree } from './publish/generate.ts';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '300000' },
    runs: { type: 'string', default: '3' },
    partitions: { type: 'string', default: '6' },
    clients: { type: 'string', default: 'kafkajs,platformatic' },
    workers: { type: 'string' },
    profile: { type: 'boolean' },
    'no-write': { type: 'boolean' },
  },
});
const records = Number(values.records);
const runs = Number(values.runs);
const partitions = Number(values.partitions);
const clients = values.clients.split(',') as Client[];
type Client = 'kafkajs' | 'platformatic';
const root = join(import.meta.dirname, '..');
const TARGET = 100_000;

const startLoad = loadavg()[0] ?? 0;
const machineLine = machine(); // the load when the benchmark started
const status = await stackStatus();
const brokers = process.env.KAFKA_BROKERS?.split(',') ?? (status.running ? status.brokers : []);
const registryUrl = process.env.SCHEMA_REGISTRY_URL ?? (status.running ? status.registryUrl : '');
if (brokers.length === 0 || !registryUrl)
  throw new Error('no Kafka: start the local stack (npm run stack -- up) or set KAFKA_BROKERS and SCHEMA_REGISTRY_URL');

const tree = await generateTree({ sourceDir: join(root, '../shared/data/cloudtrail'), records });
console.log(`tree: ${tree.records} records in ${tree.files} files, ${mb(tree.gzBytes)} gzipped, ${mb(tree.jsonBytes)} JSON (${tree.dir})`);
const scratch = await mkdtemp(join(tmpdir(), 'tw-bench-publish-'));

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

async function storedRecords(topic: string): Promise<number> {
  return (await admin.fetchTopicOffsets(topic)).reduce((n, o) => n + Number(o.high), 0);
}

interface Run {
  rate: number;
  seconds: number;
  cpuSeconds: number;
  /** CPU seconds by thread name (Linux only; empty elsewhere). */
  threads: Map<string, number>;
}

/**
 * CPU time of a running process by thread name, from /proc (Linux): sampled every 100 ms, the
 * last value seen per thread kept, so a thread that ends keeps what it had used (up to 100 ms
 * of its last moments are missed).
 */
class ThreadCpu {
  private readonly seen = new Map<string, { name: string; seconds: number }>();
  private readonly timer: NodeJS.Timeout;
  private readonly pid: number;

  constructor(pid: number) {
    this.pid = pid;
    this.timer = setInterval(() => this.sample(), 100);
  }

  private sample(): void {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${this.pid}/task`);
    } catch {
      return; // gone, or not Linux
    }
    for (const tid of tids) {
      try {
        const name = readFileSync(`/proc/${this.pid}/task/${tid}/comm`, 'utf8').trim();
        const stat = readFileSync(`/proc/${this.pid}/task/${tid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks (1/100 s)
        this.seen.set(tid, { name, seconds: ticks / 100 });
      } catch {
        // the thread ended between listing and reading
      }
    }
  }

  stop(): Map<string, number> {
    clearInterval(this.timer);
    const byName = new Map<string, number>();
    for (const { name, seconds } of this.seen.values()) byName.set(name, (byName.get(name) ?? 0) + seconds);
    return byName;
  }
}

/** What each thread name does in a publish (Node names its threads). */
const THREADS: Record<string, string> = {
  MainThread: 'main: the producer (client request building), chunks in',
  WorkerThread: 'ingest worker: JSON parse, normalize, raw JSON, Avro encode, chunks out',
  V8Worker: "V8's helpers: garbage collection, optimizing compiler",
  'libuv-worker': "libuv's pool: gunzip, file reads",
};

/** `trailwatch publish cloudtrail` in a child; with `profileDir`, under --cpu-prof. */
async function publishRun(client: Client, profileDir?: string): Promise<Run> {
  const topic = await freshTopic(`tw-bench-publish-${client}`);
  const workers = values.workers ? ['--workers', values.workers] : [];
  const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  let threadCpu: ThreadCpu | null = null;
  const { out, cpuSeconds } = await new Promise<{ out: string; cpuSeconds: number }>((resolve, reject) => {
    // The CLI prints its CPU time (all threads) on fd 3 when it exits: see the --cpu line below.
    const child = spawn(
      process.execPath,
      [
        ...profile,
        '--import',
        join(root, 'bench/publish/cpu-report.ts'),
        join(root, 'src/cli/main.ts'),
        'publish',
        'cloudtrail',
        '--topic',
        topic,
        '--no-progress',
        '--checkpoint',
        join(scratch, `${topic}.jsonl`),
        ...workers,
        tree.dir,
      ],
      {
        env: {
          ...process.env,
          KAFKA_BROKERS: brokers.join(','),
          SCHEMA_REGISTRY_URL: registryUrl,
          TRAILWATCH_LOG_LEVEL: 'warn',
          TRAILWATCH_KAFKA__CLIENT: client,
        },
        stdio: ['ignore', 'pipe', 'inherit', 'pipe'],
      },
    );
    if (child.pid !== undefined) threadCpu = new ThreadCpu(child.pid);
    let stdout = '';
    let cpu = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => {
      cpu += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve({ out: stdout, cpuSeconds: Number(cpu.trim()) }) : reject(new Error(`publish exited ${code}: ${stdout}`)),
    );
  });
  const threads = (threadCpu as ThreadCpu | null)?.stop() ?? new Map<string, number>();
  const m = /^(\d+) records published .* in ([\d.]+) s/m.exec(out);
  if (!m || Number(m[1]) !== tree.records) throw new Error(`unexpected publish output: ${out}`);
  const seconds = Number(m[2]);
  const stored = await storedRecords(topic);
  if (stored !== tree.records) throw new Error(`topic holds ${stored} records, published ${tree.records}`);
  return { rate: tree.records / seconds, seconds, cpuSeconds, threads };
}

// The same records, encoded by the same pipeline as publish (schema id 1 stands in for the registry's).
const seam = createTransport(validateConfig({ kafka: { brokers } }).kafka, createLogger({ level: 'silent' }));
const seamAdmin = await seam.admin();
const maxMessageBytes = await seamAdmin.brokerMessageMaxBytes(); // what a fresh topic's max.message.bytes is
await seamAdmin.close();
// Kept as the pipeline hands them over (chunks of keys and values, off the JS heap): a plain
// producer holding 300,000 record objects would pay for marking them in every GC.
const encoded: Array<{ data: Buffer; meta: Int32Array; count: number }> = [];
const plan = await planInputs([tree.dir], cloudTrailSource(), OPEN_RANGE);
const settings = { schemaId: 1, partitions, maxMessageBytes, oldBeforeMs: 0, raw: true };
let encodedRecords = 0;
for await (const chunk of encodeInputs(plan.entries, settings)) {
  encoded.push({ data: chunk.data, meta: chunk.meta, count: chunk.count });
  encodedRecords += chunk.count;
}
if (encodedRecords !== tree.records) throw new Error(`encoded ${encodedRecords} records of ${tree.records}`);

/**
 * Sends the encoded records to `topic` in the requests publish makes of them: DEFAULT_BATCH_RECORDS
 * at most, cut where a partition's share would pass max.message.bytes (transport/batching.ts),
 * one after the other, each record named by its partition as publish names it.
 */
async function sendAll(producer: Producer, topic: string): Promise<void> {
  let pending: OutRecord[] = [];
  const send = async (): Promise<void> => {
    for (const group of planSends(pending, maxMessageBytes, (r) => r.partition as number).groups) await producer.send(group);
    pending = [];
  };
  for (const chunk of encoded) {
    let offset = 0;
    for (let r = 0; r < chunk.count; r++) {
      const m = r * META_FIELDS;
      const keyEnd = offset + (chunk.meta[m] as number);
      const valueEnd = keyEnd + (chunk.meta[m + 1] as number);
      pending.push({
        topic,
        key: chunk.data.subarray(offset, keyEnd),
        value: chunk.data.subarray(keyEnd, valueEnd),
        partition: chunk.meta[m + 2] as number,
      });
      offset = valueEnd;
      if (pending.length >= DEFAULT_BATCH_RECORDS) await send();
    }
  }
  if (pending.length > 0) await send();
}

async function plainRun(client: Client): Promise<Run> {
  const topic = await freshTopic(`tw-bench-plain-${client}`);
  const config = validateConfig({ kafka: { brokers, client } });
  const producer = createTransport(config.kafka, createLogger({ level: 'silent' })).producer();
  await producer.connect();
  const cpu = process.cpuUsage();
  const started = performance.now();
  await sendAll(producer, topic);
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  await producer.close();
  const stored = await storedRecords(topic);
  if (stored !== encodedRecords) throw new Error(`plain topic holds ${stored} records, sent ${encodedRecords}`);
  return { rate: encodedRecords / seconds, seconds, cpuSeconds: (used.user + used.system) / 1e6, threads: new Map() };
}

const results = new Map<Client, { publish: Run[]; plain: Run[] }>(clients.map((c) => [c, { publish: [], plain: [] }]));
const profiles = new Map<Client, string>();
try {
  for (let run = 1; run <= runs; run++) {
    for (const client of clients) {
      const a = await publishRun(client);
      const b = await plainRun(client);
      results.get(client)?.publish.push(a);
      results.get(client)?.plain.push(b);
      console.log(
        `run ${run} ${client}: publish ${fmt(a.rate)} records/s (${a.seconds} s, ${a.cpuSeconds.toFixed(1)} s CPU); plain ${fmt(b.rate)} records/s (${b.seconds.toFixed(1)} s, ${b.cpuSeconds.toFixed(1)} s CPU)`,
      );
    }
  }
  if (values.profile) {
    for (const client of clients) {
      const dir = join(scratch, `profile-${client}`);
      await publishRun(client, dir);
      profiles.set(client, await whereTheTimeGoes(dir));
    }
  }
} finally {
  await admin.deleteTopics({ topics: created }).catch(() => undefined);
  await admin.disconnect();
  await rm(scratch, { recursive: true, force: true });
}

/** bench/publish/profile.ts over the profiles of one run, one per thread (main first). */
async function whereTheTimeGoes(dir: string): Promise<string> {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort()
    .map((f) => join(dir, f));
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'bench/publish/profile.ts'), '--top', '8', ...files], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
    });
    child.on('error', reject);
    child.on('close', () => resolve(text));
  });
  return out
    .replaceAll(dir, '')
    .replaceAll(/\/CPU\.[\d.]+\.(\d+)\.\d+\.cpuprofile/g, 'thread $1')
    .trim();
}

const threadRows: string[] = [];
for (const client of clients) {
  const r = (results.get(client) as { publish: Run[] }).publish;
  const names = [...new Set(r.flatMap((x) => [...x.threads.keys()]))].filter((n) => r.some((x) => (x.threads.get(n) ?? 0) >= 0.05));
  const order = (n: string): number => {
    const i = Object.keys(THREADS).indexOf(n);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  for (const name of names.sort((a, b) => order(a) - order(b) || a.localeCompare(b))) {
    const us = (median(r.map((x) => x.threads.get(name) ?? 0)) / tree.records) * 1e6;
    threadRows.push(`| ${client} | ${name} | ${THREADS[name] ?? ''} | ${us.toFixed(1)} |`);
  }
}

const rows: string[] = [];
let best = 0;
let bestPlain = 0;
let bestClient: Client = clients[0] as Client;
const cpuPerRecord = new Map<Client, { publish: number; plain: number }>();
for (const client of clients) {
  const r = results.get(client) as { publish: Run[]; plain: Run[] };
  const publish = median(r.publish.map((x) => x.rate));
  const plain = median(r.plain.map((x) => x.rate));
  const publishCpu = (median(r.publish.map((x) => x.cpuSeconds)) / tree.records) * 1e6;
  const plainCpu = (median(r.plain.map((x) => x.cpuSeconds)) / tree.records) * 1e6;
  if (publish > best) bestClient = client;
  best = Math.max(best, publish);
  bestPlain = Math.max(bestPlain, plain);
  cpuPerRecord.set(client, { publish: publishCpu, plain: plainCpu });
  console.log(
    `median ${client}: publish ${fmt(publish)} records/s (${publishCpu.toFixed(1)} µs CPU a record), plain ${fmt(plain)} records/s (${plainCpu.toFixed(1)} µs), ratio ${(publish / plain).toFixed(2)}`,
  );
  rows.push(
    `| ${client} | publish \`.json.gz\`, end to end | ${fmt(publish)} | ${r.publish.map((x) => fmt(x.rate)).join(', ')} | ${publishCpu.toFixed(1)} |`,
    `| ${client} | plain producer, same records pre-encoded, same requests | ${fmt(plain)} | ${r.plain.map((x) => fmt(x.rate)).join(', ')} | ${plainCpu.toFixed(1)} |`,
    `| ${client} | **ratio publish / plain** | **${(publish / plain).toFixed(2)}** | | |`,
  );
}
// What the CPU a record allows on this machine's cores, were nothing else running.
const cores = availableParallelism();
const cpu = cpuPerRecord.get(bestClient) as { publish: number; plain: number };
const ceiling =
  `Why: with ${bestClient}, publish spends ${cpu.publish.toFixed(1)} µs of CPU a record in its own process (all threads, table below) ` +
  `against the plain producer's ${cpu.plain.toFixed(1)}. ${cores} cores give at most ${fmt((cores * 1e6) / cpu.publish)} records/s to publish ` +
  `and ${fmt((cores * 1e6) / cpu.plain)} to the plain producer with nothing else running, the broker's share not counted: ` +
  `${fmt(TARGET)} records/s needs under ${((cores * 1e6) / TARGET).toFixed(0)} µs of CPU a record for everything, broker included.`;
const verdict = best >= TARGET ? `**met**: ${fmt(best)} records/s` : `**not met**: best ${fmt(best)} records/s`;
console.log(`target ${fmt(TARGET)} records/s end to end: ${verdict.replaceAll('*', '')} (the plain producer's best: ${fmt(bestPlain)})`);
console.log(ceiling);
if (threadRows.length > 0) console.log(`publish CPU by thread, µs a record:\n${threadRows.join('\n')}`);
for (const [client, text] of profiles) console.log(`\nwhere the time goes, ${client}:\n${text}`);

if (!values['no-write']) {
  const section = [
    '<!-- publish:start -->',
    '## Publish',
    '',
    '`trailwatch publish cloudtrail` end to end (gunzip, JSON parse, normalize, Avro encode in an ingest worker thread; produce with acks=all from the main thread, idempotent, to a fresh topic) per Kafka client (`kafka.client`), against a plain producer of the same client sending the same records already encoded, in the same requests, in the same run (`bench/publish.ts`).',
    '',
    `- command: \`KAFKA_BROKERS=… SCHEMA_REGISTRY_URL=… npm run bench:publish -- --records ${records} --runs ${runs} --partitions ${partitions}${values.workers ? ` --workers ${values.workers}` : ''}${values.profile ? ' --profile' : ''}\` against the stack at ${brokers.join(',')} (registry ${registryUrl})`,
    `- machine: ${machineLine}, ${(loadavg()[0] ?? 0).toFixed(1)} when it ended${startLoad > 1 ? '; **other work was running on the machine** (shared and loaded: the benchmark alone keeps it near 1.5–2)' : ''}; absolutes move between runs, ratios within one run are the figures to trust`,
    `- input: ${tree.records.toLocaleString('en')} records in ${tree.files} \`.json.gz\` deliveries (${mb(tree.gzBytes)} gzipped, ${mb(tree.jsonBytes)} JSON), grown from the shared real deliveries (\`bench/publish/generate.ts\`: new ids and times, 8 accounts, 10–2,500 records a file); every record carries its CloudTrail JSON (\`raw\`), ~1.9 KB a value`,
    `- topic: ${partitions} partitions, no compression. publish: its defaults (requests of up to 2,000 records, a partition's share under the topic's max.message.bytes, one request in flight while the next fills, ${values.workers ?? 'the default number of'} ingest worker thread(s), a checkpoint written as files finish). plain: the transport seam's idempotent producer of the same client, the records encoded by the same pipeline beforehand (kept in its chunks), sent in the same requests (2,000 records, cut at max.message.bytes a partition), one after the other`,
    '- CPU µs a record: publish, user + system time of the child (all threads: main, ingest worker, libuv pool, GC), start-up included; plain, of the benchmark process while it sends',
    '',
    '| client | | records/s (median) | runs | CPU µs a record |',
    '|---|---|---:|---|---:|',
    ...rows,
    '',
    `Target ≥ ${fmt(TARGET)} records/s end to end: ${verdict}; the plain producer's own best here ${fmt(bestPlain)} records/s.`,
    '',
    ceiling,
    ...(threadRows.length > 0
      ? [
          '',
          "Publish's CPU by thread (medians of the runs; `/proc/<pid>/task/*/stat` sampled every 100 ms):",
          '',
          '| client | thread | what it does | CPU µs a record |',
          '|---|---|---|---:|',
          ...threadRows,
        ]
      : []),
    ...[...profiles].flatMap(([client, text]) => [
      '',
      `Where the time goes, ${client} (\`--profile\`: one more publish under \`--cpu-prof\`, \`bench/publish/profile.ts\` per thread, the main thread first; sampled wall time, so a thread waiting for a core counts as busy in what it was doing):`,
      '',
      '```',
      text,
      '```',
    ]),
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

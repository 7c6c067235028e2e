/**
 * `npm run bench:rules`: the rules stage alone, in process. `RuleSet.matchAll` over realistic
 * traffic (the quality generator's calls as CloudTrail records, normalized as `publish` does)
 * with no rules, the default pack (15) and the benchmark's 100 rules (bench/rules/generate.ts),
 * each indexed (as `trailwatch run` uses it) and brute force (the same rules without their keys:
 * every rule tried on every event). Events with and without `raw`, in batches the size the live
 * runtime reads. Reports the median CPU time per event; the two ways must find the same matches.
 *
 *   npm run bench:rules -- [--events 200000] [--runs 7] [--batch 4000] [--principals 500] [--days 2] [--seed 11]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AuditEvent } from '../src/contracts/types.ts';
import { RuleSet } from '../src/detect/rules/evaluate.ts';
import { DEFAULT_PACK_DIR, loadRules, type Rule } from '../src/detect/rules/load.ts';
import { isIndexed } from '../src/detect/rules/rule-index.ts';
import { normalizeCloudTrail } from '../src/ingest/cloudtrail.ts';
import { fmt, median } from './lib/common.ts';
import { buildPopulation, TrafficGenerator } from './quality/generator.ts';
import { writeBenchRules } from './rules/generate.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    runs: { type: 'string', default: '7' },
    batch: { type: 'string', default: '4000' },
    principals: { type: 'string', default: '500' },
    days: { type: 'string', default: '2' },
    seed: { type: 'string', default: '11' },
  },
});
const EVENTS = Number(values.events);
const RUNS = Number(values.runs);
const BATCH = Number(values.batch);

/** What CloudTrail would have written for a generated call: the envelope fields and request parameters of its kind. */
function cloudTrailRecord(e: AuditEvent, i: number): Record<string, unknown> {
  const service = e.service.split('.')[0] ?? '';
  const id = (i * 2_654_435_761) >>> 0;
  const hex = id.toString(16).padStart(8, '0');
  const parameters: Record<string, Record<string, unknown>> = {
    s3: { bucketName: `data-${id % 40}`, key: `exports/2026/01/${hex}.parquet`, Host: `data-${id % 40}.s3.amazonaws.com` },
    ec2: { instancesSet: { items: [{ instanceId: `i-0${hex}${hex}` }] }, instanceType: id % 50 === 0 ? 'p4d.24xlarge' : 'm6i.large' },
    sts: { roleArn: `arn:aws:iam::${e.accountId}:role/svc-${id % 30}`, roleSessionName: `session-${hex}`, durationSeconds: 3600 },
    kms: {
      keyId: `arn:aws:kms:${e.region}:${e.accountId}:key/${hex}-1111-2222-3333-${hex}${hex.slice(0, 4)}`,
      encryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    },
    secretsmanager: { secretId: `prod/app-${id % 12}/db` },
    ssm: { name: `/prod/app-${id % 12}/config`, withDecryption: id % 3 === 0 },
    iam: { userName: `human-${id % 200}`, roleName: `svc-${id % 30}` },
    lambda: { functionName: `fn-${id % 25}`, invocationType: 'RequestResponse' },
    dynamodb: { tableName: `orders-${id % 8}`, limit: 100 },
  };
  return {
    eventVersion: '1.09',
    userIdentity: {
      type: e.principalType,
      principalId: `AIDA${hex.toUpperCase()}EXAMPLE`,
      arn: e.principal,
      accountId: e.accountId,
      accessKeyId: `ASIA${hex.toUpperCase()}EXAMPLE`,
      ...(e.principalType === 'AssumedRole'
        ? {
            sessionContext: {
              sessionIssuer: {
                type: 'Role',
                arn: e.principal.replace(':sts::', ':iam::').replace('assumed-role', 'role'),
                accountId: e.accountId,
              },
              attributes: { creationDate: new Date(e.eventTimeMs - 600_000).toISOString(), mfaAuthenticated: 'false' },
            },
          }
        : { userName: e.principal.split('/').pop() }),
    },
    eventTime: new Date(e.eventTimeMs).toISOString(),
    eventSource: e.service,
    eventName: e.action,
    awsRegion: e.region,
    sourceIPAddress: e.sourceIp ?? '10.0.0.1',
    userAgent: e.userAgent ?? 'aws-cli/2',
    ...(e.errorCode === null ? {} : { errorCode: e.errorCode, errorMessage: 'User is not authorized to perform this operation' }),
    requestParameters: parameters[service] ?? null,
    responseElements: null,
    requestID: `${hex}-aaaa-bbbb-cccc-${hex}${hex.slice(0, 4)}`,
    eventID: e.eventId,
    readOnly: e.readOnly,
    eventType: 'AwsApiCall',
    managementEvent: true,
    recipientAccountId: e.accountId,
    eventCategory: 'Management',
    tlsDetails: {
      tlsVersion: 'TLSv1.3',
      cipherSuite: 'TLS_AES_128_GCM_SHA256',
      clientProvidedHostHeader: `${service}.${e.region}.amazonaws.com`,
    },
  };
}

/** Batches of normalized events, each through a JSON round trip: fresh strings, as decoded from Avro. */
function traffic(raw: boolean): AuditEvent[][] {
  const population = buildPopulation({ seed: Number(values.seed), principals: Number(values.principals), days: Number(values.days) });
  const out: AuditEvent[][] = [];
  let batch: AuditEvent[] = [];
  let i = 0;
  for (const e of new TrafficGenerator({ population }).events()) {
    batch.push(normalizeCloudTrail(cloudTrailRecord(e, i), { raw }));
    if (batch.length === BATCH) {
      out.push(JSON.parse(JSON.stringify(batch)) as AuditEvent[]);
      batch = [];
    }
    if (++i >= EVENTS) break;
  }
  if (batch.length > 0) out.push(JSON.parse(JSON.stringify(batch)) as AuditEvent[]);
  return out;
}

async function load(paths: string[]): Promise<Rule[]> {
  const loaded = await loadRules(paths);
  if (loaded.problems.length > 0) throw new Error(`rule problems: ${JSON.stringify(loaded.problems)}`);
  return loaded.rules;
}

const dir = mkdtempSync(join(tmpdir(), 'trailwatch-bench-rules-'));
const pack = await load([DEFAULT_PACK_DIR]);
const hundred = await load([writeBenchRules(dir)]);
rmSync(dir, { recursive: true, force: true });

interface Setup {
  name: string;
  rules: readonly Rule[];
  indexed: boolean;
}
const withoutKeys = (rules: readonly Rule[]): Rule[] => rules.map(({ keys: _keys, ...rule }) => rule);
const setups: Setup[] = [
  { name: 'no rules', rules: [], indexed: true },
  { name: 'default pack (15)', rules: pack, indexed: true },
  { name: 'default pack (15)', rules: withoutKeys(pack), indexed: false },
  { name: '100 rules', rules: hundred, indexed: true },
  { name: '100 rules', rules: withoutKeys(hundred), indexed: false },
];

interface Timing {
  nsPerEvent: number[];
  matches: number;
}

/**
 * One pass of matchAll over every batch; a fresh RuleSet each pass, so its index starts cold.
 * Timed in CPU time of the process (garbage collection included), not wall time: on a shared
 * machine the wall clock also counts the time other work held the cores.
 */
function pass(setup: Setup, batches: readonly AuditEvent[][]): { ns: number; matches: number; events: number } {
  const set = new RuleSet(setup.rules);
  let matches = 0;
  let events = 0;
  const start = process.cpuUsage();
  for (const batch of batches) {
    matches += set.matchAll(batch).length;
    events += batch.length;
  }
  const used = process.cpuUsage(start);
  return { ns: (used.user + used.system) * 1_000, matches, events };
}

const report: string[] = [];
const loadAtStart = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; load average ${loadavg()[0]?.toFixed(1)} when the benchmark started`;
for (const raw of [false, true]) {
  const batches = traffic(raw);
  const events = batches.reduce((n, b) => n + b.length, 0);
  const timings = setups.map((): Timing => ({ nsPerEvent: [], matches: -1 }));
  for (const s of setups) pass(s, batches); // warm-up
  for (let run = 0; run < RUNS; run++) {
    // Alternate the order, so drift on a busy machine does not favour one setup.
    const order = run % 2 === 0 ? setups.map((_, i) => i) : setups.map((_, i) => setups.length - 1 - i);
    for (const i of order) {
      const r = pass(setups[i] as Setup, batches);
      const t = timings[i] as Timing;
      t.nsPerEvent.push(r.ns / r.events);
      t.matches = r.matches;
    }
  }
  for (let i = 1; i < setups.length; i += 2) {
    const a = timings[i] as Timing;
    const b = timings[i + 1] as Timing;
    if (a.matches !== b.matches) throw new Error(`${setups[i]?.name}: indexed ${a.matches} matches, brute force ${b.matches}`);
  }
  const base = median((timings[0] as Timing).nsPerEvent);
  report.push(
    '',
    `events ${raw ? 'with' : 'without'} raw: ${fmt(events)} (${batches.length} batches of ${BATCH})`,
    '',
    '| rules | way | indexed rules | CPU ns/event (median) | events per CPU second | CPU ns/event over no rules | matches |',
    '|---|---|---:|---:|---:|---:|---:|',
  );
  setups.forEach((s, i) => {
    const t = timings[i] as Timing;
    const ns = median(t.nsPerEvent);
    const way = s.rules.length === 0 ? '–' : s.indexed ? 'indexed' : 'brute force';
    const indexed = s.rules.filter((r) => isIndexed(r.keys)).length;
    const rate = s.rules.length === 0 ? '–' : fmt(1e9 / ns);
    report.push(`| ${s.name} | ${way} | ${indexed} | ${ns.toFixed(0)} | ${rate} | ${(ns - base).toFixed(0)} | ${fmt(t.matches)} |`);
  });
}
process.stdout.write(
  [
    '## Rules stage (in process)',
    '',
    `- command: \`npm run bench:rules -- --events ${EVENTS} --runs ${RUNS} --batch ${BATCH}\``,
    `- machine: ${loadAtStart}`,
    ...report,
    '',
  ].join('\n'),
);

/**
 * Bytes of heap per active key in the DetectionEngine, with the default 7-day baseline.
 * Run: npm run bench:memory [-- --keys N]  (needs --expose-gc; the npm script passes it)
 *
 * Each key is a principal × action call-rate key that has seen events in several buckets, so it
 * carries a real baseline, contributor sketches and no pending bucket — the steady state of a key
 * between its calls. The result is (memory after − memory before) / keys, after a full GC, where
 * memory is the JS heap in use plus external memory (array buffers: the engine keeps its numbers
 * in typed arrays, whose backing stores live outside the JS heap).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.ts';
import type { AuditEvent } from '../src/contracts/types.ts';
import { DetectionEngine } from '../src/detect/engine.ts';

const { values } = parseArgs({
  options: { keys: { type: 'string', default: '200000' }, json: { type: 'boolean' }, 'no-write': { type: 'boolean' } },
});
const keys = Number(values.keys);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (npm run bench:memory does)');

const detector = loadConfig({
  env: {},
  overrides: { detector: { scopes: { action: false, principalAction: true }, allowedLatenessMs: 0 } },
}).detector;
const T0 = Date.UTC(2026, 0, 5);
const PRINCIPALS = Math.ceil(keys / 20);
const ACTIONS = 20;

function event(i: number, minute: number, seq: number): AuditEvent {
  const p = i % PRINCIPALS;
  const a = Math.floor(i / PRINCIPALS) % ACTIONS;
  return {
    eventId: `${i}-${minute}-${seq}`,
    eventTimeMs: T0 + minute * 60_000 + (i % 50_000),
    source: 'aws.cloudtrail',
    accountId: '111122223333',
    region: 'us-east-1',
    principal: `arn:aws:iam::111122223333:user/user-${p}`,
    principalType: 'IAMUser',
    service: 'ec2.amazonaws.com',
    action: `Action${a}`,
    readOnly: false,
    errorCode: null,
    sourceIp: null,
    userAgent: `agent-${p % 7}`,
    attributes: {},
  };
}

/** JS heap in use plus memory held outside it for JS objects (array buffer backing stores included). */
function used(): { heap: number; external: number } {
  const m = process.memoryUsage();
  return { heap: m.heapUsed, external: m.external };
}

gc();
const before = used();
const engine = new DetectionEngine(detector);
const started = performance.now();
// Three active minutes per key, then the watermark moves on so no bucket is pending.
for (const minute of [0, 7, 30]) {
  const batch: AuditEvent[] = [];
  for (let i = 0; i < keys; i++) {
    batch.push(event(i, minute, 0));
    if (batch.length === 10_000) engine.process(batch.splice(0));
  }
  engine.process(batch);
}
engine.advanceWatermark(T0 + 40 * 60_000);
const seconds = (performance.now() - started) / 1000;
gc();
const after = used();
const heap = after.heap - before.heap;
const external = after.external - before.external;
const perKey = (heap + external) / engine.activeKeys;
const result = {
  keys: engine.activeKeys,
  bytesPerKey: Math.round(perKey),
  heapMiB: Math.round(heap / 1048576),
  externalMiB: Math.round(external / 1048576),
  seconds: Number(seconds.toFixed(1)),
};
if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
else
  process.stdout.write(
    `${result.keys} active keys: ${result.bytesPerKey} bytes per key (${result.heapMiB} MiB heap + ${result.externalMiB} MiB external), built in ${result.seconds} s\n`,
  );

/** The memory section of BENCHMARKS.md, rewritten in place; other sections are kept. */
if (!values['no-write']) {
  const file = join(import.meta.dirname, '../BENCHMARKS.md');
  const section = [
    '<!-- memory:start -->',
    '## Engine memory per active key',
    '',
    `- command: \`npm run bench:memory -- --keys ${keys}\``,
    `- machine: ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, Node ${process.version}`,
    '- workload: principal × action call-rate keys, default config (7-day baseline, hourly profile, top-5 attributions), each key seen in three buckets, no bucket pending; JS heap in use plus external memory (typed-array backing stores), after a full GC',
    '',
    '| active keys | bytes per key | heap | external | build time |',
    '|---:|---:|---:|---:|---:|',
    `| ${result.keys.toLocaleString('en-US')} | ${result.bytesPerKey} | ${result.heapMiB} MiB | ${result.externalMiB} MiB | ${result.seconds} s |`,
    '',
    'Target (issue 3): ≤ 1 KiB per active key. Where it goes: a fixed-size slot of doubles per key in chunked Float64Arrays (baseline, burst memory, the 24-hour profile, the counts of the user-agent and error-code baseline sketches), the key id string and its Map entry, and a small state object (identity, sketch values).',
    '<!-- memory:end -->',
  ].join('\n');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const re = /<!-- memory:start -->[\s\S]*?<!-- memory:end -->/;
  writeFileSync(file, re.test(text) ? text.replace(re, section) : `${text.trimEnd()}\n\n${section}\n`);
}

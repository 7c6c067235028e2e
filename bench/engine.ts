/**
 * The detection engine's hot path as the live first stage drives it: realistic traffic (the
 * quality generator's, default config, both scopes) through one PrincipalStage with change
 * tracking, in batches the size the live runtime reads, each followed by the watermark, the
 * changelog (drainChanges: every changed key encoded) and the partials into an ActionStage with
 * its own drainChanges. Reports µs per event for each part and events/s, medians of the runs.
 *
 *   npm run bench:engine -- [--principals N] [--days N] [--batch N] [--runs N] [--seed N] [--findings] [--json] [--write]
 *
 * --findings adds the first stage's findings (the default rule pack with repeats folded,
 * first-seen, breadth, as `run` has them by default): their per-event cost is its own column.
 *
 * Traffic is generated lazily, batch by batch, outside the timed sections; each batch goes through
 * a JSON round trip first so every event carries its own copies of its strings, as events decoded
 * from Avro do (shared strings would make the engine's map lookups look cheaper than they are).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.ts';
import type { AuditEvent } from '../src/contracts/types.ts';
import { findingSetupFromConfig } from '../src/detect/findings.ts';
import { type ActionRecord, ActionStage, PrincipalStage } from '../src/detect/topology.ts';
import { buildPopulation, TrafficGenerator } from './quality/generator.ts';

const { values } = parseArgs({
  options: {
    principals: { type: 'string', default: '2000' },
    days: { type: 'string', default: '3' },
    batch: { type: 'string', default: '4000' },
    runs: { type: 'string', default: '3' },
    seed: { type: 'string', default: '7' },
    findings: { type: 'boolean' },
    json: { type: 'boolean' },
    write: { type: 'boolean' },
  },
});
const principals = Number(values.principals);
const days = Number(values.days);
const batchSize = Number(values.batch);
const runs = Number(values.runs);
const seed = Number(values.seed);

const fullConfig = loadConfig({ env: {} });
const config = fullConfig.detector;
const setup = values.findings ? await findingSetupFromConfig(fullConfig.rules, fullConfig.findings, 'bench') : undefined;

interface RunResult {
  events: number;
  batches: number;
  changedKeys: number;
  encodedBytes: number;
  partials: number;
  insights: number;
  findings: number;
  /** Milliseconds in each part. */
  ms: { process: number; findings: number; watermark: number; changes: number; action: number };
}

/** Batches of `batchSize` events in event-time order, cut by count as a consumer fetch is. */
function* batches(): Generator<AuditEvent[]> {
  const population = buildPopulation({ seed, principals, days });
  let pending: AuditEvent[] = [];
  for (const minute of new TrafficGenerator({ population }).byMinute()) {
    for (const e of minute) {
      pending.push(e);
      if (pending.length >= batchSize) {
        yield JSON.parse(JSON.stringify(pending)) as AuditEvent[];
        pending = [];
      }
    }
  }
  if (pending.length > 0) yield JSON.parse(JSON.stringify(pending)) as AuditEvent[];
}

function run(): RunResult {
  const stage = PrincipalStage.create(config, 0, { trackChanges: true, ...(setup ? { findings: setup } : {}) });
  const action = ActionStage.create(config, 0, 1, { trackChanges: true });
  const r: RunResult = {
    events: 0,
    batches: 0,
    changedKeys: 0,
    encodedBytes: 0,
    partials: 0,
    insights: 0,
    findings: 0,
    ms: { process: 0, findings: 0, watermark: 0, changes: 0, action: 0 },
  };
  for (const batch of batches()) {
    const t0 = performance.now();
    // The stage's own process() is this, the findings and the advance below; apart, so each is timed.
    const fresh: AuditEvent[] | undefined = stage.findings ? [] : undefined;
    r.insights += stage.engine.process(batch, stage.engine.watermarkMs, fresh).length;
    const tf = performance.now();
    if (stage.findings && fresh) r.findings += stage.findings.process(fresh).length;
    const t1 = performance.now();
    const out = stage.advanceWatermark(stage.engine.latestEventTimeMs - config.allowedLatenessMs, false);
    r.findings += out.findings.length;
    const t2 = performance.now();
    const changes = stage.engine.drainChanges();
    for (const [, encoded] of changes.keys) if (encoded !== null) r.encodedBytes += encoded.length;
    for (const [, encoded] of stage.findings?.drainChanges() ?? []) if (encoded !== null) r.encodedBytes += encoded.length;
    const meta = JSON.stringify(changes.meta);
    const t3 = performance.now();
    const records: ActionRecord[] = out.partials.map((partial) => ({ kind: 'partial', partial }));
    records.push({ kind: 'marker', marker: out.marker });
    r.insights += action.ingest(records).length;
    const downstream = action.engine.drainChanges();
    const t4 = performance.now();
    r.ms.process += tf - t0;
    r.ms.findings += t1 - tf;
    r.ms.watermark += t2 - t1;
    r.ms.changes += t3 - t2;
    r.ms.action += t4 - t3;
    r.events += batch.length;
    r.batches++;
    r.changedKeys += changes.keys.length + downstream.keys.length;
    r.encodedBytes += meta.length;
    r.partials += out.partials.length;
    r.insights += out.insights.length;
  }
  return r;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

const results: RunResult[] = [];
for (let i = 0; i < runs; i++) {
  const r = run();
  results.push(r);
  const total = r.ms.process + r.ms.findings + r.ms.watermark + r.ms.changes + r.ms.action;
  process.stderr.write(
    `run ${i + 1}/${runs}: ${r.events} events in ${r.batches} batches, ${(total / 1000).toFixed(1)} s engine, ${Math.round((r.events / total) * 1000)} events/s\n`,
  );
}

const first = results[0] as RunResult;
const us = (part: keyof RunResult['ms']) => median(results.map((r) => (r.ms[part] * 1000) / r.events));
const perEvent = {
  process: us('process'),
  findings: us('findings'),
  watermark: us('watermark'),
  changes: us('changes'),
  action: us('action'),
  firstStage: median(results.map((r) => ((r.ms.process + r.ms.findings + r.ms.watermark + r.ms.changes) * 1000) / r.events)),
  total: median(results.map((r) => ((r.ms.process + r.ms.findings + r.ms.watermark + r.ms.changes + r.ms.action) * 1000) / r.events)),
};
const eventsPerSecond = Math.round(1e6 / perEvent.total);
const summary = {
  events: first.events,
  batches: first.batches,
  insights: first.insights,
  findings: first.findings,
  changedKeysPerEvent: first.changedKeys / first.events,
  encodedBytesPerEvent: first.encodedBytes / first.events,
  partialsPerEvent: first.partials / first.events,
  usPerEvent: perEvent,
  eventsPerSecond,
  runs: results.map((r) => Math.round((r.events / (r.ms.process + r.ms.findings + r.ms.watermark + r.ms.changes + r.ms.action)) * 1000)),
};

const f2 = (n: number) => n.toFixed(2);
if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
else {
  process.stdout.write(
    [
      `${summary.events.toLocaleString('en-US')} events, ${summary.batches} batches of ${batchSize}, ${summary.insights} Insights, ${setup ? `${summary.findings} findings` : 'findings off'}; per event: ${f2(summary.changedKeysPerEvent)} changed keys, ${Math.round(summary.encodedBytesPerEvent)} B of changelog, ${f2(summary.partialsPerEvent)} partials`,
      `µs/event (median of ${runs}): process ${f2(perEvent.process)}, findings ${f2(perEvent.findings)}, watermark ${f2(perEvent.watermark)}, drainChanges+encode ${f2(perEvent.changes)}, action stage ${f2(perEvent.action)}; first stage ${f2(perEvent.firstStage)}, total ${f2(perEvent.total)}`,
      `events/s (both stages, median): ${eventsPerSecond.toLocaleString('en-US')}; runs: ${summary.runs.map((n) => n.toLocaleString('en-US')).join(', ')}`,
      '',
    ].join('\n'),
  );
}

/** With --write: the figures of this run into the "Engine" section's generated table of BENCHMARKS.md. */
if (values.write) {
  const file = join(import.meta.dirname, '../BENCHMARKS.md');
  const table = [
    '<!-- engine-run:start -->',
    `- last run: \`npm run bench:engine -- --principals ${principals} --days ${days} --batch ${batchSize} --runs ${runs}\`; ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    `- ${summary.events.toLocaleString('en-US')} events in ${summary.batches} batches; per event ${f2(summary.changedKeysPerEvent)} changed keys, ${Math.round(summary.encodedBytesPerEvent)} B of changelog values, ${f2(summary.partialsPerEvent)} partials`,
    '',
    '| µs per event (median) | process | watermark | drainChanges + encode | first stage | action stage | both | events/s |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    `| this run | ${f2(perEvent.process)} | ${f2(perEvent.watermark)} | ${f2(perEvent.changes)} | ${f2(perEvent.firstStage)} | ${f2(perEvent.action)} | ${f2(perEvent.total)} | ${eventsPerSecond.toLocaleString('en-US')} |`,
    '<!-- engine-run:end -->',
  ].join('\n');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const re = /<!-- engine-run:start -->[\s\S]*?<!-- engine-run:end -->/;
  if (!re.test(text)) throw new Error('BENCHMARKS.md has no engine-run markers: add the "Engine" section first');
  writeFileSync(file, text.replace(re, table));
}

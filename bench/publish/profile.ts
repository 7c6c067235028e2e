/**
 * Where the time goes in a `.cpuprofile` (node --cpu-prof): self time by function, and by
 * category (gunzip, JSON parse, normalize, Avro encode, produce, GC, idle).
 * Run: node bench/publish/profile.ts <file.cpuprofile>... [--top 25]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });

/** The category of a frame, by the first ancestor (self first) that names one. */
const CATEGORIES: Array<[string, (f: Node['callFrame']) => boolean]> = [
  ['idle', (f) => f.functionName === '(idle)'],
  ['gc', (f) => f.functionName === '(garbage collector)'],
  ['gunzip / read', (f) => /zlib|fs\/promises|readFile/.test(f.url) || /gunzip|readFile/i.test(f.functionName)],
  [
    'json parse',
    (f) => (f.functionName === 'parse' && f.url === '') || (f.functionName === 'parseDocument' && f.url.includes('ingest/files.ts')),
  ],
  ['utf-8 / latin1 decode', (f) => /isAscii|toString|latin1Slice|decode/.test(f.functionName) && f.url.includes('node:buffer')],
  ['normalize', (f) => f.url.includes('ingest/cloudtrail.ts')],
  ['avro encode', (f) => f.url.includes('avsc') || f.url.includes('ingest/wire.ts')],
  ['worker chunks', (f) => f.url.includes('ingest/worker.ts') || f.url.includes('ingest/pipeline.ts')],
  ['publisher', (f) => f.url.includes('runtime/publisher.ts') || f.url.includes('commands/publish.ts')],
  ['platformatic client', (f) => f.url.includes('@platformatic/kafka') || f.url.includes('transport/platformatic')],
  ['kafkajs client', (f) => f.url.includes('kafkajs')],
  ['node internals', (f) => f.url.startsWith('node:')],
];

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const category = (id: number): string => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = (byId.get(at) as Node).callFrame;
      for (const [name, test] of CATEGORIES) if (test(f)) return name;
    }
    return 'other';
  };
  const cats = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of self) {
    const c = category(id);
    cats.set(c, (cats.get(c) ?? 0) + us);
    const f = (byId.get(id) as Node).callFrame;
    const name = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}:${f.lineNumber + 1}`;
    fns.set(name, (fns.get(name) ?? 0) + us);
  }
  const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)} %`;
  console.log(`\n${file}: ${(total / 1e6).toFixed(2)} s sampled`);
  for (const [c, us] of [...cats].sort((a, b) => b[1] - a[1])) console.log(`  ${pct(us)}  ${(us / 1e6).toFixed(2)} s  ${c}`);
  console.log('  top functions (self):');
  for (const [n, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`  ${pct(us)}  ${n}`);
}

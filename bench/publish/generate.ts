/**
 * A tree of CloudTrail `.json.gz` deliveries for the publish benchmark, grown from the shared real
 * deliveries (`../shared/data/cloudtrail/`): every generated record is a real record with a new
 * eventID, requestID and eventTime, and one of several account ids written over the original's
 * everywhere it appears (an organization trail: several accounts, each with its own principals),
 * so the field mix, identity types, sizes and nesting are the real ones.
 *
 * Layout as S3 delivers it: AWSLogs/<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/
 * <account>_CloudTrail_<region>_<yyyymmddThhmmZ>_<id>.json.gz. Record counts per file vary from
 * tens to a couple of thousand, like deliveries of quiet and busy accounts. The output is a
 * function of (records, seed) and kept under /tmp between runs: a `.complete` marker says a tree
 * was written to the end.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { mulberry32 } from '../../src/demo/traffic.ts';

const gzipAsync = promisify(gzip);

export interface GeneratedTree {
  dir: string;
  records: number;
  files: number;
  /** Bytes on disk (gzipped) and of the JSON inside. */
  gzBytes: number;
  jsonBytes: number;
}

function hex(random: () => number, n: number): string {
  let s = '';
  while (s.length < n)
    s += Math.floor(random() * 0x100000000)
      .toString(16)
      .padStart(8, '0');
  return s.slice(0, n);
}

function uuid(random: () => number): string {
  const h = hex(random, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const ALPHANUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
function token(random: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHANUM[Math.floor(random() * ALPHANUM.length)];
  return s;
}

function loadTemplates(sourceDir: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.json'))
        out.push(...(JSON.parse(readFileSync(full, 'utf8')) as { Records: Array<Record<string, unknown>> }).Records);
    }
  };
  walk(sourceDir);
  if (out.length === 0) throw new Error(`no CloudTrail records under ${sourceDir}`);
  return out;
}

/**
 * Writes (or finds) the tree. Event times run over the `spanMs` before `endMs`, so a publish of
 * the tree is current traffic, not a backfill.
 */
export async function generateTree(options: {
  sourceDir: string;
  records: number;
  seed?: number;
  accounts?: number;
  root?: string;
  endMs?: number;
  spanMs?: number;
}): Promise<GeneratedTree> {
  const seed = options.seed ?? 1;
  const accounts = options.accounts ?? 8;
  const dir = join(options.root ?? '/tmp', `trailwatch-bench-publish-${options.records}-s${seed}-a${accounts}`);
  const marker = join(dir, '.complete');
  if (existsSync(marker)) return JSON.parse(readFileSync(marker, 'utf8')) as GeneratedTree;
  await rm(dir, { recursive: true, force: true });

  const random = mulberry32(seed);
  const templates = loadTemplates(options.sourceDir);
  const originalAccount = String(templates.find((r) => typeof r.recipientAccountId === 'string')?.recipientAccountId ?? '');
  const accountIds = Array.from({ length: accounts }, (_, i) =>
    i === 0 ? originalAccount : String(100000000000 + Math.floor(random() * 899999999999)),
  );
  // One JSON text per template and account: generation is string work, not a JSON round trip per record.
  const texts = accountIds.map((account) =>
    templates.map((t) => {
      const text = JSON.stringify(t);
      return originalAccount ? text.split(originalAccount).join(account) : text;
    }),
  );
  const endMs = options.endMs ?? Date.now() - 60 * 60_000;
  const spanMs = options.spanMs ?? 6 * 60 * 60_000;
  const regions = ['us-east-1', 'eu-west-1', 'ap-southeast-2'];

  let written = 0;
  let files = 0;
  let gzBytes = 0;
  let jsonBytes = 0;
  while (written < options.records) {
    // Mostly a few hundred records a file, some quiet accounts with tens, some busy ones with thousands.
    const r = random();
    const size = Math.min(
      options.records - written,
      r < 0.2 ? 10 + Math.floor(random() * 90) : r < 0.9 ? 200 + Math.floor(random() * 600) : 1500 + Math.floor(random() * 1000),
    );
    const a = Math.floor(random() * accounts);
    const account = accountIds[a] as string;
    const region = regions[Math.floor(random() * regions.length)] as string;
    const fileTimeMs = endMs - spanMs + Math.floor((written / options.records) * spanMs);
    const parts: string[] = [];
    for (let i = 0; i < size; i++) {
      const k = Math.floor(random() * templates.length);
      const template = templates[k] as Record<string, unknown>;
      const timeMs = fileTimeMs - Math.floor(random() * 5 * 60_000);
      const eventTime = `${new Date(Math.floor(timeMs / 1000) * 1000).toISOString().slice(0, 19)}Z`;
      let text = (texts[a] as string[])[k] as string;
      text = text.replace(`"eventID":"${String(template.eventID)}"`, `"eventID":"${uuid(random)}"`);
      text = text.replace(`"eventTime":"${String(template.eventTime)}"`, `"eventTime":"${eventTime}"`);
      if (typeof template.requestID === 'string')
        text = text.replace(`"requestID":"${template.requestID}"`, `"requestID":"${token(random, 16)}"`);
      parts.push(text);
    }
    const json = `{"Records":[${parts.join(',')}]}`;
    const day = new Date(fileTimeMs).toISOString();
    const sub = join(dir, 'AWSLogs', account, 'CloudTrail', region, day.slice(0, 4), day.slice(5, 7), day.slice(8, 10));
    await mkdir(sub, { recursive: true });
    const stamp = `${day.slice(0, 4)}${day.slice(5, 7)}${day.slice(8, 10)}T${day.slice(11, 13)}${day.slice(14, 16)}Z`;
    const gz = await gzipAsync(json);
    await writeFile(join(sub, `${account}_CloudTrail_${region}_${stamp}_${token(random, 16)}.json.gz`), gz);
    written += size;
    files++;
    gzBytes += gz.length;
    jsonBytes += Buffer.byteLength(json);
  }
  const tree: GeneratedTree = { dir, records: written, files, gzBytes, jsonBytes };
  await writeFile(marker, JSON.stringify(tree));
  return tree;
}

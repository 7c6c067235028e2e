/**
 * Every source by format. A new source is a file in this folder and one entry here. The spec is
 * plain data (it crosses into the ingest worker threads), so a source is built where it runs.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { gunzipSync, constants as zlibConstants } from 'node:zlib';
import { isGzip } from '../files.ts';
import { type Format, SNIFF_BYTES, type Source } from '../source.ts';
import { cloudTrailSource } from './cloudtrail.ts';
import { cwLogsSource } from './cwlogs.ts';
import { eventBridgeSource } from './eventbridge.ts';
import { type JsonlMapping, jsonlSource } from './jsonl.ts';
import { type K8sAuditOptions, k8sAuditSource } from './k8s-audit.ts';

/** What it takes to build a source: its format and the settings that shape its records. */
export interface SourceSpec {
  format: Format;
  /** Keep each source record as JSON in the event's `raw`, for rules (default false). */
  raw?: boolean;
  /** `ingest.jsonl`: how a JSON line maps to an AuditEvent; null: the lines are AuditEvents. */
  jsonl?: JsonlMapping | null;
  /** `ingest.k8sAudit`: the cluster and region Kubernetes audit events are attributed to. */
  k8sAudit?: Pick<K8sAuditOptions, 'cluster' | 'region'>;
}

const BUILDERS: Record<Format, (spec: SourceSpec) => Source> = {
  cloudtrail: (s) => cloudTrailSource({ raw: s.raw }),
  eventbridge: (s) => eventBridgeSource({ raw: s.raw }),
  cwlogs: (s) => cwLogsSource({ raw: s.raw, k8s: s.k8sAudit }),
  'k8s-audit': (s) => k8sAuditSource({ ...s.k8sAudit, raw: s.raw }),
  jsonl: (s) => jsonlSource({ mapping: s.jsonl ?? null, raw: s.raw }),
};

export function createSource(spec: SourceSpec): Source {
  return BUILDERS[spec.format](spec);
}

/** The order formats are tried when sniffing (a file's head, a raw message): the most specific shapes first. */
export const SNIFF_ORDER: readonly Format[] = ['k8s-audit', 'cloudtrail', 'cwlogs', 'eventbridge', 'jsonl'];

/**
 * The format of a file whose name says nothing (`audit.log`, `events.json`), from its first bytes
 * (gunzipped when gzip); null when no source recognizes them or the file cannot be read.
 */
export async function sniffFormat(file: string): Promise<Format | null> {
  const head = await readHead(file);
  if (head === null) return null;
  for (const format of SNIFF_ORDER) if (createSource({ format }).sniff(head)) return format;
  return null;
}

async function readHead(file: string): Promise<string | null> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(file);
    const buf = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await fh.read(buf, 0, SNIFF_BYTES, 0);
    let bytes = buf.subarray(0, bytesRead);
    if (isGzip(bytes)) {
      // The head of a gzip stream: inflate what is there, without asking for its end.
      bytes = gunzipSync(bytes, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).subarray(0, SNIFF_BYTES);
    }
    return bytes.toString('utf8');
  } catch {
    return null;
  } finally {
    await fh?.close();
  }
}

import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { type Document, isMap, isNode, isSeq, LineCounter, parseDocument } from 'yaml';

/**
 * Reading a config file: YAML (`.yaml`, `.yml`) or JSON (anything else). Parse errors name the
 * file, line and column; a YAML file also remembers where each value sits, so a validation
 * problem can name its line.
 */

export interface ConfigFile {
  path: string;
  /** The file's text, as read (its hash is the config's version). */
  text: string;
  /** The parsed top level; null when it does not parse (see `errors`). */
  data: Record<string, unknown> | null;
  /** Parse errors, each `file:line:col: message`. */
  errors: string[];
  /** The line (1-based) of the value at `path`, or of its nearest ancestor there; null when unknown (JSON). */
  lineOf(path: readonly PropertyKey[]): number | null;
}

export function isYamlPath(path: string): boolean {
  const ext = extname(path).toLowerCase();
  return ext === '.yaml' || ext === '.yml';
}

/** Reads and parses `path`; throws only when the file cannot be read. */
export function readConfigFile(path: string): ConfigFile {
  const text = readFileSync(path, 'utf8');
  return parseConfigText(path, text);
}

export function parseConfigText(path: string, text: string): ConfigFile {
  if (isYamlPath(path)) return parseYaml(path, text);
  const noLines = () => null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    // Node names the line and column in its message ("… (line 3 column 5)").
    return { path, text, data: null, errors: [`${path}: not valid JSON: ${(err as Error).message}`], lineOf: noLines };
  }
  if (!isRecord(parsed)) return { path, text, data: null, errors: [`${path}: the top level must be an object`], lineOf: noLines };
  return { path, text, data: parsed, errors: [], lineOf: noLines };
}

function parseYaml(path: string, text: string): ConfigFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const lineOf = (p: readonly PropertyKey[]) => yamlLine(doc, lineCounter, p);
  if (doc.errors.length > 0) {
    const errors = doc.errors.map((e) => {
      const at = e.linePos?.[0];
      const where = at ? `${path}:${at.line}:${at.col}` : path;
      return `${where}: ${(e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}`;
    });
    return { path, text, data: null, errors, lineOf };
  }
  const data: unknown = doc.toJS() ?? {};
  if (!isRecord(data)) return { path, text, data: null, errors: [`${path}:1:1: the top level must be a mapping`], lineOf };
  return { path, text, data, errors: [], lineOf };
}

function yamlLine(doc: Document, lines: LineCounter, path: readonly PropertyKey[]): number | null {
  let node: unknown = doc.contents;
  // Nothing of the path in the file (a default, the environment): no line.
  let line: number | null = null;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isNode(p.key) ? (p.key as { value?: unknown }).value : p.key) === key);
      if (!pair) break;
      // A key whose value is missing or null: the key's own line.
      line = lineAt(pair.value, lines) ?? lineAt(pair.key, lines) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key];
      if (item === undefined) break;
      line = lineAt(item, lines) ?? line;
      node = item;
    } else break;
  }
  return line;
}

function lineAt(node: unknown, lines: LineCounter): number | null {
  if (!isNode(node) || !node.range) return null;
  return lines.linePos(node.range[0]).line;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ErrorCodes, TrailwatchError } from '../../src/errors.ts';
import { type FileIdentity, fileIdentities, PublishCheckpoint } from '../../src/ingest/files.ts';

async function identity(file: string): Promise<FileIdentity> {
  const id = (await fileIdentities([file])).get(file);
  assert.ok(id, `${file} has an identity`);
  return id;
}

describe('PublishCheckpoint', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tw-checkpoint-'));
  after(() => rm(dir, { recursive: true, force: true }));
  const scope = { topic: 'events', format: 'cloudtrail' };

  test('records finished files and knows them again, by path, size and modification time', async () => {
    const a = join(dir, 'a.json');
    const b = join(dir, 'b.json');
    await writeFile(a, '{"Records":[]}');
    await writeFile(b, '{"Records":[1]}');
    const path = join(dir, 'state', 'one.jsonl');
    assert.equal((await fileIdentities([join(dir, 'gone.json')])).get(join(dir, 'gone.json')), null, 'no identity for a missing file');
    const first = await PublishCheckpoint.open(path, scope);
    assert.equal(first.size, 0);
    await first.record([await identity(a)]);

    const again = await PublishCheckpoint.open(path, scope);
    assert.equal(again.size, 1);
    assert.ok(again.has(await identity(a)));
    assert.ok(!again.has(await identity(b)));

    // The same path with another modification time is another version: published again.
    await utimes(a, new Date(), new Date(Date.now() + 60_000));
    assert.ok(!again.has(await identity(a)));
  });

  test('a last line cut short by a crash is dropped, and appending goes on after it', async () => {
    const path = join(dir, 'torn.jsonl');
    const checkpoint = await PublishCheckpoint.open(path, scope);
    const ok = { file: '/x/ok.json', bytes: 1, mtimeMs: 1 };
    await checkpoint.record([ok]);
    await appendFile(path, '{"file":"/x/cut.js');
    const reopened = await PublishCheckpoint.open(path, scope);
    assert.equal(reopened.size, 1);
    await reopened.record([{ file: '/x/next.json', bytes: 2, mtimeMs: 2 }]);
    const lines = (await readFile(path, 'utf8')).split('\n');
    assert.equal(lines.length, 4, 'header, two files, the final newline');
    assert.equal((await PublishCheckpoint.open(path, scope)).size, 2);
  });

  test("another topic's or format's checkpoint, or another file, is refused naming the fix", async () => {
    const path = join(dir, 'other.jsonl');
    await PublishCheckpoint.open(path, scope);
    for (const other of [
      { topic: 'elsewhere', format: 'cloudtrail' },
      { topic: 'events', format: 'jsonl' },
    ]) {
      await assert.rejects(PublishCheckpoint.open(path, other), (err: unknown) => {
        assert.ok(err instanceof TrailwatchError);
        assert.equal(err.code, ErrorCodes.USAGE);
        assert.match(err.message, /records a publish of cloudtrail to topic events/);
        assert.match(err.message, /Pass another --checkpoint FILE, delete this one to publish every file again, or --no-checkpoint/);
        return true;
      });
    }
    const notOne = join(dir, 'notes.txt');
    await writeFile(notOne, 'shopping list\n');
    await assert.rejects(PublishCheckpoint.open(notOne, scope), /it is not a trailwatch publish checkpoint/);
  });
});

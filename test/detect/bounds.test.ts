import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { configSchema } from '../../src/config/schema.ts';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { boundEvent, boundValue, MAX_FIELD_CHARS } from '../../src/detect/bounds.ts';
import { DetectionEngine } from '../../src/detect/engine.ts';

const event = (over: Partial<AuditEvent> = {}): AuditEvent => ({
  eventId: 'e1',
  eventTimeMs: Date.UTC(2026, 0, 1),
  source: 'aws.cloudtrail',
  accountId: '123456789012',
  region: 'us-east-1',
  principal: 'arn:aws:iam::123456789012:user/alice',
  principalType: 'IAMUser',
  service: 'ec2.amazonaws.com',
  action: 'RunInstances',
  readOnly: false,
  errorCode: null,
  sourceIp: null,
  userAgent: 'cli',
  attributes: {},
  ...over,
});

describe('boundValue / boundEvent', () => {
  test('short values and events pass as they are, with no copy', () => {
    const e = event();
    assert.equal(boundEvent(e), e);
    assert.equal(boundValue('abc'), 'abc');
  });

  test('a long value is cut to the bound, and two that share a prefix stay apart', () => {
    const a = boundValue('p'.repeat(300_000));
    const b = boundValue(`${'p'.repeat(299_999)}q`);
    assert.equal(a.length, MAX_FIELD_CHARS);
    assert.equal(b.length, MAX_FIELD_CHARS);
    assert.notEqual(a, b);
    assert.ok(a.startsWith('pppp'));
    assert.match(a, /…#[0-9a-f]{16}$/);
  });

  test('only the long fields of an event are cut', () => {
    const e = event({ principal: 'x'.repeat(5_000), userAgent: 'y'.repeat(3_000) });
    const b = boundEvent(e);
    assert.notEqual(b, e);
    assert.equal(b.principal.length, MAX_FIELD_CHARS);
    assert.equal(b.userAgent?.length, MAX_FIELD_CHARS);
    assert.equal(b.action, e.action);
    assert.equal(e.principal.length, 5_000, 'the input is not changed');
  });

  test('the engine keys a long principal by its bounded form', () => {
    const config = configSchema.parse({}).detector;
    const engine = new DetectionEngine(config);
    engine.process([event({ principal: 'z'.repeat(600_000) })]);
    const ids = engine.keyIds();
    assert.ok(ids.length > 0);
    for (const id of ids) assert.ok(id.length < 3 * MAX_FIELD_CHARS, `key id of ${id.length} chars`);
  });
});

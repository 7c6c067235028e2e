import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { isTrailwatchError } from '../../src/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { createMetricsRegistry } from '../../src/observe/metrics.ts';
import { type ObserveEndpoints, startObserveServer } from '../../src/observe/server.ts';
import { fakeView } from '../helpers/observe.ts';

const log = createLogger({ level: 'silent' });

describe('the observe HTTP server', () => {
  test('/metrics, /healthz, /readyz; 404 and 405 elsewhere', async (t) => {
    const view = fakeView();
    view.metrics.eventsDecoded = 42;
    const { registry } = createMetricsRegistry(
      { view: () => view, lags: () => null, ready: () => false, now: () => 0 },
      { version: '1', configHash: 'h', configVersion: '' },
    );
    let ready = false;
    const endpoints: ObserveEndpoints = {
      metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
      health: () => ({ ok: true, reasons: [] }),
      ready: () => (ready ? { ok: true, reasons: [] } : { ok: false, reasons: ['no partitions assigned'], details: { member: 'm1' } }),
    };
    const server = await startObserveServer({ host: '127.0.0.1', port: 0, endpoints, log });
    t.after(() => server.close());
    assert.ok(server.port > 0);

    const metrics = await fetch(`${server.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(await metrics.text(), /^trailwatch_events_in_total 42$/m);

    const healthz = await fetch(`${server.url}/healthz`);
    assert.equal(healthz.status, 200);
    assert.deepEqual(await healthz.json(), { status: 'ok', reasons: [] });

    const notReady = await fetch(`${server.url}/readyz`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), { status: 'not ready', reasons: ['no partitions assigned'], member: 'm1' });
    ready = true;
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);

    assert.equal((await fetch(`${server.url}/readyz?verbose=1`)).status, 200, 'a query string is ignored');
    assert.equal((await fetch(`${server.url}/`)).status, 404);
    const post = await fetch(`${server.url}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    assert.equal((await fetch(`${server.url}/healthz`, { method: 'HEAD' })).status, 200);
  });

  test('a failing endpoint answers 500, and the server goes on', async (t) => {
    let fail = true;
    const server = await startObserveServer({
      host: '127.0.0.1',
      port: 0,
      log,
      endpoints: {
        metrics: async () => {
          if (fail) throw new Error('collector broke');
          return { contentType: 'text/plain', body: 'ok' };
        },
        health: () => ({ ok: false, reasons: ['stuck'] }),
        ready: () => ({ ok: true, reasons: [] }),
      },
    });
    t.after(() => server.close());
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 500);
    assert.deepEqual(await res.json(), { error: 'collector broke' });
    fail = false;
    assert.equal(await (await fetch(`${server.url}/metrics`)).text(), 'ok');
    assert.equal((await fetch(`${server.url}/healthz`)).status, 503);
  });

  test('a port in use fails the start naming the setting to change', async (t) => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => taken.close(() => resolve())));
    const port = (taken.address() as AddressInfo).port;
    const endpoints: ObserveEndpoints = {
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      health: () => ({ ok: true, reasons: [] }),
      ready: () => ({ ok: true, reasons: [] }),
    };
    await assert.rejects(startObserveServer({ host: '127.0.0.1', port, endpoints, log }), (err: Error) => {
      assert.ok(isTrailwatchError(err));
      assert.equal(err.code, 'TW_CONFIG_INVALID');
      assert.match(err.message, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use: set observe\\.port \\(TRAILWATCH_OBSERVE__PORT\\)`));
      return true;
    });
  });
});

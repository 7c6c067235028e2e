import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, errorMessage, TrailwatchError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Probe } from './health.ts';

/** What the endpoints answer with; each is asked per request. */
export interface ObserveEndpoints {
  metrics(): Promise<{ contentType: string; body: string }>;
  health(): Probe;
  ready(): Probe & { details?: Record<string, unknown> };
}

export interface ObserveServer {
  /** e.g. http://127.0.0.1:9464 */
  url: string;
  port: number;
  close(): Promise<void>;
}

const PATHS = ['/metrics', '/healthz', '/readyz'];

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);
}

async function handle(endpoints: ObserveEndpoints, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  if (!PATHS.includes(path)) {
    json(res, 404, { error: `no such path; try ${PATHS.join(', ')}` });
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    json(res, 405, { error: 'GET or HEAD only' });
    return;
  }
  if (path === '/metrics') {
    const { contentType, body } = await endpoints.metrics();
    send(res, 200, contentType, body);
    return;
  }
  if (path === '/healthz') {
    const h = endpoints.health();
    json(res, h.ok ? 200 : 503, { status: h.ok ? 'ok' : 'unhealthy', reasons: h.reasons });
    return;
  }
  const r = endpoints.ready();
  json(res, r.ok ? 200 : 503, { status: r.ok ? 'ready' : 'not ready', reasons: r.reasons, ...r.details });
}

/**
 * /metrics (Prometheus text), /healthz and /readyz on node:http. `port` 0 takes one the system
 * picks (tests); a port in use fails the start with the setting to change.
 */
export async function startObserveServer(opts: {
  host: string;
  port: number;
  endpoints: ObserveEndpoints;
  log: Logger;
}): Promise<ObserveServer> {
  const server: Server = createServer((req, res) => {
    handle(opts.endpoints, req, res).catch((err: unknown) => {
      opts.log.warn({ err: errorMessage(err), path: req.url }, 'observe endpoint failed');
      if (!res.headersSent) json(res, 500, { error: errorMessage(err) });
      else res.destroy();
    });
  });
  // A scraper keeps its connection; a stop must not wait for it.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const fix =
        err.code === 'EADDRINUSE'
          ? `port ${opts.port} on ${opts.host} is in use: set observe.port (TRAILWATCH_OBSERVE__PORT) to a free port, or 0 to turn the endpoint off`
          : `cannot listen on ${opts.host}:${opts.port} (${err.code ?? err.message}): check observe.host and observe.port (TRAILWATCH_OBSERVE__HOST, TRAILWATCH_OBSERVE__PORT), 0 turns the endpoint off`;
      reject(new TrailwatchError(ErrorCodes.CONFIG_INVALID, fix, { fault: 'user', cause: err }));
    });
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port, address, family } = server.address() as AddressInfo;
  const host = family === 'IPv6' ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A TCP forwarder on 127.0.0.1 to a real endpoint (the registry, a broker). Until `open()`, and
 * again after `close()`, nothing listens on its port, so connections are refused, as they are
 * while a server restarts: an outage made of real sockets, no mock.
 */
import { type AddressInfo, createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

export class Forwarder {
  readonly port: number;
  private readonly target: { host: string; port: number };
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  private constructor(port: number, target: { host: string; port: number }) {
    this.port = port;
    this.target = target;
  }

  /** A forwarder (not yet listening) on a port that was free a moment ago. */
  static async onFreePort(target: { host: string; port: number }): Promise<Forwarder> {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    return new Forwarder(port, target);
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async open(): Promise<void> {
    if (this.server) return;
    const server = createServer((client) => {
      const upstream = tcpConnect(this.target);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    this.server = server;
  }

  /** Stops listening and cuts every connection it carries. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

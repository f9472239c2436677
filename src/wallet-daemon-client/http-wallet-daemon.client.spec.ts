import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../config/app-config';
import { MetricsService } from '../metrics/metrics.service';
import { HttpWalletDaemonClient } from './http-wallet-daemon.client';
import { WalletDaemonRejected, WalletDaemonUnavailable, WalletDaemonUnreachable } from './wallet-daemon.client';

// Which failures prove a call never reached the daemon (a create may then go to another
// provider) and which leave it unknown. Real sockets on loopback, no daemon.

const request = {
  payment_id: '0193a5b0-7c1e-7d2a-9c4b-000000000001',
  amount: '0.001',
  currency: 'BTC',
  payer: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080',
  timeout_seconds: 600,
};

function clientAt(url: string): HttpWalletDaemonClient {
  const config = loadConfig({ WALLET_DAEMON_URL: url, WALLET_DAEMON_TOKEN: 't', WALLET_DAEMON_RETRIES: '1' });
  return new HttpWalletDaemonClient({ ...config, walletDaemonTimeoutMs: 300 }, new MetricsService());
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const close = (server: Server) => new Promise((done) => server.close(done));

describe('HttpWalletDaemonClient: unreachable or unknown', () => {
  it('every attempt refused (nothing listens): WalletDaemonUnreachable, still a WalletDaemonUnavailable', async () => {
    const server = createServer();
    const url = await listen(server);
    await close(server);
    const error = await clientAt(url)
      .createEscrow(request, 'k:create')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WalletDaemonUnreachable);
    expect(error).toBeInstanceOf(WalletDaemonUnavailable);
  });

  it.each([
    ['the connection dropped after the request arrived', (res: { destroy(): void }) => res.destroy()],
    ['a 503', (res: { writeHead(s: number): { end(): void } }) => res.writeHead(503).end()],
    ['no answer within the timeout', () => undefined],
  ])('%s: WalletDaemonUnavailable, not Unreachable (it may have applied)', async (_name, answer) => {
    const server = createServer((req, res) => {
      req.resume();
      answer(res);
    });
    const url = await listen(server);
    try {
      const error = await clientAt(url)
        .createEscrow(request, 'k:create')
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WalletDaemonUnavailable);
      expect(error).not.toBeInstanceOf(WalletDaemonUnreachable);
    } finally {
      server.closeAllConnections();
      await close(server);
    }
  });

  it('a 4xx is a definite refusal', async () => {
    const server = createServer((req, res) => {
      req.resume();
      res.writeHead(402, { 'content-type': 'application/json' }).end('{"code":"INSUFFICIENT_FUNDS","message":"no"}');
    });
    const url = await listen(server);
    try {
      const error = await clientAt(url)
        .createEscrow(request, 'k:create')
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WalletDaemonRejected);
      expect(error).toMatchObject({ status: 402, insufficientFunds: true });
    } finally {
      await close(server);
    }
  });
});

import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { KeyName, PRINCIPALS } from './support/app';
import { sharedDaemon } from './support/daemon';
import { createIsolatedDatabase } from './support/database';
import { waitFor } from './support/flow';
import { CoordinatorProcess, spawnCoordinator, stopAllCoordinators } from './support/processes';

/** Structured logs, as an operator sees them on stdout: request ids yes, secrets never. */
describe('logs', () => {
  let coordinator: CoordinatorProcess;
  const keys = Object.fromEntries(
    (Object.keys(PRINCIPALS) as KeyName[]).map((name) => [name, `${name}-secret-${randomBytes(8).toString('hex')}`]),
  ) as Record<KeyName, string>;

  beforeAll(async () => {
    const daemon = sharedDaemon();
    coordinator = await spawnCoordinator(
      {
        databaseUrl: await createIsolatedDatabase(),
        daemon,
        keys,
        clientWallet: await daemon.fundedAddress('1'),
        client2Wallet: await daemon.newAddress(),
      },
      { LOG_LEVEL: 'info', SWEEPS_ENABLED: 'false' },
    );
  });
  afterAll(async () => {
    await stopAllCoordinators();
  });

  it('never writes an API key, a bearer token or the wallet daemon token; one line per request, and the lines a request logs carry its id', async () => {
    const requestId = `req-${randomBytes(6).toString('hex')}`;
    const created = await fetch(`${coordinator.url}/v1/jobs`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-api-key': keys.client,
        authorization: 'Bearer should-not-appear-anywhere',
        'x-request-id': requestId,
      },
      body: JSON.stringify({ payload: { prompt: 'hi' }, payment_amount: '0.001' }),
    });
    expect(created.status).toBe(201);
    expect(
      (await fetch(`${coordinator.url}/v1/jobs`, { headers: { 'x-api-key': 'wrong-key-value-123' } })).status,
    ).toBe(401);
    // Logging is asynchronous: wait (bounded) until the line of the last request, the 401, is out.
    const logged401 = async () =>
      coordinator
        .outputTail()
        .split('\n')
        .some((line) => line.includes('"statusCode":401'));
    await waitFor('the 401 request to be logged', logged401, 30_000);

    const output = coordinator.outputTail();
    const lines = output.split('\n').filter((line) => line.startsWith('{'));
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(output).toContain('[redacted]');
    // The request's own line, and the lines logged while it ran (it ran alone: not coalesced), carry its id.
    const ofRequest = lines
      .map((line) => JSON.parse(line))
      .filter((l) => l.reqId === requestId || l.req?.id === requestId);
    expect(ofRequest.find((l) => l.msg === 'request completed')).toMatchObject({
      req: { method: 'POST', url: '/v1/jobs' },
      res: { statusCode: 201 },
    });
    expect(ofRequest.filter((l) => l.msg === 'payment status changed').map((l) => l.to)).toEqual(
      expect.arrayContaining(['pending', 'escrowed']),
    );
    for (const secret of [
      ...Object.values(keys),
      'should-not-appear-anywhere',
      'wrong-key-value-123',
      sharedDaemon().endpoint.token,
    ]) {
      expect(output).not.toContain(secret);
    }
  });

  it('logs a request whose client left before sending its body as `request aborted`, with its id and no key', async () => {
    const requestId = `req-${randomBytes(6).toString('hex')}`;
    const { hostname, port } = new URL(coordinator.url);
    const socket = connect(Number(port), hostname);
    try {
      // `Expect: 100-continue`: the server's "100 Continue" says the request reached the
      // app (its hooks are registered), so leaving after it is leaving mid-request.
      const continued = new Promise<void>((resolve, reject) => {
        socket.once('data', (chunk) =>
          chunk.toString().startsWith('HTTP/1.1 100') ? resolve() : reject(new Error(chunk.toString())),
        );
        socket.once('error', reject);
      });
      socket.write(
        [
          'POST /v1/jobs HTTP/1.1',
          `host: ${hostname}:${port}`,
          'content-type: application/json',
          'content-length: 1000',
          'expect: 100-continue',
          `x-api-key: ${keys.client}`,
          `x-request-id: ${requestId}`,
          '',
          '',
        ].join('\r\n'),
      );
      await continued;
      socket.write('{"payload": {"prompt": "half a bo');
    } finally {
      socket.destroy();
    }
    const aborted = () =>
      coordinator
        .outputTail()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line))
        .find((l) => l.msg === 'request aborted' && l.req?.id === requestId);
    await waitFor('the aborted request to be logged', async () => aborted() !== undefined, 30_000);
    expect(aborted()).toMatchObject({
      req: { method: 'POST', url: '/v1/jobs', headers: { 'x-api-key': '[redacted]' } },
    });
    expect(coordinator.outputTail()).not.toContain(keys.client);
  });
});

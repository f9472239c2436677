import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Pool } from 'pg';
import { uuidv7 } from 'uuidv7';
import { WalletDaemonConfig } from './config';
import { CurrencyRegistry } from './currencies';
import { invalidRequest, WalletDaemonError, WalletErrorBody } from './errors';
import { FaultInjector } from './faults';
import { HdWallet } from './hd-wallet';
import { readIdempotencyKey, StoredResponse } from './idempotency';
import { Db } from './ledger';
import {
  escrowIdOrNotFound,
  parseCreateEscrow,
  parseCurrencyQuery,
  parseFaucet,
  parseFaultSettings,
  parseNewAddress,
  parseRefund,
  parseRelease,
} from './requests';
import { ensureWalletSchema } from './schema';
import { WalletResponse, WalletService } from './wallet-service';

export interface WalletDaemon {
  app: FastifyInstance;
  /** Stops accepting requests, then closes the database pool. */
  close(): Promise<void>;
}

/** Routes that answer without a bearer token. */
const PUBLIC_ROUTES = new Set(['/health']);
/** Routes that fault injection never touches, so tests can always observe and reset. */
const FAULT_EXEMPT_ROUTES = new Set(['/health', '/api/v1/faults']);

/** Builds the daemon (schema ensured, routes registered) without listening. */
export async function buildWalletDaemon(config: WalletDaemonConfig): Promise<WalletDaemon> {
  const pool = new Pool({
    connectionString: config.databaseUrl,
    max: config.poolSize,
    application_name: 'wallet-daemon',
  });
  const app = Fastify({
    logger: {
      level: config.logLevel,
      base: { name: 'wallet-daemon', pid: process.pid },
      // Defence in depth: the default request serializer already omits headers.
      redact: ['req.headers.authorization'],
    },
    // The coordinator's request id when it sends one; otherwise unique across restarts.
    requestIdHeader: 'x-request-id',
    genReqId: () => uuidv7(),
  });
  // An idle client losing its connection must not crash the process.
  pool.on('error', (error) => app.log.error({ err: error }, 'idle database connection failed'));

  try {
    await ensureWalletSchema(pool);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }

  const currencies = new CurrencyRegistry(config.btcNetwork);
  const service = new WalletService(pool, new HdWallet(config.seed), currencies);
  const faults = new FaultInjector(config.faults);
  // Requests whose answer fault injection decided to lose after doing the work.
  const droppedAnswers = new WeakSet<FastifyRequest>();

  installAuth(app, config.token);
  installFaults(app, faults, droppedAnswers);
  installErrorHandling(app, droppedAnswers);

  const send = (request: FastifyRequest, reply: FastifyReply, response: WalletResponse): FastifyReply => {
    if (droppedAnswers.has(request)) return dropAnswer(reply);
    if (response.replayed) reply.header('Idempotent-Replayed', 'true');
    return reply.code(response.statusCode).send(response.body);
  };

  /** A money-moving POST: validated, then run once per Idempotency-Key in one transaction. */
  function idempotentPost<T>(url: string, parse: (body: unknown) => T, work: (db: Db, input: T) => Promise<StoredResponse>) {
    app.post(url, async (request, reply) => {
      const key = readIdempotencyKey(request.headers['idempotency-key']);
      const input = parse(request.body);
      const response = await service.runIdempotent(url, key, request.body, (db) => work(db, input));
      return send(request, reply, response);
    });
  }

  const ok = (request: FastifyRequest, reply: FastifyReply, body: unknown) =>
    send(request, reply, { statusCode: 200, body, replayed: false });

  app.get('/health', async (request, reply) => {
    try {
      await pool.query('SELECT 1');
      return reply.send({ status: 'ok', database: 'up' });
    } catch (error) {
      request.log.warn({ err: error }, 'health check: database unreachable');
      return reply.code(503).send({ status: 'unavailable', database: 'down' });
    }
  });

  idempotentPost('/api/v1/escrow/create', (body) => parseCreateEscrow(body, currencies), (db, input) =>
    service.createEscrow(db, input),
  );
  idempotentPost('/api/v1/escrow/release', parseRelease, (db, input) => service.settleEscrow(db, 'released', input));
  idempotentPost('/api/v1/refund', parseRefund, (db, input) => service.settleEscrow(db, 'refunded', input));
  idempotentPost('/api/v1/addresses', (body) => parseNewAddress(body, currencies), (db, currency) =>
    service.newAddress(db, currency),
  );
  idempotentPost('/api/v1/faucet', (body) => parseFaucet(body, currencies), (db, input) => service.faucet(db, input));

  app.get<{ Params: { escrow_id: string } }>('/api/v1/escrow/:escrow_id', async (request, reply) =>
    ok(request, reply, await service.getEscrow(escrowIdOrNotFound(request.params.escrow_id))),
  );

  app.get<{ Params: { address: string }; Querystring: { currency?: string } }>(
    '/api/v1/accounts/:address',
    async (request, reply) => {
      const { address } = request.params;
      // Without ?currency= the address's own format says which ledger it is in.
      const currency =
        request.query.currency === undefined
          ? currencies.forAddress(address)
          : parseCurrencyQuery(request.query, currencies);
      const canonical = currency && currencies.normalize(currency, address);
      if (!currency || !canonical) throw invalidRequest('address is not a valid address of the currency');
      return ok(request, reply, await service.balanceOf(currency, canonical));
    },
  );

  app.get('/api/v1/ledger/totals', async (request, reply) =>
    ok(request, reply, await service.totals(parseCurrencyQuery(request.query, currencies))),
  );

  app.get<{ Params: { escrow_id: string } }>('/api/v1/ledger/escrows/:escrow_id/transfers', async (request, reply) =>
    ok(request, reply, await service.escrowTransfers(escrowIdOrNotFound(request.params.escrow_id))),
  );

  app.get('/api/v1/faults', async (request, reply) => ok(request, reply, faults.current()));
  app.post('/api/v1/faults', async (request, reply) => {
    const settings = faults.update(parseFaultSettings(request.body ?? {}));
    const injecting = settings.fail_rate > 0 || settings.drop_rate > 0 || settings.latency_ms > 0;
    request.log[injecting ? 'warn' : 'info']({ faults: settings }, 'fault injection settings changed');
    return ok(request, reply, settings);
  });

  let closed: Promise<void> | undefined;
  const close = () => (closed ??= app.close().then(() => pool.end()));
  return { app, close };
}

/** Bearer-token check, constant time: both sides are hashed to equal-length digests first. */
function installAuth(app: FastifyInstance, token: string): void {
  const expected = sha256(token);
  app.addHook('onRequest', async (request, reply) => {
    if (PUBLIC_ROUTES.has(request.routeOptions.url ?? '')) return;
    const header = request.headers.authorization;
    const presented = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : '';
    if (!timingSafeEqual(sha256(presented), expected)) {
      const body: WalletErrorBody = { code: 'UNAUTHORIZED', message: 'missing or invalid bearer token' };
      return reply.code(401).send(body);
    }
  });
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Latency, injected 503s and dropped answers, decided once the request is authenticated and parsed. */
function installFaults(app: FastifyInstance, faults: FaultInjector, droppedAnswers: WeakSet<FastifyRequest>): void {
  app.addHook('preHandler', async (request) => {
    if (FAULT_EXEMPT_ROUTES.has(request.routeOptions.url ?? '')) return;
    const decision = await faults.decide();
    if (decision === 'fail') throw new WalletDaemonError('FAULT_INJECTED', 'injected failure: nothing was done');
    if (decision === 'drop') droppedAnswers.add(request);
  });
}

/** Closes the connection without answering, as if the network lost the response. */
function dropAnswer(reply: FastifyReply): FastifyReply {
  reply.log.warn('fault injection: dropping the answer after the work was done');
  reply.hijack();
  reply.raw.destroy();
  return reply;
}

function installErrorHandling(app: FastifyInstance, droppedAnswers: WeakSet<FastifyRequest>): void {
  app.setNotFoundHandler(async (request, reply) => {
    const body: WalletErrorBody = { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` };
    return reply.code(404).send(body);
  });

  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    if (droppedAnswers.has(request)) return dropAnswer(reply);
    const { status, body } = errorResponse(error);
    if (status >= 500 && !(error instanceof WalletDaemonError)) request.log.error({ err: error }, 'request failed');
    return reply.code(status).send(body);
  });
}

function errorResponse(error: FastifyError): { status: number; body: WalletErrorBody } {
  if (error instanceof WalletDaemonError) return { status: error.status, body: error.toBody() };
  // Fastify's own 4xx: malformed JSON, wrong content type, body too large.
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    return { status: error.statusCode, body: { code: 'INVALID_REQUEST', message: error.message } };
  }
  // numeric_value_out_of_range: a sum past NUMERIC(20,8), e.g. minting beyond the cap.
  if ((error as { code?: string }).code === '22003') {
    return { status: 400, body: { code: 'INVALID_REQUEST', message: 'amount out of range' } };
  }
  return { status: 500, body: { code: 'INTERNAL', message: 'internal error' } };
}

import { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Pool } from 'pg';
import { CurrencyRegistry } from './currencies';
import { invalidRequest } from './errors';
import { FaultInjector } from './faults';
import { readIdempotencyKey, StoredResponse } from './idempotency';
import { Db } from './ledger';
import { lookupAnswer } from './lookup';
import { DroppedAnswers, sendAnswer } from './replies';
import {
  CREATE_ROUTE,
  escrowIdOrNotFound,
  parseCreateBatch,
  parseCreateEscrow,
  parseCurrencyQuery,
  parseExtendEscrow,
  parseFaucet,
  parseFaultSettings,
  parseNewAddress,
  parseRefund,
  parseRelease,
  parseSettleBatch,
  SETTLEMENT_ROUTES,
} from './requests';
import { WalletResponse, WalletService } from './wallet-service';

export interface WalletRouteDeps {
  pool: Pool;
  service: WalletService;
  currencies: CurrencyRegistry;
  faults: FaultInjector;
  droppedAnswers: DroppedAnswers;
}

/** The HTTP contract: each route parses its input and calls one service method. */
export function registerWalletRoutes(app: FastifyInstance, deps: WalletRouteDeps): void {
  registerHealth(app, deps.pool);
  registerEscrowRoutes(app, deps);
  registerDevelopmentRoutes(app, deps);
  registerFaultRoutes(app, deps);
}

function registerHealth(app: FastifyInstance, pool: Pool): void {
  app.get('/health', async (request, reply) => {
    try {
      await pool.query('SELECT 1');
      return reply.send({ status: 'ok', database: 'up' });
    } catch (error) {
      request.log.warn({ err: error }, 'health check: database unreachable');
      return reply.code(503).send({ status: 'unavailable', database: 'down' });
    }
  });
}

function registerEscrowRoutes(app: FastifyInstance, deps: WalletRouteDeps): void {
  const { service, currencies } = deps;
  // A single create is a create-batch of one, and a single release or refund a settle-batch
  // of one (WalletService.create, .settle): one code path each for one escrow and many.
  setOfOnePost(
    app,
    deps,
    CREATE_ROUTE,
    (body) => parseCreateEscrow(body, currencies),
    (key, body) => service.create(key, body),
  );
  for (const [action, parse] of [
    ['release', parseRelease],
    ['refund', parseRefund],
  ] as const) {
    setOfOnePost(app, deps, SETTLEMENT_ROUTES[action], parse, (key, body) => service.settle(action, key, body));
  }
  // Each item carries its own Idempotency-Key (the single call's), so a batch needs none.
  app.post('/api/v1/escrow/settle-batch', async (request, reply) =>
    ok(deps, request, reply, { results: await service.settleBatch(parseSettleBatch(request.body)) }),
  );
  app.post('/api/v1/escrow/create-batch', async (request, reply) =>
    ok(deps, request, reply, { results: await service.createBatch(parseCreateBatch(request.body)) }),
  );
  // A read of many escrows (reconciliation): no Idempotency-Key, nothing changes.
  app.post('/api/v1/escrow/lookup', async (request, reply) =>
    ok(deps, request, reply, await lookupAnswer(deps.pool, request.body)),
  );
  // Moves a held escrow's expiry later; keyed `<payment_id>:extend:<expires_at>` by the coordinator.
  idempotentPost(app, deps, '/api/v1/escrow/extend', parseExtendEscrow, (db, input) => service.extendEscrow(db, input));
  app.get<{ Params: { escrow_id: string } }>('/api/v1/escrow/:escrow_id', async (request, reply) =>
    ok(deps, request, reply, await service.getEscrow(escrowIdOrNotFound(request.params.escrow_id))),
  );
}

/** Faucet, fresh addresses and ledger inspection: for development and tests. */
function registerDevelopmentRoutes(app: FastifyInstance, deps: WalletRouteDeps): void {
  const { service, currencies } = deps;
  idempotentPost(
    app,
    deps,
    '/api/v1/addresses',
    (body) => parseNewAddress(body, currencies),
    (db, currency) => service.newAddress(db, currency),
  );
  idempotentPost(
    app,
    deps,
    '/api/v1/faucet',
    (body) => parseFaucet(body, currencies),
    (db, input) => service.faucet(db, input),
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
      return ok(deps, request, reply, await service.balanceOf(currency, canonical));
    },
  );

  app.get('/api/v1/ledger/totals', async (request, reply) =>
    ok(deps, request, reply, await service.totals(parseCurrencyQuery(request.query, currencies))),
  );

  app.get<{ Params: { escrow_id: string } }>('/api/v1/ledger/escrows/:escrow_id/transfers', async (request, reply) =>
    ok(deps, request, reply, await service.escrowTransfers(escrowIdOrNotFound(request.params.escrow_id))),
  );
}

function registerFaultRoutes(app: FastifyInstance, deps: WalletRouteDeps): void {
  const { faults } = deps;
  app.get('/api/v1/faults', async (request, reply) => ok(deps, request, reply, faults.current()));
  app.post('/api/v1/faults', async (request, reply) => {
    const settings = faults.update(parseFaultSettings(request.body ?? {}));
    const injecting = settings.fail_rate > 0 || settings.drop_rate > 0 || settings.latency_ms > 0;
    request.log[injecting ? 'warn' : 'info']({ faults: settings }, 'fault injection settings changed');
    return ok(deps, request, reply, settings);
  });
}

/** A POST that changes state: validated, then run once per Idempotency-Key in one transaction. */
function idempotentPost<T>(
  app: FastifyInstance,
  deps: WalletRouteDeps,
  url: string,
  parse: (body: unknown) => T,
  work: (db: Db, input: T) => Promise<StoredResponse>,
): void {
  app.post(url, async (request, reply) => {
    const key = readIdempotencyKey(request.headers['idempotency-key']);
    const input = parse(request.body);
    // The URL is part of the fingerprint: one key used on release and on refund is a conflict.
    const response = await deps.service.runIdempotent(url, key, request.body, (db) => work(db, input));
    return sendAnswer(deps.droppedAnswers, request, reply, response);
  });
}

/** A single call carried out as a batch of one: its body checked first (a bad field is a 400 before any work). */
function setOfOnePost(
  app: FastifyInstance,
  deps: WalletRouteDeps,
  url: string,
  parse: (body: unknown) => unknown,
  run: (key: string | undefined, body: Record<string, unknown>) => Promise<WalletResponse>,
): void {
  app.post(url, async (request, reply) => {
    const key = readIdempotencyKey(request.headers['idempotency-key']);
    parse(request.body);
    const response = await run(key, request.body as Record<string, unknown>);
    return sendAnswer(deps.droppedAnswers, request, reply, response);
  });
}

function ok(deps: WalletRouteDeps, request: FastifyRequest, reply: FastifyReply, body: unknown): FastifyReply {
  return sendAnswer(deps.droppedAnswers, request, reply, { statusCode: 200, body, replayed: false });
}

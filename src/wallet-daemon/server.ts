import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { FastifyError, FastifyInstance } from 'fastify';
import { Pool } from 'pg';
import { uuidv7 } from 'uuidv7';
import { WalletDaemonConfig } from './config';
import { CurrencyRegistry } from './currencies';
import { describeJsonShapeProblem, JsonShapeLimits, jsonShapeProblem } from '../common/json-limits';
import { invalidRequest, WalletDaemonError, WalletErrorBody } from './errors';
import { FaultInjector } from './faults';
import { AddressLookahead } from './address-lookahead';
import { HdWallet } from './hd-wallet';
import { pruneIdempotencyKeys } from './idempotency';
import { nextAddressIndexes } from './ledger';
import { PreparedStatementClient } from './prepared-client';
import { dropAnswer, DroppedAnswers } from './replies';
import { registerWalletRoutes } from './routes';
import { ensureWalletSchema } from './schema';
import { WalletService } from './wallet-service';

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
    Client: PreparedStatementClient,
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
    const pruned = await pruneIdempotencyKeys(pool);
    if (pruned > 0) app.log.info({ pruned }, 'forgot expired idempotency keys');
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }

  const currencies = new CurrencyRegistry(config.btcNetwork);
  // Escrow addresses: indexes reserved and addresses derived between requests (see AddressLookahead).
  const addresses = new AddressLookahead(new HdWallet(config.seed), (currency, count) =>
    nextAddressIndexes(pool, currency, count).catch((error: unknown) => {
      app.log.warn({ err: error, currency }, 'reserving address indexes failed; creates take theirs meanwhile');
      throw error;
    }),
  );
  const service = new WalletService(pool, addresses, currencies);
  const faults = new FaultInjector(config.faults);
  const droppedAnswers: DroppedAnswers = new WeakSet();

  installJsonParser(app, config.bodyLimits);
  installAuth(app, config.token);
  installFaults(app, faults, droppedAnswers);
  installErrorHandling(app, droppedAnswers);

  registerWalletRoutes(app, { pool, service, currencies, faults, droppedAnswers });

  let closed: Promise<void> | undefined;
  const close = () => (closed ??= app.close().then(() => pool.end()));
  return { app, close };
}

/**
 * Depth and entry count of a JSON body checked on the raw text before it is parsed (a
 * linear scan), so nothing recursive afterwards (idempotency fingerprints) meets a body
 * deep enough to overflow the stack; then Fastify's own parser, which refuses
 * `__proto__` keys. Runs after the bearer-token check, like any body parser.
 */
function installJsonParser(app: FastifyInstance, limits: JsonShapeLimits): void {
  const { onProtoPoisoning, onConstructorPoisoning } = app.initialConfig;
  const parse = app.getDefaultJsonParser(onProtoPoisoning ?? 'error', onConstructorPoisoning ?? 'ignore');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, text: string, done) => {
    const problem = jsonShapeProblem(text, limits);
    if (!problem) return parse(request, text, done);
    done(invalidRequest(`request body ${describeJsonShapeProblem(problem)}`), undefined);
  });
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
function installFaults(app: FastifyInstance, faults: FaultInjector, droppedAnswers: DroppedAnswers): void {
  app.addHook('preHandler', async (request) => {
    if (FAULT_EXEMPT_ROUTES.has(request.routeOptions.url ?? '')) return;
    const decision = await faults.decide();
    if (decision === 'fail') throw new WalletDaemonError('FAULT_INJECTED', 'injected failure: nothing was done');
    if (decision === 'drop') droppedAnswers.add(request);
  });
}

function installErrorHandling(app: FastifyInstance, droppedAnswers: DroppedAnswers): void {
  app.setNotFoundHandler(async (request, reply) => {
    const body: WalletErrorBody = {
      code: 'NOT_FOUND',
      message: `no route ${request.method} ${request.url.split('?')[0]}`,
    };
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

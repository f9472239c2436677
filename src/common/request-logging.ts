import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyRequest } from 'fastify';
import { PinoLogger } from 'nestjs-pino';

/** Headers never written to a log line: shown as `[redacted]`. */
export const SECRET_HEADERS = ['x-api-key', 'authorization', 'cookie'];

/** Probes and scrapes: answered, but not written to the request log, which they would drown. */
const unlogged = (url: string) => url.startsWith('/health') || url === '/metrics';

/**
 * The request as log lines show it (pino's standard fields), its secret-bearing headers
 * replaced in a copy. A serializer, not pino's `redact` option, whose clone of every
 * logged object cost far more.
 */
export function requestForLog<R extends { headers: Record<string, unknown> }>(req: R): R {
  const headers = { ...req.headers };
  for (const name of SECRET_HEADERS) if (headers[name] !== undefined) headers[name] = '[redacted]';
  // `req` is pino's fresh copy of the request; the request's own headers stay untouched.
  req.headers = headers;
  return req;
}

/**
 * One log line per request (`request completed`, or `request aborted` when the client
 * left first), and every line logged while a request runs tagged with its `reqId`. Two
 * Fastify hooks, not nestjs-pino's Nest middleware: a Nest middleware runs through
 * `@fastify/middie`'s Express-style chain, and `pino-http` builds a child logger with the
 * whole serialized request on every request, logged or not. Together they were about a
 * fifth of the coordinator's CPU per `GET /v1/payments/{id}` (README "Performance").
 *
 * The context is nestjs-pino's own (`runInContext`), so Nest's `Logger` calls anywhere in
 * the request's async chain log through the request's child; the request line itself is
 * serialized only when it is written (not at `LOG_LEVEL=warn`).
 */
export async function installRequestLogging(app: NestFastifyApplication): Promise<void> {
  const context = await app.resolve(PinoLogger);
  const log = PinoLogger.root;
  const fastify = app.getHttpAdapter().getInstance();
  const line = (request: FastifyRequest, message: string, outcome?: { res: unknown; responseTime: number }) => {
    if (!log.isLevelEnabled('info') || unlogged(request.url)) return;
    log.info({ req: request, ...outcome }, message);
  };
  // Registered before every other hook, so all of a request's work runs inside the context.
  fastify.addHook('onRequest', (request, _reply, done) =>
    context.runInContext(done, { bindings: { reqId: request.id } }),
  );
  fastify.addHook('onResponse', (request, reply, done) => {
    line(request, 'request completed', {
      // The raw response: pino's serializer reads its status once the headers are sent.
      res: reply.raw,
      responseTime: Math.round(reply.elapsedTime),
    });
    done();
  });
  fastify.addHook('onRequestAbort', (request, done) => {
    line(request, 'request aborted');
    done();
  });
}

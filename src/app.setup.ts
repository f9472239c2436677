import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import { randomUUID } from 'node:crypto';
import type { OutgoingHttpHeader } from 'node:http';
import helmet from '@fastify/helmet';
import Fastify, { type RawServerDefault } from 'fastify';
import { AppModule } from './app.module';
import { GlobalErrorFilter } from './common/error.filter';
import { DomainError } from './common/errors';
import { describeJsonShapeProblem, JsonShapeLimits, jsonShapeProblem } from './common/json-limits';
import { installRequestLogging } from './common/request-logging';
import type { AppConfig } from './config/app-config';
import { APP_CONFIG } from './config/config.module';

const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Largest request body accepted (payloads are limited further by the Jobs rules). */
export const BODY_LIMIT_BYTES = 256 * 1024;

/**
 * Bodies are JSON objects only: any other declared content type is 415 before a parser
 * sees it, and a JSON body that is not an object (`null`, `[]`, `"x"`, `1`) is 400.
 */
function rejectNonJsonBodies(app: NestFastifyApplication): void {
  const errors = new GlobalErrorFilter();
  const fastify = app.getHttpAdapter().getInstance();
  // Callback hooks, not async ones: they run on every request, and an async hook costs a promise each time.
  fastify.addHook('onRequest', (request, reply, done) => {
    const type = request.headers['content-type'];
    if (type === undefined || /^application\/json\s*(;|$)/i.test(type)) return done();
    const error = new DomainError(
      'UNSUPPORTED_MEDIA_TYPE',
      `Content-Type ${String(type).slice(0, 100)} is not supported; send application/json`,
    );
    void reply.status(415).send(errors.toBody(error, String(request.id)));
  });
  fastify.addHook('preValidation', (request, reply, done) => {
    const body = request.body;
    if (body === undefined) return done();
    if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
      // Prototype-flavoured keys slip past class-transformer's whitelist; refuse them outright.
      const suspicious = Object.keys(body).filter((key) => RESERVED_KEYS.has(key));
      if (suspicious.length === 0) return done();
      const error = new DomainError('VALIDATION_FAILED', 'Request validation failed', {
        fields: Object.fromEntries(suspicious.map((k) => [k, ['property should not exist']])),
      });
      void reply.status(400).send(errors.toBody(error, String(request.id)));
      return;
    }
    const error = new DomainError('VALIDATION_FAILED', 'The request body must be a JSON object', {
      fields: { body: ['must be a JSON object'] },
    });
    void reply.status(400).send(errors.toBody(error, String(request.id)));
  });
}

type SecurityHeader = [name: string, value: OutgoingHttpHeader];

/** Helmet's options: security headers on every answer; the CSP allows Swagger UI's own assets. */
const HELMET_OPTIONS = {
  contentSecurityPolicy: {
    directives: {
      defaultSrc: ["'self'"],
      imgSrc: ["'self'", 'data:'],
      styleSrc: ["'self'", "'unsafe-inline'"],
      scriptSrc: ["'self'"],
      upgradeInsecureRequests: null,
    },
  },
};

/**
 * The headers @fastify/helmet sets with HELMET_OPTIONS, read once from a throwaway
 * Fastify instance: registered on the app, the plugin rebuilds helmet (re-parsing the
 * CSP directives) on every request — about 9 % of the CPU of a `GET /v1/payments/{id}` —
 * for headers that never change.
 */
async function securityHeaders(): Promise<SecurityHeader[]> {
  const probe = Fastify();
  await probe.register(helmet as never, HELMET_OPTIONS);
  let headers: SecurityHeader[] = [];
  // Inside the handler the raw response holds exactly what helmet's onRequest hook set.
  probe.get('/', (_request, reply) => {
    headers = Object.entries(reply.raw.getHeaders()).filter((entry): entry is SecurityHeader => entry[1] !== undefined);
    return '';
  });
  await probe.inject('/');
  await probe.close();
  if (headers.length === 0) throw new Error('helmet set no headers on the probe request');
  return headers;
}

/** Sets the precomputed security headers first thing on every request, where helmet's own hook did. */
function setSecurityHeaders(app: NestFastifyApplication, headers: SecurityHeader[]): void {
  app
    .getHttpAdapter()
    .getInstance()
    .addHook('onRequest', (_request, reply, done) => {
      for (const [name, value] of headers) reply.raw.setHeader(name, value);
      done();
    });
}

/**
 * The JSON parser of every route: the raw text's nesting depth and entry count are
 * checked before it is parsed (a linear scan, see `jsonShapeProblem`), so no later
 * recursive walk — class-transformer, the payload rules, idempotency hashing — ever
 * sees a body deep enough to overflow the stack. Then Fastify's own parser, which
 * refuses `__proto__` and `constructor.prototype` keys at any depth (the poisoning
 * options of the adapter).
 */
function installJsonParser(app: NestFastifyApplication, limits: JsonShapeLimits): void {
  const fastify = app.getHttpAdapter().getInstance();
  const { onProtoPoisoning, onConstructorPoisoning } = fastify.initialConfig;
  const parse = fastify.getDefaultJsonParser(onProtoPoisoning ?? 'error', onConstructorPoisoning ?? 'error');
  app.useBodyParser<RawServerDefault>(
    'application/json',
    { bodyLimit: BODY_LIMIT_BYTES },
    (request, raw: Buffer, done) => {
      const text = raw.toString('utf8');
      const problem = jsonShapeProblem(text, limits);
      if (!problem) return parse(request, text, done);
      const message = {
        depth: 'The request body is nested too deeply',
        entries: 'The request body has too many entries',
        unstorable: 'The request body contains text PostgreSQL cannot store',
      }[problem.limit];
      done(
        new DomainError('VALIDATION_FAILED', message, { fields: { body: [describeJsonShapeProblem(problem)] } }),
        undefined,
      );
    },
  );
}

/**
 * Builds the whole application from AppModule — the same for `main.ts` and the e2e
 * tests. Every global (guard, pipe, filter) is an APP_* provider inside AppModule, so
 * nothing is configured here that a test could forget. Does not listen.
 */
export async function createApp(): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT_BYTES,
    // `__proto__` and `constructor` keys in JSON are an error, not silently stripped.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    genReqId: (req: { headers: Record<string, unknown> }) =>
      (req.headers['x-request-id'] as string | undefined)?.slice(0, 100) ?? randomUUID(),
    requestIdHeader: false,
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule, adapter, { bufferLogs: true });
  app.useLogger(app.get(Logger));
  await installRequestLogging(app);
  const config = app.get<AppConfig>(APP_CONFIG);
  setSecurityHeaders(app, await securityHeaders());
  rejectNonJsonBodies(app);
  installJsonParser(app, { maxDepth: config.bodyMaxDepth, maxEntries: config.bodyMaxEntries });
  // CORS is off unless origins are configured: browsers get no cross-origin access by default.
  if (config.corsOrigins.length)
    app.enableCors({ origin: config.corsOrigins, allowedHeaders: ['content-type', 'x-api-key', 'idempotency-key'] });
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Coordinator payments API')
      .setDescription(
        'Jobs paid through escrow: clients pay, miners work, the escrow is released or refunded exactly once.',
      )
      .setVersion('1')
      .addApiKey({ type: 'apiKey', in: 'header', name: 'X-Api-Key' }, 'api-key')
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
  return app;
}

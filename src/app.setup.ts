import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import { randomUUID } from 'node:crypto';
import { AppModule } from './app.module';

/** Largest request body accepted (payloads are limited further by the Jobs rules). */
export const BODY_LIMIT_BYTES = 256 * 1024;

/**
 * Builds the whole application from AppModule — the same for `main.ts` and the e2e
 * tests. Every global (guard, pipe, filter) is an APP_* provider inside AppModule, so
 * nothing is configured here that a test could forget. Does not listen.
 */
export async function createApp(): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT_BYTES,
    genReqId: (req: { headers: Record<string, unknown> }) => (req.headers['x-request-id'] as string | undefined)?.slice(0, 100) ?? randomUUID(),
    requestIdHeader: false,
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule, adapter, { bufferLogs: true });
  app.useLogger(app.get(Logger));
  app.enableShutdownHooks();
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Coordinator payments API')
      .setDescription('Jobs paid through escrow: clients pay, miners work, the escrow is released or refunded exactly once.')
      .setVersion('1')
      .addApiKey({ type: 'apiKey', in: 'header', name: 'X-Api-Key' }, 'api-key')
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
  return app;
}

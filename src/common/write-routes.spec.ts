import { RequestMethod } from '@nestjs/common';
import { INTERCEPTORS_METADATA, METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AppModule } from '../app.module';
import { WRITE_ROUTE_INTERCEPTORS } from './write-routes';

const SRC = join(__dirname, '..');
const WRITES = new Set([RequestMethod.POST, RequestMethod.DELETE, RequestMethod.PUT, RequestMethod.PATCH]);

/** Every route handler of the coordinator's controllers (the wallet daemon is a Fastify app of its own). */
function routes(): { route: string; method: RequestMethod; interceptors: unknown[] }[] {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter(
    (file) => file.endsWith('.controller.ts') && !file.startsWith('wallet-daemon'),
  );
  const found: { route: string; method: RequestMethod; interceptors: unknown[] }[] = [];
  for (const file of files) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loads every controller by file name
    const exported = require(join(SRC, file)) as Record<string, unknown>;
    for (const value of Object.values(exported)) {
      if (typeof value !== 'function' || Reflect.getMetadata(PATH_METADATA, value) === undefined) continue;
      const prototype = (value as { prototype: Record<string, unknown> }).prototype;
      for (const name of Object.getOwnPropertyNames(prototype)) {
        const handler = prototype[name];
        if (typeof handler !== 'function' || Reflect.getMetadata(PATH_METADATA, handler) === undefined) continue;
        found.push({
          route: `${file} ${value.name}.${name}`,
          method: Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod,
          interceptors: (Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? [],
        });
      }
    }
  }
  return found;
}

describe('write routes', () => {
  const all = routes();

  it('finds the controllers (a scan that found nothing would prove nothing)', () => {
    expect(all.filter((r) => WRITES.has(r.method)).length).toBeGreaterThanOrEqual(18);
    expect(all.filter((r) => r.method === RequestMethod.GET).length).toBeGreaterThanOrEqual(15);
  });

  it('every POST and DELETE counts in flight and honours Idempotency-Key, in that order', () => {
    const missing = all
      .filter((r) => WRITES.has(r.method))
      .filter((r) => r.interceptors.join() !== WRITE_ROUTE_INTERCEPTORS.join())
      .map((r) => r.route);
    expect(missing).toEqual([]);
  });

  it('reads run without interceptors, and the application registers none globally', () => {
    const intercepted = all.filter((r) => !WRITES.has(r.method) && r.interceptors.length > 0).map((r) => r.route);
    expect(intercepted).toEqual([]);
    const providers = (Reflect.getMetadata('providers', AppModule) as { provide?: unknown }[]) ?? [];
    expect(providers.filter((p) => p.provide === APP_INTERCEPTOR)).toEqual([]);
  });
});

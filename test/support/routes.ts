import { RequestMethod, type INestApplication } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import { ROLES_KEY } from '../../src/auth/auth.guard';
import type { Role } from '../../src/auth/api-keys';

/** One route the app registers, read from its controllers (documented or not). */
export interface RegisteredRoute {
  method: string;
  /** OpenAPI form: `{job_id}`, `{payment_id}`. */
  path: string;
  /** The roles of its `@Roles`; empty for a public route (or one that forgot them: nobody may call it). */
  roles: Role[];
}

/** Every route of every controller of the app, from the same metadata Nest routes by. */
export function registeredRoutes(app: INestApplication): RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  for (const module of app.get(ModulesContainer).values()) {
    for (const wrapper of module.controllers.values()) {
      const controller = wrapper.metatype as (new (...args: never[]) => unknown) | undefined;
      if (!controller?.prototype) continue;
      const base = String(Reflect.getMetadata(PATH_METADATA, controller) ?? '');
      for (const name of Object.getOwnPropertyNames(controller.prototype)) {
        const handler = controller.prototype[name];
        if (typeof handler !== 'function' || name === 'constructor') continue;
        const sub = Reflect.getMetadata(PATH_METADATA, handler);
        const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
        if (sub === undefined || method === undefined) continue;
        const path = `/${[base, String(sub)]
          .map((p) => p.replace(/^\/+|\/+$/g, ''))
          .filter(Boolean)
          .join('/')}`.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
        const roles = (Reflect.getMetadata(ROLES_KEY, handler) ??
          Reflect.getMetadata(ROLES_KEY, controller) ??
          []) as Role[];
        routes.push({ method: RequestMethod[method], path, roles });
      }
    }
  }
  return routes;
}

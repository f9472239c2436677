import { CanActivate, ExecutionContext, Injectable, SetMetadata, createParamDecorator } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { DomainError } from '../common/errors';
import { ApiKeyRegistry, Principal, Role } from './api-keys';

export const ROLES_KEY = 'roles';
const PUBLIC_KEY = 'public';

/** The roles allowed on a route; every route not marked `@Public()` needs one of them. */
export const Roles = (...roles: Role[]) => SetMetadata(ROLES_KEY, roles);
/** Health, metrics, docs and the receipt keys need no key. */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

type AuthedRequest = FastifyRequest & { principal?: Principal; keyPrincipal?: Principal | null };

/**
 * The principal of the request's X-Api-Key, or undefined. Looked up once per request:
 * the rate limiter and the key guard both need it, and each lookup hashes the key.
 */
export function keyPrincipal(registry: ApiKeyRegistry, request: FastifyRequest): Principal | undefined {
  const authed = request as AuthedRequest;
  if (authed.keyPrincipal === undefined) {
    const header = request.headers['x-api-key'];
    authed.keyPrincipal = registry.authenticate(typeof header === 'string' ? header : undefined) ?? null;
  }
  return authed.keyPrincipal ?? undefined;
}

/** The authenticated caller, as set by `ApiKeyGuard`. */
export const CurrentPrincipal = createParamDecorator((_: unknown, ctx: ExecutionContext): Principal => {
  return ctx.switchToHttp().getRequest<AuthedRequest>().principal as Principal;
});

/** Missing or unknown key → 401; a known key with the wrong role → 403. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly registry: ApiKeyRegistry,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) return true;
    const request = context.switchToHttp().getRequest<AuthedRequest>();
    const principal = keyPrincipal(this.registry, request);
    if (!principal) throw new DomainError('UNAUTHORIZED', 'Missing or unknown X-Api-Key');
    const roles = this.reflector.getAllAndOverride<Role[]>(ROLES_KEY, targets) ?? [];
    // Fail closed: a route that forgot @Roles is reachable by nobody.
    if (!roles.includes(principal.role))
      throw new DomainError('FORBIDDEN', `Role ${principal.role} may not call this route`);
    request.principal = principal;
    return true;
  }
}

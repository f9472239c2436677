import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Observable, from, of, throwError } from 'rxjs';
import { catchError, mergeMap } from 'rxjs/operators';
import type { Principal } from '../auth/api-keys';
import { DomainError } from '../common/errors';
import { IdempotencyService, Scope } from './idempotency.service';

const MAX_KEY_LENGTH = 255;

/**
 * `Idempotency-Key` on POST routes: the first successful answer (status and body) is
 * stored and replayed with `Idempotent-Replayed: true`; the same key with another body
 * is 422; a retry while the first still runs is 409.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(private readonly idempotency: IdempotencyService) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const request = context.switchToHttp().getRequest<FastifyRequest & { principal?: Principal }>();
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const key = request.headers['idempotency-key'];
    if (request.method !== 'POST' || key === undefined || !request.principal) return next.handle();
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      return throwError(() => new DomainError('VALIDATION_FAILED', `Idempotency-Key must be 1..${MAX_KEY_LENGTH} characters`, { fields: { 'Idempotency-Key': ['1..255 characters'] } }));
    }
    const scope: Scope = { principalId: request.principal.id, method: request.method, path: request.url.split('?')[0], key };
    const hash = this.idempotency.fingerprint(request.body);

    return from(this.idempotency.claim(scope, hash)).pipe(
      mergeMap((claim) => {
        switch (claim.kind) {
          case 'reused':
            throw new DomainError('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used with a different request body');
          case 'in_progress':
            throw new DomainError('IDEMPOTENCY_IN_PROGRESS', 'A request with this Idempotency-Key is still being processed');
          case 'replay':
            reply.header('idempotent-replayed', 'true');
            reply.status(claim.status);
            return of(claim.status === 204 ? undefined : claim.body);
          case 'claimed':
            return next.handle().pipe(
              mergeMap(async (body) => {
                await this.idempotency.complete(scope, reply.statusCode, body);
                return body;
              }),
              catchError((error) => from(this.forget(scope)).pipe(mergeMap(() => throwError(() => error)))),
            );
        }
      }),
    );
  }

  /**
   * Only a success (2xx) is the stored first answer. A refused request (4xx) or one
   * without a definite answer (5xx) stores nothing and may be retried with the same key:
   * it is evaluated again, which is safe because every state change is a
   * compare-and-set. So malformed or refused input never leaves a row behind.
   */
  private async forget(scope: Scope): Promise<void> {
    await this.idempotency.release(scope);
  }
}

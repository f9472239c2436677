import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Observable, from, of, throwError } from 'rxjs';
import { catchError, mergeMap } from 'rxjs/operators';
import type { Principal } from '../auth/api-keys';
import { GlobalErrorFilter } from '../common/error.filter';
import { DomainError } from '../common/errors';
import { IdempotencyService, Scope } from './idempotency.service';
import { HeldClaim, runWithClaim } from './recovery-points';

const MAX_KEY_LENGTH = 255;
/** Refusals that come from running the request, and so belong to its first answer. */
const REPLAYED_ERROR_STATUSES = new Set([402, 404, 409]);

/**
 * `Idempotency-Key` on POST routes: the first answer (status and body) is stored and
 * replayed with `Idempotent-Replayed: true`; the same key with another body is 422; a
 * retry while the first still runs is 409 — until its lease passes, when a retry takes
 * the claim over and carries on from what the first attempt committed.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  private readonly errors = new GlobalErrorFilter();

  constructor(private readonly idempotency: IdempotencyService) {}

  intercept(context: ExecutionContext, next: CallHandler<unknown>): Observable<unknown> {
    const request = context.switchToHttp().getRequest<FastifyRequest & { principal?: Principal }>();
    const reply = context.switchToHttp().getResponse<FastifyReply>();
    const key = request.headers['idempotency-key'];
    if (request.method !== 'POST' || key === undefined || !request.principal) return next.handle();
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      return throwError(
        () =>
          new DomainError('VALIDATION_FAILED', `Idempotency-Key must be 1..${MAX_KEY_LENGTH} characters`, {
            fields: { 'Idempotency-Key': ['1..255 characters'] },
          }),
      );
    }
    const scope: Scope = {
      principalId: request.principal.id,
      method: request.method,
      path: request.url.split('?')[0],
      key,
    };
    const hash = this.idempotency.fingerprint(request.body);

    return from(this.idempotency.claim(scope, hash)).pipe(
      mergeMap((claim) => {
        switch (claim.kind) {
          case 'reused':
            throw new DomainError(
              'IDEMPOTENCY_KEY_REUSED',
              'This Idempotency-Key was used with a different request body',
            );
          case 'in_progress':
            throw new DomainError(
              'IDEMPOTENCY_IN_PROGRESS',
              'A request with this Idempotency-Key is still being processed',
            );
          case 'replay':
            reply.header('idempotent-replayed', 'true');
            reply.status(claim.status);
            return of(claim.status === 204 ? undefined : claim.body);
          case 'claimed': {
            const held = { scope, token: claim.token, resumeFrom: claim.resumeFrom };
            // The handler runs with its claim in reach (RecoveryPoints): Nest binds the async
            // context when `handle()` is called, so it must be called inside runWithClaim.
            return runWithClaim(held, () => next.handle()).pipe(
              mergeMap(async (body) => {
                await this.idempotency.complete(scope, held.token, reply.statusCode, body);
                return body;
              }),
              catchError((error: unknown) =>
                from(this.remember(held, error, String(request.id))).pipe(mergeMap(() => throwError(() => error))),
              ),
            );
          }
        }
      }),
    );
  }

  /**
   * A business refusal (402, 404, 409) is part of the first answer and is replayed, so a
   * retry can never turn a refusal into a payment later. A request rejected before it
   * ran (400 validation, 401/403, 413, 415, 429) or one without a definite answer (5xx)
   * stores nothing, so a corrected retry may reuse the key.
   */
  private async remember(held: HeldClaim, error: unknown, requestId: string): Promise<void> {
    const body = this.errors.toBody(error, requestId);
    if (REPLAYED_ERROR_STATUSES.has(body.status_code))
      await this.idempotency.complete(held.scope, held.token, body.status_code, body);
    else await this.idempotency.release(held.scope, held.token);
  }
}

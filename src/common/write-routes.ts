import { applyDecorators, Delete, Global, Module, Post, UseInterceptors } from '@nestjs/common';
import { IdempotencyInterceptor } from '../idempotency/idempotency.interceptor';
import { CountInFlight, InFlightRequests } from './in-flight-requests';

/**
 * The two things every route that changes state gets, and no read pays for: its handler
 * counted while it runs, so a graceful stop waits for it (`InFlightRequests`), and
 * `Idempotency-Key` honoured (`IdempotencyInterceptor`, POST only). Declared per route
 * rather than as global interceptors because a route with any interceptor runs through
 * Nest's RxJS pipeline: as globals they were about a quarter of the coordinator's CPU per
 * `GET /v1/payments/{id}` (README "Performance"). ESLint refuses `Post`, `Delete`, `Put`
 * and `Patch` from `@nestjs/common` in the coordinator's controllers, so no write route
 * can be declared without these; `write-routes.spec.ts` checks every route.
 */
export const WRITE_ROUTE_INTERCEPTORS = [CountInFlight, IdempotencyInterceptor] as const;

/** A POST route: counted in flight, `Idempotency-Key` honoured. */
export const PostRoute = (path?: string) => applyDecorators(Post(path), UseInterceptors(...WRITE_ROUTE_INTERCEPTORS));

/** A DELETE route: counted in flight. */
export const DeleteRoute = (path?: string) =>
  applyDecorators(Delete(path), UseInterceptors(...WRITE_ROUTE_INTERCEPTORS));

/** The one `InFlightRequests` of the application, reachable from every module's write routes. */
@Global()
@Module({ providers: [InFlightRequests], exports: [InFlightRequests] })
export class WriteRoutesModule {}

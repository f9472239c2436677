import { Logger } from '@nestjs/common';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { ErrorBody, GlobalErrorFilter } from './error.filter';
import { DomainError, validationError } from './errors';
import { flattenValidationErrors } from './validation';

/*
 * Batch routes (docs/money-and-states.md, "Batches"): the envelope is validated as a whole (a bad
 * one is a 400 with nothing done), each item on its own, exactly as its single call's
 * body would be, so a bad item gets the single call's 400 and never fails its neighbours.
 */

/** Validates one item like the global ValidationPipe validates a single call's body. */
export function validateItem<T extends object>(type: new () => T, raw: unknown): T | DomainError {
  const instance = plainToInstance(type, raw);
  const errors = validateSync(instance, { whitelist: true, forbidNonWhitelisted: true });
  return errors.length
    ? validationError('Request validation failed', { fields: flattenValidationErrors(errors) })
    : instance;
}

/** A repeated value of `field` across the items makes the whole envelope invalid. */
export function assertDistinct(items: Record<string, unknown>[], field: string): void {
  const seen = new Set<unknown>();
  for (const item of items) {
    const value = item[field];
    if (value === undefined) continue;
    if (seen.has(value))
      throw validationError(`each ${field} may appear at most once in a batch`, {
        fields: { items: [`${field} ${typeof value === 'string' ? value : JSON.stringify(value)} is repeated`] },
      });
    seen.add(value);
  }
}

const errors = new GlobalErrorFilter();
const logger = new Logger('Batch');

/** An item's error in the one error shape, as its single call would have answered it (and logged, when it is ours). */
export function itemError(error: unknown, requestId: string): ErrorBody {
  const body = errors.toBody(error, requestId);
  if (body.status_code >= 500) logger.error({ err: error, request_id: requestId }, 'batch item failed');
  return body;
}

/**
 * Each item's outcome in its place: an item refused by its own validation keeps that
 * error, the others take the outcomes of the valid items, in order.
 */
export function inPlace<T, O>(checked: (T | DomainError)[], outcomes: O[]): (O | { error: DomainError })[] {
  let next = 0;
  return checked.map((item) => (item instanceof DomainError ? { error: item } : outcomes[next++]));
}

/** The batch answer: items in request order and the counts. */
export function batchAnswer<T extends { status_code: number }>(
  items: T[],
): { items: T[]; succeeded: number; failed: number } {
  const succeeded = items.filter((item) => item.status_code < 300).length;
  return { items, succeeded, failed: items.length - succeeded };
}

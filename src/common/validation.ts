import { ValidationError, ValidationPipe } from '@nestjs/common';
import { validationError } from './errors';

/** Flattens class-validator errors into `{ "field.path": ["message", ...] }`. */
export function flattenValidationErrors(errors: ValidationError[], prefix = ''): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const error of errors) {
    const path = prefix ? `${prefix}.${error.property}` : error.property;
    if (error.constraints) out[path] = Object.values(error.constraints);
    if (error.children?.length) Object.assign(out, flattenValidationErrors(error.children, path));
  }
  return out;
}

/** Strict validation: unknown fields are rejected, bodies are turned into DTO instances. */
export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    exceptionFactory: (errors) =>
      validationError('Request validation failed', { fields: flattenValidationErrors(errors) }),
  });
}

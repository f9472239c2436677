import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DomainError, ERROR_STATUS } from './errors';

export interface ErrorBody {
  status_code: number;
  code: string;
  message: string;
  details: Record<string, unknown>;
  request_id: string;
}

/** Codes for errors Nest or Fastify raise before our code runs. */
const HTTP_STATUS_CODES: Record<number, string> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'ROUTE_NOT_FOUND',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
};

/** Renders every error in the one shape of docs/errors.md; unknown errors never leak a stack or SQL. */
@Catch()
export class GlobalErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    const body = this.toBody(exception, String(request.id));
    if (body.status_code >= 500) {
      this.logger.error({ err: exception, request_id: body.request_id }, 'unhandled error');
    }
    void reply.status(body.status_code).send(body);
  }

  toBody(exception: unknown, requestId: string): ErrorBody {
    if (exception instanceof DomainError) {
      return body(exception.status, exception.code, exception.message, exception.details, requestId);
    }
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const code = HTTP_STATUS_CODES[status] ?? (status >= 500 ? 'INTERNAL_ERROR' : 'HTTP_ERROR');
      const message = status >= 500 ? 'Internal server error' : exception.message;
      return body(status, code, message, undefined, requestId);
    }
    // Fastify's own errors (bad JSON, body too large, wrong content type) carry a statusCode.
    const fastifyStatus = (exception as { statusCode?: number })?.statusCode;
    if (typeof fastifyStatus === 'number' && fastifyStatus >= 400 && fastifyStatus < 500) {
      const code = HTTP_STATUS_CODES[fastifyStatus] ?? 'HTTP_ERROR';
      return body(fastifyStatus, code, (exception as Error).message, undefined, requestId);
    }
    return body(ERROR_STATUS.INTERNAL_ERROR, 'INTERNAL_ERROR', 'Internal server error', undefined, requestId);
  }
}

function body(
  status: number,
  code: string,
  message: string,
  details: Record<string, unknown> | undefined,
  requestId: string,
): ErrorBody {
  return { status_code: status, code, message, details: details ?? {}, request_id: requestId };
}

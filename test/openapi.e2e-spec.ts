import { randomUUID } from 'node:crypto';
import type { Response } from 'supertest';
import { ERROR_STATUS } from '../src/common/errors';
import type { KeyName } from './support/app';
import { Body, expectError, expectStatus, PAYLOAD, useTestApp } from './support/jobs';
import { registeredRoutes } from './support/routes';

// Issue #12: every operation of the OpenAPI document lists its error answers (the one
// error schema, the codes it can return) and every request body has an example; a few
// real error answers are checked against what the document lists for their route.

interface MediaType {
  schema?: { $ref?: string };
  example?: unknown;
  examples?: Record<string, { summary?: string; value: Body }>;
}
interface Operation {
  requestBody?: { content: Record<string, MediaType> };
  responses: Record<string, { description: string; content?: Record<string, MediaType> }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { properties?: Record<string, { example?: unknown }>; required?: string[] }> };
}

const ERROR_SCHEMA = '#/components/schemas/ErrorView';
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
/** The probes need no key, no body and are never rate limited: their one error answer is a 503. */
const PROBES = ['GET /health/live', 'GET /health/ready'];

describe('OpenAPI document: error answers and examples', () => {
  const app = useTestApp();
  let doc: Document;
  let operations: { key: string; method: string; path: string; op: Operation }[];

  beforeAll(async () => {
    doc = expectStatus(await app().http.get('/docs-json'), 200, 'GET /docs-json') as Document;
    operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([method]) => METHODS.includes(method))
        .map(([method, op]) => ({ key: `${method.toUpperCase()} ${path}`, method, path, op })),
    );
  });

  /** The codes an operation lists for `status` (the example names of that answer). */
  function documentedCodes(method: string, path: string, status: number): string[] {
    const answer = doc.paths[path]?.[method.toLowerCase()]?.responses[String(status)];
    return Object.keys(answer?.content?.['application/json']?.examples ?? {});
  }

  function errorAnswers(op: Operation): [number, MediaType, string][] {
    return Object.entries(op.responses)
      .filter(([status]) => Number(status) >= 400)
      .map(([status, answer]) => [Number(status), answer.content?.['application/json'] ?? {}, answer.description]);
  }

  it('every operation has at least one 4xx answer with the error schema (the probes: a 503)', () => {
    expect(operations.length).toBeGreaterThan(15);
    const without = (limit: number) =>
      operations
        .filter(({ op }) =>
          errorAnswers(op).every(([status, media]) => status >= limit || media.schema?.$ref !== ERROR_SCHEMA),
        )
        .map(({ key }) => key);
    expect(without(500)).toEqual(PROBES);
    expect(without(600)).toEqual([]);
  });

  it('every error answer uses the error schema and lists codes the exception filter knows, each with its own status', () => {
    const known = new Set(Object.keys(ERROR_STATUS));
    const problems: string[] = [];
    for (const { key, op } of operations) {
      for (const [status, media, description] of errorAnswers(op)) {
        const where = `${key} ${status}`;
        if (media.schema?.$ref !== ERROR_SCHEMA) problems.push(`${where}: schema ${JSON.stringify(media.schema)}`);
        const examples = Object.entries(media.examples ?? {});
        if (examples.length === 0) problems.push(`${where}: no codes listed`);
        for (const [code, example] of examples) {
          if (!known.has(code)) problems.push(`${where}: ${code} is not a code of ERROR_STATUS`);
          // The filter renders a 5xx HttpException without a code of its own (Terminus's 503) as INTERNAL_ERROR.
          const expected =
            code === 'INTERNAL_ERROR' && status >= 500 ? status : ERROR_STATUS[code as keyof typeof ERROR_STATUS];
          if (status !== expected) problems.push(`${where}: ${code} is answered with ${expected}`);
          if (example.value?.code !== code || example.value?.status_code !== status)
            problems.push(`${where}: example ${code} is ${JSON.stringify(example.value)}`);
          if (!description.includes(code)) problems.push(`${where}: description does not name ${code}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('the error schema is the shape the filter renders', () => {
    const schema = doc.components.schemas.ErrorView;
    expect(Object.keys(schema.properties ?? {}).sort()).toEqual(
      ['code', 'details', 'message', 'request_id', 'status_code'].sort(),
    );
    expect([...(schema.required ?? [])].sort()).toEqual(Object.keys(schema.properties ?? {}).sort());
  });

  it('routes list what the guards, the body parser and the idempotency rules answer', () => {
    const problems: string[] = [];
    const has = (method: string, path: string, code: keyof typeof ERROR_STATUS) =>
      documentedCodes(method, path, ERROR_STATUS[code]).includes(code);
    for (const route of registeredRoutes(app().app)) {
      const key = `${route.method} ${route.path}`;
      if (!doc.paths[route.path]?.[route.method.toLowerCase()]) continue; // /metrics is not documented
      const keyed = route.roles.length > 0;
      for (const code of ['UNAUTHORIZED', 'FORBIDDEN'] as const) {
        if (has(route.method, route.path, code) !== keyed)
          problems.push(`${key}: ${keyed ? 'needs a key but does not list' : 'is public but lists'} ${code}`);
      }
      // The rate limit skips only the probes (and /metrics).
      if (!route.path.startsWith('/health') && !has(route.method, route.path, 'RATE_LIMITED'))
        problems.push(`${key}: does not list RATE_LIMITED`);
      if (route.method === 'POST') {
        for (const code of [
          'VALIDATION_FAILED',
          'PAYLOAD_TOO_LARGE',
          'UNSUPPORTED_MEDIA_TYPE',
          'IDEMPOTENCY_IN_PROGRESS',
          'IDEMPOTENCY_KEY_REUSED',
        ] as const)
          if (!has(route.method, route.path, code)) problems.push(`${key}: does not list ${code}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('every request body has an example', () => {
    const problems: string[] = [];
    for (const { key, op } of operations) {
      if (!op.requestBody) continue;
      const media = op.requestBody.content['application/json'];
      if (!media) {
        problems.push(`${key}: no application/json body`);
        continue;
      }
      if (media.example !== undefined || Object.keys(media.examples ?? {}).length > 0) continue;
      // Otherwise every property of the body's schema carries one, so Swagger UI fills a whole body in.
      const name = media.schema?.$ref?.replace('#/components/schemas/', '');
      const properties = Object.entries((name && doc.components.schemas[name]?.properties) || {});
      if (properties.length === 0) problems.push(`${key}: body schema ${name} has no properties`);
      for (const [field, property] of properties)
        if (property.example === undefined) problems.push(`${key}: ${name}.${field} has no example`);
    }
    expect(operations.filter(({ op }) => op.requestBody).length).toBeGreaterThan(5);
    expect(problems).toEqual([]);
  });

  it('the POST /v1/jobs and POST /v1/payments examples work as written for a client with a wallet', async () => {
    const jobExamples = doc.paths['/v1/jobs'].post.requestBody?.content['application/json'].examples ?? {};
    const paid = expectStatus(await post('client', '/v1/jobs', jobExamples.paid.value), 201, 'paid example');
    expect(paid).toMatchObject({ state: 'queued', payment_status: 'escrowed', payment_amount: '0.00100000' });
    const unpaid = expectStatus(await post('client', '/v1/jobs', jobExamples.unpaid.value), 201, 'unpaid example');
    expect(unpaid).toMatchObject({ state: 'queued', payment_id: null });

    const paymentExample = doc.paths['/v1/payments'].post.requestBody?.content['application/json'].examples ?? {};
    const body = { ...paymentExample.default.value, job_id: unpaid.job_id };
    expect(expectStatus(await post('client', '/v1/payments', body), 201, 'payment example')).toMatchObject({
      job_id: unpaid.job_id,
      status: 'escrowed',
    });
  });

  describe('real error answers match the document', () => {
    /** Asserts the answer is an error in the one shape and that its route documents its status and code. */
    function expectDocumented(response: Response, method: string, path: string, status: number, code: string): void {
      expectError(response, status, code);
      expect({ route: `${method} ${path}`, status, codes: documentedCodes(method, path, status) }).toEqual({
        route: `${method} ${path}`,
        status,
        codes: expect.arrayContaining([code]),
      });
    }

    it('401 without a key, 403 with the wrong role', async () => {
      const noKey = await app().http.post('/v1/jobs').send({ payload: PAYLOAD });
      expectDocumented(noKey, 'POST', '/v1/jobs', 401, 'UNAUTHORIZED');
      const miner = await app().http.get('/v1/jobs').set('X-Api-Key', app().keys.miner);
      expectDocumented(miner, 'GET', '/v1/jobs', 403, 'FORBIDDEN');
    });

    it('400 for an amount with too many decimals, 415 for another content type, 413 for a body over the limit', async () => {
      const amount = await post('client', '/v1/jobs', { payload: PAYLOAD, payment_amount: '0.000000001' });
      expectDocumented(amount, 'POST', '/v1/jobs', 400, 'INVALID_AMOUNT');
      const text = await app()
        .http.post('/v1/jobs')
        .set('X-Api-Key', app().keys.client)
        .set('Content-Type', 'text/plain')
        .send('hello');
      expectDocumented(text, 'POST', '/v1/jobs', 415, 'UNSUPPORTED_MEDIA_TYPE');
      const large = await post('client', '/v1/jobs', { payload: { text: 'x'.repeat(300 * 1024) } });
      expectDocumented(large, 'POST', '/v1/jobs', 413, 'PAYLOAD_TOO_LARGE');
    });

    it("404 for a job that does not exist (or is another client's)", async () => {
      const response = await app().http.get(`/v1/jobs/${randomUUID()}`).set('X-Api-Key', app().keys.client);
      expectDocumented(response, 'GET', '/v1/jobs/{job_id}', 404, 'JOB_NOT_FOUND');
    });

    it('409 for a double release and for paying a job twice', async () => {
      const job = expectStatus(
        await post('client', '/v1/jobs', { payload: PAYLOAD, payment_amount: '0.001' }),
        201,
        'job',
      );
      const payout = await app().daemon.newAddress('BTC');
      expectStatus(await post('miner', '/v1/miners/register', { payout_address: payout }), 200, 'register');
      // Poll until this job is handed out (other tests of this file leave queued jobs too).
      for (let i = 0; i < 50; i++) {
        const polled = await post('miner', '/v1/miners/poll', undefined);
        expect([200, 204]).toContain(polled.status);
        if (polled.status === 204) throw new Error(`job ${job.job_id} was never handed out`);
        if (polled.body.job_id === job.job_id) break;
      }
      const completed = await post('miner', `/v1/miners/jobs/${job.job_id}/result`, { result: { text: 'Hi' } });
      expect(expectStatus(completed, 200, 'result').state).toBe('completed');

      // Completing the job released the escrow: a second release is refused.
      const again = await post('client', `/v1/payments/${job.payment_id}/release`, {});
      expectDocumented(again, 'POST', '/v1/payments/{payment_id}/release', 409, 'PAYMENT_ALREADY_SETTLED');

      const unpaid = expectStatus(await post('client', '/v1/jobs', { payload: PAYLOAD }), 201, 'unpaid job');
      expectStatus(await post('client', '/v1/payments', { job_id: unpaid.job_id, amount: '0.001' }), 201, 'payment');
      const twice = await post('client', '/v1/payments', { job_id: unpaid.job_id, amount: '0.001' });
      expectDocumented(twice, 'POST', '/v1/payments', 409, 'JOB_ALREADY_PAID');
    });

    it('422 for an Idempotency-Key reused with another body', async () => {
      const key = `openapi-${randomUUID()}`;
      expectStatus(await post('client', '/v1/jobs', { payload: PAYLOAD }, key), 201, 'first');
      const reused = await post('client', '/v1/jobs', { payload: { other: true } }, key);
      expectDocumented(reused, 'POST', '/v1/jobs', 422, 'IDEMPOTENCY_KEY_REUSED');
    });

    it('insufficient funds is a 201 with a failed payment, as POST /v1/jobs describes, not an error answer', async () => {
      const emptyPayer = await app().daemon.newAddress('BTC');
      const response = await post('client', '/v1/jobs', {
        payload: PAYLOAD,
        payment_amount: '0.001',
        payer_address: emptyPayer,
      });
      expect(expectStatus(response, 201, 'short payer')).toMatchObject({ state: 'failed', payment_status: 'failed' });
      const operation = doc.paths['/v1/jobs'].post as Operation & { description?: string };
      expect(operation.description).toMatch(/short of funds.*201/s);
      expect(operation.responses['402']).toBeUndefined();
    });
  });

  function post(who: KeyName, path: string, body: unknown, idempotencyKey?: string): Promise<Response> {
    let call = app().http.post(path).set('X-Api-Key', app().keys[who]);
    if (idempotencyKey) call = call.set('Idempotency-Key', idempotencyKey);
    return body === undefined ? call : call.send(body as object);
  }
});

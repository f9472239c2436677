import { startTestApp, TestApp } from './support/app';

describe('rate limiting', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ RATE_LIMIT_PER_MINUTE: '5' });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers 429 with Retry-After past the per-principal limit, in the one error shape', async () => {
    for (let i = 0; i < 5; i++) {
      const ok = await t.http.get('/v1/jobs').set('X-Api-Key', t.keys.client);
      expect(ok.status).toBe(200);
    }
    const limited = await t.http.get('/v1/jobs').set('X-Api-Key', t.keys.client);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(limited.body).toMatchObject({ status_code: 429, code: 'RATE_LIMITED' });
  });

  it('tells the limit on every answer, the CSV export (which writes its own response) included', async () => {
    for (const path of ['/v1/payments', '/v1/payments/export']) {
      const answer = await t.http.get(path).set('X-Api-Key', t.keys.admin);
      expect(answer.status).toBe(200);
      expect(answer.headers['x-ratelimit-limit']).toBe('5');
      expect(Number(answer.headers['x-ratelimit-remaining'])).toBeLessThan(5);
    }
  });

  it('counts each principal separately', async () => {
    const other = await t.http.get('/v1/jobs').set('X-Api-Key', t.keys.client2);
    expect(other.status).toBe(200);
  });

  it('limits requests without a known key per IP, so keys cannot be guessed quickly', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await t.http.get('/v1/jobs').set('X-Api-Key', `guess-${i}`)).status);
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.slice(5)).toEqual([429, 429]);
  });

  it('never limits health probes or metrics scrapes', async () => {
    for (let i = 0; i < 8; i++) {
      expect((await t.http.get('/health/live')).status).toBe(200);
      expect((await t.http.get('/metrics')).status).toBe(200);
    }
  });
});

import { canonicalJson, readIdempotencyKey, requestFingerprint } from './idempotency';

describe('canonicalJson', () => {
  it('sorts keys at every level and drops undefined fields', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: null }], c: 'x' }, u: undefined })).toBe(
      '{"a":{"c":"x","d":[2,{"y":null,"z":1}]},"b":1}',
    );
  });
});

describe('requestFingerprint', () => {
  it('is the same for the same body in any key order', () => {
    expect(requestFingerprint('/r', { amount: '1', escrow_id: 'e' })).toBe(
      requestFingerprint('/r', { escrow_id: 'e', amount: '1' }),
    );
  });

  it('differs by route and by body', () => {
    const body = { escrow_id: 'e' };
    expect(requestFingerprint('/api/v1/escrow/release', body)).not.toBe(requestFingerprint('/api/v1/refund', body));
    expect(requestFingerprint('/r', { amount: '1' })).not.toBe(requestFingerprint('/r', { amount: '2' }));
  });

  it('is 64 hex characters', () => {
    expect(requestFingerprint('/r', null)).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('readIdempotencyKey', () => {
  it('passes a key through and allows its absence', () => {
    expect(readIdempotencyKey('pay_1:settle')).toBe('pay_1:settle');
    expect(readIdempotencyKey(undefined)).toBeUndefined();
  });

  it.each([[''], ['k'.repeat(256)], [['a', 'b']]])('rejects %j', (header) => {
    expect(() => readIdempotencyKey(header)).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
  });
});

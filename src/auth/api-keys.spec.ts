import { ApiKeyRegistry, parseApiKeys } from './api-keys';

describe('parseApiKeys', () => {
  it('parses roles, principal ids, secrets and optional wallet addresses', () => {
    const keys = parseApiKeys('client:alice:secret-aaaa:bcrt1qxyz, miner:m1:secret-bbbb,admin:ops:secret-cccc');
    expect(keys).toEqual([
      { role: 'client', id: 'alice', secret: 'secret-aaaa', walletAddress: 'bcrt1qxyz' },
      { role: 'miner', id: 'm1', secret: 'secret-bbbb', walletAddress: undefined },
      { role: 'admin', id: 'ops', secret: 'secret-cccc', walletAddress: undefined },
    ]);
  });

  it.each([
    ['', 'no entries'],
    ['client:alice', 'must be role:principal_id:secret'],
    ['root:alice:secret-aaaa', 'unknown role'],
    ['client:al ice:secret-aaaa', 'invalid principal id'],
    ['client:alice:short', 'shorter than 8'],
    ['client:a:secret-aaaa,miner:b:secret-aaaa', 'reuses'],
  ])('rejects %j naming API_KEYS', (raw, message) => {
    expect(() => parseApiKeys(raw)).toThrow(/^API_KEYS: /);
    expect(() => parseApiKeys(raw)).toThrow(message);
  });

  it('never echoes a secret in its errors', () => {
    expect(() => parseApiKeys('root:alice:topsecret-value')).not.toThrow(/topsecret/);
  });
});

describe('ApiKeyRegistry', () => {
  const registry = new ApiKeyRegistry(parseApiKeys('client:alice:secret-aaaa,miner:m1:secret-bbbb'));

  it('finds the principal of a known key and nothing for unknown or missing keys', () => {
    expect(registry.authenticate('secret-aaaa')).toEqual({ role: 'client', id: 'alice', walletAddress: undefined });
    expect(registry.authenticate('secret-bbbb')?.id).toBe('m1');
    expect(registry.authenticate('secret-aaab')).toBeUndefined();
    expect(registry.authenticate('')).toBeUndefined();
    expect(registry.authenticate(undefined)).toBeUndefined();
  });

  it('keeps secrets out of the principals it exposes', () => {
    expect(JSON.stringify(registry.principals())).not.toContain('secret');
  });
});

import { isValidAddress, normalizeAddress, p2wpkhAddress } from './addresses';

const PUBKEY_HASH = Uint8Array.from(Buffer.from('751e76e8199196d454941c45d1b3a323f1433bd6', 'hex'));

/** Replaces the character at `index` with another one of the same alphabet class. */
function mutate(address: string, index: number): string {
  const c = address[index];
  const replacement = c === 'q' ? 'p' : c === 'Q' ? 'P' : c === '1' && index > 0 ? '2' : /[a-z]/.test(c) ? 'q' : 'Q';
  return address.slice(0, index) + replacement + address.slice(index + 1);
}

describe('isValidAddress — BTC bech32/bech32m (BIP173, BIP350 vectors)', () => {
  it.each([
    ['BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4', 'mainnet'],
    ['bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', 'mainnet'],
    ['tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7', 'testnet'],
    ['bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y', 'mainnet'],
    ['BC1SW50QGDZ25J', 'mainnet'],
    ['bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs', 'mainnet'],
    ['tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy', 'testnet'],
    ['tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c', 'testnet'],
    ['bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0', 'mainnet'],
    ['bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080', 'regtest'],
  ])('accepts %s on %s', (address, network) => {
    expect(isValidAddress(address, 'btc', network)).toBe(true);
  });

  it.each([
    ['tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut', 'unknown hrp'],
    ['bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd', 'v1 with bech32 checksum'],
    ['tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf', 'v2 with bech32 checksum'],
    ['BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL', 'v16 with bech32 checksum'],
    ['bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh', 'v0 with bech32m checksum'],
    ['tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47', 'v0 with bech32m checksum'],
    ['bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4', 'invalid character'],
    ['BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R', 'witness version 17'],
    ['bc1pw5dgrnzv', 'program of 1 byte'],
    ['bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav', 'program of 41 bytes'],
    ['BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P', 'v0 program of 16 bytes'],
    ['tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq', 'mixed case'],
    ['bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf', 'more than 4 padding bits'],
    ['tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j', 'non-zero padding'],
    ['bc1gmk9yu', 'empty data'],
  ])('rejects %s (%s)', (address) => {
    for (const network of ['mainnet', 'testnet', 'regtest']) {
      expect(isValidAddress(address, 'btc', network)).toBe(false);
    }
  });

  it('checks the hrp against the network', () => {
    const mainnet = 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4';
    const regtest = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';
    expect(isValidAddress(mainnet, 'btc', 'regtest')).toBe(false);
    expect(isValidAddress(mainnet, 'btc', 'testnet')).toBe(false);
    expect(isValidAddress(regtest, 'btc', 'mainnet')).toBe(false);
    expect(isValidAddress(regtest, 'btc', 'testnet')).toBe(false);
  });

  it('rejects every one-character mutation of a valid address', () => {
    const address = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';
    for (let i = 0; i < address.length; i++) {
      expect(isValidAddress(mutate(address, i), 'btc', 'regtest')).toBe(false);
    }
  });
});

describe('isValidAddress — BTC base58check', () => {
  it.each([
    ['1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', 'mainnet'],
    ['3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy', 'mainnet'],
    ['mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn', 'testnet'],
    ['mpXwg4jMtRhuSpVq4xS3HFHmCmWp9NyGKt', 'regtest'],
    ['2N2GDNJ4rEm6NxfMC9ck8VuRdheQzXWaNZv', 'regtest'],
  ])('accepts %s on %s', (address, network) => {
    expect(isValidAddress(address, 'btc', network)).toBe(true);
  });

  it('checks the version byte against the network', () => {
    expect(isValidAddress('1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', 'btc', 'regtest')).toBe(false);
    expect(isValidAddress('1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', 'btc', 'testnet')).toBe(false);
    expect(isValidAddress('mpXwg4jMtRhuSpVq4xS3HFHmCmWp9NyGKt', 'btc', 'mainnet')).toBe(false);
  });

  it('rejects every one-character mutation of the genesis address', () => {
    const genesis = '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa';
    for (let i = 0; i < genesis.length; i++) {
      const mutated = genesis.slice(0, i) + (genesis[i] === 'z' ? 'y' : 'z') + genesis.slice(i + 1);
      expect(isValidAddress(mutated, 'btc', 'mainnet')).toBe(false);
    }
  });

  it('keeps base58 case (it is significant)', () => {
    expect(isValidAddress('1a1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', 'btc', 'mainnet')).toBe(false);
  });
});

describe('isValidAddress — AITBC', () => {
  const aitbc = 'aitbc1qw508d6qejxtdg4y5r3zarvary0c5xw7kdkc587';

  it('accepts a v0 20-byte aitbc address, whatever the network argument', () => {
    expect(isValidAddress(aitbc, 'aitbc', '')).toBe(true);
    expect(isValidAddress(aitbc, 'aitbc', 'regtest')).toBe(true);
  });

  it('rejects other witness versions and program sizes', () => {
    expect(isValidAddress('aitbc1pw508d6qejxtdg4y5r3zarvary0c5xw7kn5ln0h', 'aitbc', '')).toBe(false);
    expect(isValidAddress('aitbc1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqsa54pd', 'aitbc', '')).toBe(
      false,
    );
  });

  it('does not mix up formats', () => {
    expect(isValidAddress(aitbc, 'btc', 'regtest')).toBe(false);
    expect(isValidAddress('bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080', 'aitbc', '')).toBe(false);
  });

  it('rejects every one-character mutation', () => {
    for (let i = 0; i < aitbc.length; i++) {
      expect(isValidAddress(mutate(aitbc, i), 'aitbc', '')).toBe(false);
    }
  });
});

describe('isValidAddress — garbage', () => {
  it.each([
    [''],
    ['1'],
    ['bc1'],
    ['not an address'],
    ['bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 '],
    ['a'.repeat(91)],
    ['bc1' + 'q'.repeat(200)],
    ['\u0000\u00ff'],
  ])('returns false for %j without throwing', (input) => {
    expect(isValidAddress(input, 'btc', 'mainnet')).toBe(false);
    expect(isValidAddress(input, 'aitbc', '')).toBe(false);
  });

  it('returns false for non-strings and unknown formats or networks', () => {
    expect(isValidAddress(42 as unknown as string, 'btc', 'mainnet')).toBe(false);
    expect(isValidAddress('bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', 'btc', 'signet')).toBe(false);
    expect(isValidAddress('bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', 'eth' as 'btc', 'mainnet')).toBe(false);
  });
});

describe('normalizeAddress', () => {
  it('lower-cases bech32 and keeps base58 as is', () => {
    expect(normalizeAddress('BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4', 'btc', 'mainnet')).toBe(
      'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4',
    );
    expect(normalizeAddress('1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa', 'btc', 'mainnet')).toBe(
      '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa',
    );
    expect(normalizeAddress('nope', 'btc', 'mainnet')).toBeNull();
  });
});

describe('p2wpkhAddress', () => {
  it('encodes the BIP173 mainnet and testnet examples', () => {
    expect(p2wpkhAddress(PUBKEY_HASH, 'btc', 'mainnet')).toBe('bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4');
    expect(p2wpkhAddress(PUBKEY_HASH, 'btc', 'testnet')).toBe('tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx');
  });

  it('encodes regtest and aitbc addresses that validate', () => {
    const regtest = p2wpkhAddress(PUBKEY_HASH, 'btc', 'regtest');
    const aitbc = p2wpkhAddress(PUBKEY_HASH, 'aitbc', '');
    expect(regtest).toBe('bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080');
    expect(aitbc).toBe('aitbc1qw508d6qejxtdg4y5r3zarvary0c5xw7kdkc587');
    expect(isValidAddress(regtest, 'btc', 'regtest')).toBe(true);
    expect(isValidAddress(aitbc, 'aitbc', '')).toBe(true);
  });

  it('refuses a hash of the wrong size', () => {
    expect(() => p2wpkhAddress(new Uint8Array(19), 'btc', 'regtest')).toThrow();
  });
});

import { HDKey } from '@scure/bip32';
import { isValidAddress, p2wpkhAddress } from '../common/addresses';
import { CurrencyRegistry } from './currencies';
import { externalChainPath, hash160, HdWallet } from './hd-wallet';

// BIP32 test vector 1 seed.
const SEED = Uint8Array.from(Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex'));
// BIP39 seed of "abandon abandon … about" (empty passphrase), the seed of the BIP84 test vectors.
const BIP84_SEED = Uint8Array.from(
  Buffer.from(
    '5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc1' +
      '9a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4',
    'hex',
  ),
);

describe('HdWallet', () => {
  const regtest = new CurrencyRegistry('regtest');
  const mainnet = new CurrencyRegistry('mainnet');

  it('uses BIP84 paths: coin 1 off mainnet, 0 on mainnet, 7777 for AITBC', () => {
    expect(externalChainPath(regtest.find('BTC')!)).toBe("m/84'/1'/0'/0");
    expect(externalChainPath(mainnet.find('BTC')!)).toBe("m/84'/0'/0'/0");
    expect(externalChainPath(regtest.find('AITBC')!)).toBe("m/84'/7777'/0'/0");
  });

  it('derives the same addresses from the same seed', () => {
    const a = new HdWallet(SEED);
    const b = new HdWallet(SEED);
    for (const code of ['BTC', 'AITBC'] as const) {
      const currency = regtest.find(code)!;
      expect(a.addressAt(currency, 0)).toBe(b.addressAt(currency, 0));
      expect(a.addressAt(currency, 7)).toBe(b.addressAt(currency, 7));
    }
  });

  it('matches the BIP84 test vectors', () => {
    const wallet = new HdWallet(BIP84_SEED);
    expect(wallet.addressAt(mainnet.find('BTC')!, 0)).toBe('bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu');
    expect(wallet.addressAt(mainnet.find('BTC')!, 1)).toBe('bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g');
    // Same wallet, another network: coin type 1, so a different key, not a re-encoded one.
    expect(wallet.addressAt(new CurrencyRegistry('testnet').find('BTC')!, 0)).toBe(
      'tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl',
    );
    // Regtest shares testnet's coin type; only the hrp differs.
    expect(wallet.addressAt(regtest.find('BTC')!, 0)).toBe('bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk');
  });

  it('derives distinct addresses per index and per seed', () => {
    const btc = regtest.find('BTC')!;
    const wallet = new HdWallet(SEED);
    const addresses = new Set(Array.from({ length: 20 }, (_, i) => wallet.addressAt(btc, i)));
    expect(addresses.size).toBe(20);
    const other = new HdWallet(Uint8Array.from(Buffer.from('ff'.repeat(32), 'hex')));
    expect(other.addressAt(btc, 0)).not.toBe(wallet.addressAt(btc, 0));
  });

  it('derives addresses valid for their currency and network', () => {
    const wallet = new HdWallet(SEED);
    for (let i = 0; i < 5; i++) {
      const btc = wallet.addressAt(regtest.find('BTC')!, i);
      const aitbc = wallet.addressAt(regtest.find('AITBC')!, i);
      const main = wallet.addressAt(mainnet.find('BTC')!, i);
      expect(btc).toMatch(/^bcrt1q[02-9ac-hj-np-z]{38}$/);
      expect(aitbc).toMatch(/^aitbc1q[02-9ac-hj-np-z]{38}$/);
      expect(main).toMatch(/^bc1q/);
      expect(isValidAddress(btc, 'btc', 'regtest')).toBe(true);
      expect(isValidAddress(aitbc, 'aitbc', '')).toBe(true);
      expect(isValidAddress(main, 'btc', 'mainnet')).toBe(true);
    }
  });

  it('derives every child as @scure/bip32 does (first indexes, random ones, the last one)', () => {
    const btc = regtest.find('BTC')!;
    const seeds = [SEED, BIP84_SEED, Uint8Array.from(Buffer.from('ff'.repeat(32), 'hex'))];
    const indexes = [...Array.from({ length: 40 }, (_, i) => i), 2 ** 20 + 7, 1_234_567_891, 0x7fffffff];
    for (let i = 0; i < 40; i++) indexes.push(Math.floor(Math.random() * 0x80000000));
    for (const seed of seeds) {
      const wallet = new HdWallet(seed);
      const chain = HDKey.fromMasterSeed(seed).derive(externalChainPath(btc));
      for (const index of indexes) {
        const expected = p2wpkhAddress(hash160(chain.deriveChild(index).publicKey!), btc.format, btc.network);
        expect([index, wallet.addressAt(btc, index)]).toEqual([index, expected]);
      }
    }
  });

  it('refuses indexes outside the non-hardened range', () => {
    const wallet = new HdWallet(SEED);
    const btc = regtest.find('BTC')!;
    expect(() => wallet.addressAt(btc, -1)).toThrow(RangeError);
    expect(() => wallet.addressAt(btc, 2 ** 31)).toThrow(RangeError);
    expect(() => wallet.addressAt(btc, 1.5)).toThrow(RangeError);
  });
});

describe('hash160', () => {
  it('is RIPEMD160(SHA256(x))', () => {
    // Compressed generator point G: its HASH160 is the well-known 751e76e8… of BIP173's examples.
    const g = Buffer.from('0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798', 'hex');
    expect(Buffer.from(hash160(g)).toString('hex')).toBe('751e76e8199196d454941c45d1b3a323f1433bd6');
  });
});

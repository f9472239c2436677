import { DEFAULT_CURRENCIES, parseCurrencies } from './currencies';

describe('parseCurrencies', () => {
  it('uses the defaults when unset or blank', () => {
    for (const raw of [undefined, '', '   ']) {
      const currencies = parseCurrencies(raw);
      expect([...currencies.keys()]).toEqual(['BTC', 'AITBC']);
    }
    expect(parseCurrencies(DEFAULT_CURRENCIES)).toEqual(parseCurrencies(undefined));
  });

  it('parses each field', () => {
    const btc = parseCurrencies(undefined).get('BTC')!;
    expect(btc).toMatchObject({ code: 'BTC', scale: 8, addressFormat: 'btc', network: 'regtest' });
    expect(btc.min.toFixed()).toBe('0.00000546');
    expect(btc.max.toFixed()).toBe('1000');

    const aitbc = parseCurrencies(undefined).get('AITBC')!;
    expect(aitbc).toMatchObject({ scale: 8, addressFormat: 'aitbc', network: 'mainnet' });
    expect(aitbc.min.toFixed()).toBe('0.00000001');
    expect(aitbc.max.toFixed()).toBe('1000000000');
  });

  it('tolerates spaces around entries', () => {
    const currencies = parseCurrencies(' BTC:8:0.00000546:1000:btc:mainnet , SAT:0:1:999999999999:aitbc:dev-net ');
    expect(currencies.get('BTC')!.network).toBe('mainnet');
    expect(currencies.get('SAT')!.scale).toBe(0);
  });

  it.each([
    ['BTC:8:0.00000546:1000:btc', 'expected CODE:scale'],
    ['BTC:8:0.00000546:1000:btc:regtest:extra', 'expected CODE:scale'],
    ['BTC:8:0.00000546:1000:btc:regtest,', 'expected CODE:scale'],
    ['btc:8:0.00000546:1000:btc:regtest', 'code must match'],
    ['B:8:0.00000546:1000:btc:regtest', 'code must match'],
    ['BITCOINCASH:8:0.00000546:1000:btc:regtest', 'code must match'],
    ['1BTC:8:0.00000546:1000:btc:regtest', 'code must match'],
    ['BTC:9:0.00000546:1000:btc:regtest', 'scale must be'],
    ['BTC:-1:0.00000546:1000:btc:regtest', 'scale must be'],
    ['BTC:8.0:0.00000546:1000:btc:regtest', 'scale must be'],
    ['BTC::0.00000546:1000:btc:regtest', 'scale must be'],
    ['BTC:8:0:1000:btc:regtest', 'min must be greater than zero'],
    ['BTC:8:-1:1000:btc:regtest', 'min must be a plain decimal'],
    ['BTC:8:1e-8:1000:btc:regtest', 'min must be a plain decimal'],
    ['BTC:8:0.00000546:abc:btc:regtest', 'max must be a plain decimal'],
    ['BTC:8:10:1:btc:regtest', 'max must be at least min'],
    ['BTC:8:1:1000000000000:btc:regtest', 'max must be below 10^12'],
    ['BTC:2:0.001:1000:btc:regtest', 'min 0.001 has more than 2 decimal places'],
    ['BTC:2:0.01:1000.001:btc:regtest', 'max 1000.001 has more than 2 decimal places'],
    ['BTC:8:0.00000546:1000:eth:regtest', 'format must be btc or aitbc'],
    ['BTC:8:0.00000546:1000:btc:signet', 'btc network must be one of mainnet, testnet, regtest'],
    ['AITBC:8:0.00000001:1000:aitbc:', 'network must match'],
    ['AITBC:8:0.00000001:1000:aitbc:Main Net', 'network must match'],
    ['BTC:8:0.00000546:1000:btc:regtest,BTC:8:0.00000546:1000:btc:mainnet', 'duplicate currency BTC'],
  ])('rejects %p (%s)', (raw, problem) => {
    expect(() => parseCurrencies(raw)).toThrow(problem);
    // Every failure names the variable so a failed boot points at the right setting.
    expect(() => parseCurrencies(raw)).toThrow(/^CURRENCIES: invalid entry "/);
  });

  it('quotes the offending entry', () => {
    expect(() => parseCurrencies('BTC:8:0.00000546:1000:btc:regtest,XX:9:1:2:aitbc:main')).toThrow(
      'CURRENCIES: invalid entry "XX:9:1:2:aitbc:main": scale must be an integer from 0 to 8',
    );
  });
});

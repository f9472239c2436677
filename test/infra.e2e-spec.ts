import { Money } from '../src/common/money';
import { CLIENT_WALLET_FUNDS, startTestApp, TestApp } from './support/app';
import { createIsolatedDatabase } from './support/database';
import { balance, expectLedgerConserved, faucet, ledgerTotals, newAddress, sharedDaemon } from './support/daemon';
import { databaseNameOf, withClient } from './support/postgres';

// Proves the e2e infrastructure itself, so a failure here is not mistaken for an app bug.
describe('e2e infrastructure', () => {
  describe('isolated databases', () => {
    it('are copies of the migrated template, named for tests', async () => {
      const url = await createIsolatedDatabase();
      expect(databaseNameOf(url)).toContain('test');

      const tables = await withClient(url, async (client) => {
        const { rows } = await client.query<{ table_name: string }>(
          `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`,
        );
        return rows.map((r) => r.table_name);
      });
      expect(tables).toEqual(
        expect.arrayContaining(['job', 'job_payments', 'payment_escrows', 'payment_events', 'idempotency_keys']),
      );
    });

    it('are distinct from one another', async () => {
      const [first, second] = await Promise.all([createIsolatedDatabase(), createIsolatedDatabase()]);
      expect(databaseNameOf(first)).not.toBe(databaseNameOf(second));

      await withClient(first, (client) => client.query('CREATE TABLE only_in_first (id int)'));
      const seenInSecond = await withClient(second, async (client) => {
        const { rowCount } = await client.query(
          `SELECT 1 FROM information_schema.tables WHERE table_name = 'only_in_first'`,
        );
        return rowCount;
      });
      expect(seenInSecond).toBe(0);
    });
  });

  describe('wallet daemon', () => {
    it('answers health', async () => {
      await expect(sharedDaemon().health()).resolves.toBeDefined();
    });

    it('funds a fresh address from the faucet', async () => {
      const address = await newAddress('BTC');
      expect(address).toMatch(/^bcrt1/);
      expect(new Money(await balance(address)).isZero()).toBe(true);

      await faucet(address, '1.5');
      await faucet(address, '0.00000001');
      expect(new Money(await balance(address)).eq('1.50000001')).toBe(true);
    });

    it('conserves money across the ledger', async () => {
      const before = await ledgerTotals('BTC');
      await faucet(await newAddress('BTC'), '2');
      const after = await ledgerTotals('BTC');
      expect(new Money(after.minted).minus(before.minted).gte(2)).toBe(true);
      await expectLedgerConserved('BTC');
    });
  });
});

describe('test app', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('runs on its own test database with funded client wallets', async () => {
    expect(databaseNameOf(t.databaseUrl)).toContain('test');
    expect(new Money(await balance(t.clientWallet)).eq(CLIENT_WALLET_FUNDS)).toBe(true);
    expect(new Money(await balance(t.client2Wallet)).eq(CLIENT_WALLET_FUNDS)).toBe(true);
  });

  it('answers over HTTP and knows the configured keys', async () => {
    await t.http.get('/health/live').expect(200);
    await t.http.get('/v1/jobs').expect(401);
    await t.http.get('/v1/jobs').set('X-Api-Key', t.keys.client).expect(200);
    await t.http.get('/v1/jobs').set('X-Api-Key', t.keys.miner).expect(403);
  });
});

import { randomBytes } from 'node:crypto';
import { createDatabase, requiredTestEnv, TEST_ENV, withClient, withDatabaseName } from './postgres';

let created = 0;

/**
 * A fresh database copied from the migrated template of this run, and its URL. Each
 * test file (or app) gets its own, so files run in parallel without sharing rows.
 * Global teardown drops it (by the run's name prefix).
 */
export async function createIsolatedDatabase(): Promise<string> {
  const adminUrl = requiredTestEnv(TEST_ENV.adminUrl);
  const template = requiredTestEnv(TEST_ENV.templateDb);
  const prefix = requiredTestEnv(TEST_ENV.dbPrefix);
  // pid tells the jest workers apart; the random part tells apart files that share a
  // worker (each file has its own module registry, so a counter alone would repeat).
  const name = `${prefix}_f_${process.pid}_${++created}_${randomBytes(3).toString('hex')}`;
  await withClient(adminUrl, (client) => createDatabase(client, name, template));
  return withDatabaseName(adminUrl, name);
}

import { infraState } from './support/infra-state';
import { databasesWithPrefix, dropDatabase, withClient } from './support/postgres';

/**
 * Undoes global setup: stops the wallet daemon, drops every database this run created
 * (template, wallet, per-file; all share the run's name prefix) and stops the embedded
 * server if one was started. Each step runs even when an earlier one failed.
 */
export default async function globalTeardown(): Promise<void> {
  const state = infraState();
  const failures: unknown[] = [];
  const step = async (work: () => Promise<unknown>) => {
    try {
      await work();
    } catch (error) {
      failures.push(error);
    }
  };

  // The daemon first: its pool holds connections to the wallet database.
  if (state.stopDaemon) await step(state.stopDaemon);
  const { adminUrl, dbPrefix } = state;
  if (adminUrl && dbPrefix) {
    await step(() =>
      withClient(adminUrl, async (admin) => {
        for (const name of await databasesWithPrefix(admin, `${dbPrefix}_`)) await dropDatabase(admin, name);
      }),
    );
  }
  if (state.stopEmbeddedPostgres) await step(state.stopEmbeddedPostgres);

  for (const key of Object.keys(state) as (keyof typeof state)[]) delete state[key];
  if (failures.length > 0) throw failures[0];
}

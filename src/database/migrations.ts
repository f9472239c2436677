import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../../ormconfig';

/** Arbitrary but fixed: every coordinator instance takes the same advisory lock. */
const MIGRATION_LOCK_KEY = 724_031_001;

/**
 * Applies pending migrations while holding a session-level PostgreSQL advisory lock, so
 * instances starting together migrate one at a time and the later ones find nothing to do.
 */
export async function runMigrationsLocked(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      const applied = await dataSource.runMigrations({ transaction: 'each' });
      return applied.map((m) => m.name);
    } finally {
      await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    await runner.release();
  }
}

/** Brings the database at `url` to the latest schema on connections of its own, closed after (tests, the bench). */
export async function migrateDatabase(url: string): Promise<void> {
  // Two connections: runMigrationsLocked holds the advisory lock on one while migrating on another.
  const dataSource = new DataSource(dataSourceOptions(url, 2));
  await dataSource.initialize();
  try {
    await runMigrationsLocked(dataSource);
  } finally {
    // Closed, not left to the pool: a database used as a template must have no open connections.
    await dataSource.destroy();
  }
}

import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { DEMO_CLIENT_WALLET } from '../src/config/app-config';
import { stopLeftoverServer } from '../src/database/embedded-postgres';
import { CoordinatorProcess, freePort, spawnAsNpmStart, stopAllCoordinators } from './support/processes';
import { withClient } from './support/postgres';

// The service started the way the README's `npm start` starts it: no DATABASE_URL (a fresh
// embedded PostgreSQL under a temporary DATA_DIR, not the suite's server) and no
// WALLET_DAEMON_URL (the local daemon is spawned).

/** The embedded server's TCP port, from the postmaster.pid it writes into its data directory. */
async function embeddedServerUrl(databaseDir: string, database: string): Promise<string> {
  const port = (await readFile(join(databaseDir, 'postmaster.pid'), 'utf8')).split('\n')[3].trim();
  return `postgres://postgres:postgres@127.0.0.1:${port}/${database}`;
}

async function tablesInSchema(url: string, schema: string): Promise<string[]> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema],
    );
    return rows.map((r) => r.table_name);
  });
}

afterAll(() => stopAllCoordinators());

describe('npm start', () => {
  let home: string;
  let coordinator: CoordinatorProcess | undefined;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'npm-start-'));
    // mkdtemp makes it 0700; as root the embedded server runs as postgres, which must get in.
    await chmod(home, 0o755);
    coordinator = await spawnAsNpmStart({ DATA_DIR: join(home, 'data'), WALLET_DAEMON_PORT: String(await freePort()) });
  });
  afterAll(async () => {
    await coordinator?.stop();
    await stopLeftoverServer(join(home, 'data', 'pg'));
    await rm(home, { recursive: true, force: true });
  });

  it('keeps the local daemon’s tables in the wallet_daemon database, not in the coordinator’s', async () => {
    const databaseDir = join(home, 'data', 'pg');
    const walletDb = await embeddedServerUrl(databaseDir, 'wallet_daemon');
    const coordinatorDb = await embeddedServerUrl(databaseDir, 'coordinator');

    expect(await tablesInSchema(walletDb, 'wallet_daemon')).toEqual([
      'accounts',
      'entries',
      'escrows',
      'idempotency_keys',
      'transfers',
    ]);
    // The running daemon writes there: it funded the demo client's wallet at boot.
    const funded = await withClient(walletDb, (client) =>
      client.query(`SELECT 1 FROM wallet_daemon.accounts WHERE address = $1 AND currency = 'BTC' AND balance >= 1`, [
        DEMO_CLIENT_WALLET,
      ]),
    );
    expect(funded.rowCount).toBe(1);

    expect(await tablesInSchema(coordinatorDb, 'wallet_daemon')).toEqual([]);
    expect(await tablesInSchema(coordinatorDb, 'public')).toEqual(
      expect.arrayContaining(['job', 'job_payments', 'payment_escrows']),
    );
  });
});

describe('npm start, stopped from its terminal or by a process manager', () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'npm-start-stop-'));
    await chmod(home, 0o755);
  });
  afterEach(async () => {
    await stopLeftoverServer(join(home, 'data', 'pg'));
    await rm(home, { recursive: true, force: true });
  });

  it.each<[string, NodeJS.Signals, boolean]>([
    [
      'Ctrl-C in its terminal (SIGINT to its whole process group, twice as under npm, which forwards it)',
      'SIGINT',
      true,
    ],
    ['SIGTERM to the process alone, as a process manager sends it', 'SIGTERM', false],
  ])(
    '%s: stops the app, then the daemon and the embedded server, exits 0 and warns of nothing',
    async (_how, signal, wholeGroup) => {
      const daemonPort = await freePort();
      const coordinator = await spawnAsNpmStart(
        { DATA_DIR: join(home, 'data'), WALLET_DAEMON_PORT: String(daemonPort), LOG_LEVEL: 'info' },
        { ownProcessGroup: true },
      );
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
        coordinator.child.once('exit', (code, exitSignal) => done({ code, signal: exitSignal })),
      );
      process.kill(wholeGroup ? -coordinator.pid : coordinator.pid, signal);
      if (wholeGroup) process.kill(-coordinator.pid, signal);

      expect(await exited).toEqual({ code: 0, signal: null });
      const lines = coordinator
        .outputTail()
        .split('\n')
        .filter((line) => line.startsWith('{"level"'))
        .map((line) => JSON.parse(line) as { level: number; msg?: string });
      const fromStop = lines.slice(lines.findIndex((line) => line.msg === 'stopping'));
      expect(fromStop.map((line) => line.msg)).toEqual(expect.arrayContaining(['stopping', 'stopped']));
      expect(lines.filter((line) => line.level >= 40)).toEqual([]);
      // A clean shutdown removes the server's lock file; the daemon no longer listens.
      expect(existsSync(join(home, 'data', 'pg', 'postmaster.pid'))).toBe(false);
      await expect(fetch(`http://127.0.0.1:${daemonPort}/health`)).rejects.toThrow();
    },
  );

  it('after a SIGKILL, which leaves its embedded server running, starts again on the same DATA_DIR', async () => {
    const dataDir = join(home, 'data');
    const first = await spawnAsNpmStart({ DATA_DIR: dataDir, WALLET_DAEMON_PORT: String(await freePort()) });
    await first.kill();
    const lockFile = join(dataDir, 'pg', 'postmaster.pid');
    const leftPid = Number((await readFile(lockFile, 'utf8')).split('\n')[0]);
    expect(() => process.kill(leftPid, 0)).not.toThrow();

    const second = await spawnAsNpmStart({ DATA_DIR: dataDir, WALLET_DAEMON_PORT: String(await freePort()) });
    try {
      expect((await fetch(`${second.url}/health/ready`)).status).toBe(200);
      expect(Number((await readFile(lockFile, 'utf8')).split('\n')[0])).not.toBe(leftPid);
      expect(() => process.kill(leftPid, 0)).toThrow();
    } finally {
      await second.stop();
    }
  });
});

describe('npm start with DATA_DIR inside a directory the embedded server’s user cannot enter', () => {
  const asRoot = process.getuid?.() === 0;
  // As root the server runs as postgres, whom a root-owned 0700 directory (what `mktemp -d`
  // makes) keeps out; otherwise it runs as us, and only a directory we cannot enter does.
  const serverUser = asRoot ? 'postgres' : userInfo().username;
  let parent: string;
  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), 'npm-start-private-'));
    await chmod(parent, asRoot ? 0o700 : 0o000);
  });
  afterAll(async () => {
    await chmod(parent, 0o700);
    await rm(parent, { recursive: true, force: true });
  });

  it('stops before initdb with a message naming DATA_DIR, the user and the fix', async () => {
    const dataDir = join(parent, 'data');
    const started = spawnAsNpmStart({ DATA_DIR: dataDir, WALLET_DAEMON_PORT: String(await freePort()) });

    const error = await started.then(
      (coordinator) => coordinator.stop().then(() => undefined),
      (failure: Error) => failure,
    );
    expect(error?.message).toContain('exited before it was ready (code 1');
    expect(error?.message).toContain(
      `configuration error: DATA_DIR (${dataDir}): the embedded PostgreSQL runs as user ${serverUser}`,
    );
    expect(error?.message).toContain(`cannot enter ${parent}. Fix: put DATA_DIR where ${serverUser} can reach it`);
    expect(error?.message).toContain(`chmod o+x ${parent}`);
    expect(error?.message).toContain('set DATABASE_URL');
    expect(error?.message).not.toContain('initdb: error');
    await chmod(parent, 0o700);
    expect(existsSync(join(dataDir, 'pg'))).toBe(false);
  });
});

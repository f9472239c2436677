import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnWalletDaemon } from './spawn';

/** Writes a stand-in for the daemon's main.js and returns its path. */
function fakeEntry(dir: string, source: string): string {
  const path = join(dir, `fake-${Math.random().toString(36).slice(2)}.js`);
  writeFileSync(path, source);
  return path;
}

const options = { databaseUrl: 'postgres://x@127.0.0.1/test', token: 't0ken' };

describe('spawnWalletDaemon', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wallet-spawn-'));

  it('resolves with the URL of the listening line, passes the env, logs to a file, and stops the process', async () => {
    const logFile = join(dir, 'logs', 'daemon.log');
    const entry = fakeEntry(
      dir,
      // The handler before the listening line, as a real server has it: the test stops the process the
      // moment it reads that line, and a SIGTERM before the handler exists would kill it by default.
      `console.log('{"msg":"starting"}');
       process.on('SIGTERM', () => { console.log('{"msg":"bye"}'); process.exit(0); });
       console.log(JSON.stringify({ listening: true, url: 'http://127.0.0.1:1234',
         env: [process.env.WALLET_DATABASE_URL, process.env.WALLET_DAEMON_PORT, process.env.EXTRA] }));
       setInterval(() => {}, 1000);`,
    );
    // A grace far above any machine's load: the stop must come from the SIGTERM handler, never the SIGKILL fallback.
    const daemon = await spawnWalletDaemon({
      ...options,
      entry,
      port: 0,
      logFile,
      env: { EXTRA: 'yes' },
      stopGraceMs: 60_000,
    });
    expect(daemon.url).toBe('http://127.0.0.1:1234');
    await daemon.stop();
    expect(daemon.child.exitCode).toBe(0);
    const log = readFileSync(logFile, 'utf8');
    expect(log).toContain('"msg":"starting"');
    expect(log).toContain('"env":["postgres://x@127.0.0.1/test","0","yes"]');
    expect(log).toContain('"msg":"bye"');
    await expect(daemon.stop()).resolves.toBeUndefined();
  });

  it('rejects with stderr when the process exits before listening', async () => {
    const entry = fakeEntry(dir, `console.error('WALLET_DATABASE_URL is required'); process.exit(1);`);
    await expect(spawnWalletDaemon({ ...options, entry })).rejects.toThrow(
      /exited before listening \(code 1.*\n.*WALLET_DATABASE_URL is required/s,
    );
  });

  it('rejects and kills the process when it never listens', async () => {
    const entry = fakeEntry(dir, `console.error('stuck'); setInterval(() => {}, 1000);`);
    // Long enough for a heavily loaded machine to start node and print (3 s was not, with
    // three suites running), short enough for a unit test.
    await expect(spawnWalletDaemon({ ...options, entry, startTimeoutMs: 10_000 })).rejects.toThrow(
      /did not start within 10000 ms:\nstuck/,
    );
  });

  it('kills a daemon that ignores SIGTERM', async () => {
    const entry = fakeEntry(
      dir,
      `process.on('SIGTERM', () => {}); console.log('{"listening":true,"url":"http://127.0.0.1:1"}'); setInterval(() => {}, 1000);`,
    );
    const daemon = await spawnWalletDaemon({ ...options, entry, stopGraceMs: 200 });
    await daemon.stop();
    expect(daemon.child.signalCode).toBe('SIGKILL');
  });
});

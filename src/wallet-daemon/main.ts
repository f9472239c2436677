import { AddressInfo } from 'node:net';
import { loadWalletDaemonConfig, WALLET_DAEMON_HOST, WalletDaemonConfigError } from './config';
import { buildWalletDaemon } from './server';
import { EXIT_WITH_PARENT_ENV } from './spawn';

/** One JSON log line, written directly so it prints at any LOG_LEVEL. */
function printLine(stream: NodeJS.WriteStream, fields: Record<string, unknown>): void {
  stream.write(`${JSON.stringify({ time: Date.now(), pid: process.pid, name: 'wallet-daemon', ...fields })}\n`);
}

async function main(): Promise<void> {
  const config = loadWalletDaemonConfig(process.env);
  const daemon = await buildWalletDaemon(config);
  await daemon.app.listen({ host: WALLET_DAEMON_HOST, port: config.port });
  const { port } = daemon.app.server.address() as AddressInfo;

  let stopping = false;
  const stop = (reason: string) => {
    if (stopping) return;
    stopping = true;
    daemon.app.log.info({ reason }, 'wallet daemon stopping');
    daemon.close().then(
      () => process.exit(0),
      (error) => {
        daemon.app.log.error({ err: error }, 'wallet daemon did not close cleanly');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  if (process.env[EXIT_WITH_PARENT_ENV] === '1') {
    process.stdin.once('close', () => stop('parent closed stdin'));
    process.stdin.resume();
  }
  // Announced once the stop handlers exist: whoever waits for this line may stop the daemon at once.
  printLine(process.stdout, {
    level: 30,
    listening: true,
    url: `http://${WALLET_DAEMON_HOST}:${port}`,
    msg: 'wallet daemon listening',
  });
}

main().catch((error: unknown) => {
  const message =
    error instanceof WalletDaemonConfigError
      ? error.message
      : `wallet daemon failed to start: ${error instanceof Error ? error.message : String(error)}`;
  printLine(process.stderr, { level: 60, msg: message });
  process.exit(1);
});

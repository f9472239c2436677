import { Logger } from '@nestjs/common';
import { existsSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { CsvExportJob, FromExportWorker } from './csv-export.worker';

/** The ring between the worker and the socket: at most 8 × 64 KiB of the export in flight. */
const RING_BUFFERS = 8;
const BUFFER_BYTES = 64 * 1024;
/**
 * The worker's young generation (MiB). Small, so the garbage of a fast stream is
 * collected every few MiB: on the main thread, with Node 22/24's 64 MiB young generation,
 * a 1M-row export raised the RSS by 70–110 MiB (README "Payment history and reporting").
 */
const WORKER_YOUNG_GENERATION_MB = 2;

/**
 * The worker's compiled file: beside this one in a build. Run from the sources (the
 * in-process e2e tests), the build's: `npm test` builds first, as the coordinators the
 * e2e tests spawn need it too.
 */
const WORKER_FILE = existsSync(join(__dirname, 'csv-export.worker.js'))
  ? join(__dirname, 'csv-export.worker.js')
  : join(__dirname, '..', '..', 'dist', 'src', 'history', 'csv-export.worker.js');

/**
 * One CSV export in flight: a worker thread reads the COPY (`csv-export.worker.ts`) and
 * hands over filled buffers, which `writeTo` writes to the HTTP response and hands back
 * once the socket has taken them. The main thread allocates nothing per chunk, and the
 * export's parsing runs beside the requests, not between them.
 */
export class CsvExport {
  private readonly logger = new Logger('Export');
  private readonly worker: Worker;
  private readonly inbox: FromExportWorker[] = [];
  private arrived: (() => void) | undefined;
  private done = false;
  /** Settles when the worker has exited, its database connection closed. */
  readonly exited: Promise<void>;

  private constructor(job: CsvExportJob) {
    this.worker = new Worker(WORKER_FILE, {
      workerData: job,
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    this.worker.on('message', (message: FromExportWorker) => this.receive(message));
    this.worker.on('error', (error) => this.receive({ type: 'error', message: error.message }));
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        this.receive({ type: 'error', message: `the export worker stopped (exit code ${code})` });
        resolve();
      }),
    );
  }

  /**
   * Starts the export; resolves once the first bytes (or the end) have arrived, so a
   * statement that fails at once is still an ordinary error answer.
   */
  static async start(databaseUrl: string, sql: string, sortOff: boolean): Promise<CsvExport> {
    const csv = new CsvExport({ databaseUrl, sql, sortOff, buffers: RING_BUFFERS, bufferBytes: BUFFER_BYTES });
    await csv.waitForMessage();
    const first = csv.inbox[0];
    if (first.type === 'error') {
      csv.stop();
      throw new Error(`export failed: ${first.message}`);
    }
    return csv;
  }

  /**
   * Writes the export to `res` (its head already written) as the worker fills buffers.
   * A client that goes away stops the worker, which closes its connection; a failure
   * after the first bytes cuts the response short (its chunked encoding never ends), as
   * only that tells an HTTP client that a 200 answer is incomplete.
   */
  async writeTo(res: ServerResponse): Promise<void> {
    res.once('close', () => this.stop());
    // A client that left before this (while the export waited for its turn or its first
    // bytes) has had its 'close' already: stop now, or the worker would wait for buffers forever.
    if (res.destroyed || !res.socket || res.socket.destroyed) this.stop();
    for (;;) {
      await this.waitForMessage();
      const message = this.inbox.shift() as FromExportWorker;
      if (message.type === 'end') {
        this.done = true;
        res.end();
        return;
      }
      if (message.type === 'error') {
        this.done = true;
        if (!res.destroyed) {
          this.logger.warn({ reason: message.message }, 'export stopped before its end; the response is cut short');
          res.destroy();
        }
        return;
      }
      const { buffer, length } = message;
      res.write(Buffer.from(buffer, 0, length), (error) => {
        // On the socket: the buffer goes back to the worker for the next bytes. A failed
        // write means the response is gone: nothing more will be taken.
        if (error) this.stop();
        else if (!this.done) this.worker.postMessage(buffer, [buffer]);
      });
    }
  }

  /** Ends the export where it is: the worker is terminated and its connection closed. */
  stop(): void {
    void this.worker.terminate();
  }

  private receive(message: FromExportWorker): void {
    // Whatever follows the end or a first error (the worker's exit) says nothing new.
    const last = this.inbox[this.inbox.length - 1];
    if (this.done || last?.type === 'end' || last?.type === 'error') return;
    this.inbox.push(message);
    this.arrived?.();
    this.arrived = undefined;
  }

  private async waitForMessage(): Promise<void> {
    while (this.inbox.length === 0) await new Promise<void>((resolve) => (this.arrived = resolve));
  }
}

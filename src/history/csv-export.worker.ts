/**
 * The CSV export's worker thread (see `CsvExport`): reads one `COPY … TO STDOUT` on a
 * connection of its own, in one read-only transaction, and writes the lines (CRLF) into
 * a fixed ring of buffers. Each filled buffer is transferred to the main thread, which
 * writes it to the socket and transfers it back; with every buffer out, the worker waits,
 * and so does the COPY (backpressure down to PostgreSQL). PostgreSQL's own chunks are
 * this thread's garbage, collected by its small young generation.
 */
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { Client } from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { crlfParts } from './csv-lines';

export interface CsvExportJob {
  databaseUrl: string;
  sql: string;
  /** `SET LOCAL enable_sort = off` first (see `PaymentHistoryRepository.exportCsv`). */
  sortOff: boolean;
  buffers: number;
  bufferBytes: number;
}

/** Worker → main thread. Main → worker is only a written buffer, handed back. */
export type FromExportWorker =
  { type: 'chunk'; buffer: ArrayBuffer; length: number } | { type: 'end' } | { type: 'error'; message: string };

async function run(port: MessagePort, job: CsvExportJob): Promise<void> {
  const free = Array.from({ length: job.buffers }, () => new ArrayBuffer(job.bufferBytes));
  let returned: (() => void) | undefined;
  port.on('message', (buffer: ArrayBuffer) => {
    free.push(buffer);
    returned?.();
    returned = undefined;
  });
  const nextBuffer = async (): Promise<Uint8Array<ArrayBuffer>> => {
    while (free.length === 0) await new Promise<void>((resolve) => (returned = resolve));
    return new Uint8Array(free.pop() as ArrayBuffer);
  };

  const client = new Client({ connectionString: job.databaseUrl, application_name: 'coordinator-export' });
  try {
    await client.connect();
    await client.query('BEGIN READ ONLY');
    if (job.sortOff) await client.query('SET LOCAL enable_sort = off');
    let out = await nextBuffer();
    let used = 0;
    const send = async () => {
      port.postMessage({ type: 'chunk', buffer: out.buffer, length: used } satisfies FromExportWorker, [out.buffer]);
      out = await nextBuffer();
      used = 0;
    };
    const state = { quoted: false };
    for await (const chunk of client.query(copyTo(job.sql)) as AsyncIterable<Buffer>) {
      for (const part of crlfParts(chunk, state)) {
        for (let offset = 0; offset < part.length;) {
          const n = Math.min(part.length - offset, out.length - used);
          out.set(part.subarray(offset, offset + n), used);
          used += n;
          offset += n;
          if (used === out.length) await send();
        }
      }
      // What PostgreSQL has sent goes out now: the first rows of a slow statement are not held back.
      if (used > 0) await send();
    }
    await client.query('COMMIT');
    port.postMessage({ type: 'end' } satisfies FromExportWorker);
  } catch (error) {
    port.postMessage({ type: 'error', message: (error as Error).message } satisfies FromExportWorker);
  } finally {
    await client.end().catch(() => undefined);
    port.close();
  }
}

if (parentPort) void run(parentPort, workerData as CsvExportJob);

import { formatAmount } from './amounts';
import { invalidRequest } from './errors';
import { Db, EscrowRow } from './ledger';
import { MAX_BATCH_ITEMS } from './requests';
import { escrowView } from './wallet-service';

/**
 * `POST /api/v1/escrow/lookup` `{"escrow_ids": [...]}`: many escrows in one read, for the
 * coordinator's reconciliation. A read: it changes nothing, so it takes no
 * Idempotency-Key and is safe to repeat.
 */

/** The ids asked for (1 to 500 strings, else 400); an id that is not a UUID names no escrow and is dropped. */
export function parseLookup(body: unknown): string[] {
  const ids = (body !== null && typeof body === 'object' && !Array.isArray(body) ? body : {}) as {
    escrow_ids?: unknown;
  };
  const { escrow_ids: escrowIds } = ids;
  if (
    !Array.isArray(escrowIds) ||
    escrowIds.length === 0 ||
    escrowIds.length > MAX_BATCH_ITEMS ||
    escrowIds.some((id) => typeof id !== 'string' || id.length === 0 || id.length > 255)
  ) {
    throw invalidRequest(`escrow_ids must be an array of 1 to ${MAX_BATCH_ITEMS} escrow ids`);
  }
  return [...new Set((escrowIds as string[]).filter((id) => UUID.test(id)).map((id) => id.toLowerCase()))];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An escrow with what its settlement paid out, leg by leg (both 0 while held). */
export type EscrowWithLegs = EscrowRow & { released_amount: string; refunded_amount: string };

/**
 * The escrows of `escrowIds` that exist, each with the amounts its settlement credited:
 * to its payee (released) and to anyone else (refunded: the refund address). Read from the
 * ledger's entries, not from the escrow row, so it is what really moved. One statement.
 */
export async function lookupEscrows(db: Db, escrowIds: string[]): Promise<EscrowWithLegs[]> {
  if (escrowIds.length === 0) return [];
  const { rows } = await db.query<EscrowWithLegs>(
    `WITH found AS (SELECT * FROM wallet_daemon.escrows WHERE escrow_id = ANY($1::uuid[])),
     credits AS (
       SELECT t.escrow_id, a.address, en.amount
         FROM wallet_daemon.transfers t
         JOIN wallet_daemon.entries en ON en.transaction_hash = t.transaction_hash
         JOIN wallet_daemon.accounts a ON a.account_id = en.account_id
        WHERE t.escrow_id IN (SELECT escrow_id FROM found) AND t.kind <> 'create' AND en.amount > 0)
     SELECT f.*,
            coalesce((SELECT sum(c.amount) FROM credits c WHERE c.escrow_id = f.escrow_id AND c.address = f.payee), 0)
              AS released_amount,
            coalesce((SELECT sum(c.amount) FROM credits c
                       WHERE c.escrow_id = f.escrow_id AND c.address IS DISTINCT FROM f.payee), 0)
              AS refunded_amount
       FROM found f
      ORDER BY f.escrow_id`,
    [escrowIds],
  );
  return rows;
}

/** The route's answer: `{"items": [escrow…]}`, unknown ids omitted. */
export async function lookupAnswer(db: Db, body: unknown): Promise<{ items: object[] }> {
  return { items: (await lookupEscrows(db, parseLookup(body))).map(lookupView) };
}

/** `GET /api/v1/escrow/{id}`'s view, with the amounts paid per leg (null while held). */
export function lookupView(escrow: EscrowWithLegs): object {
  const held = escrow.state === 'held';
  return {
    ...escrowView(escrow),
    released_amount: held ? null : formatAmount(escrow.released_amount),
    refunded_amount: held ? null : formatAmount(escrow.refunded_amount),
  };
}

// Owns the miner table.
import { Injectable } from '@nestjs/common';
import type { Sql } from '../database/transactions';
import type { Miner } from './job.entity';

/** Miners and where they are paid. (The dispatch reads the payout address in `JobRepository.claimNext`.) */
@Injectable()
export class MinerRepository {
  /** Registers a miner, or moves its payout address. */
  upsert(sql: Sql, minerId: string, payoutAddress: string): Promise<Miner | undefined> {
    return sql.one<Miner>(
      `INSERT INTO miner (miner_id, payout_address, registered_at, updated_at) VALUES ($1, $2, now(), now())
       ON CONFLICT (miner_id) DO UPDATE SET payout_address = EXCLUDED.payout_address, updated_at = now()
       RETURNING *`,
      [minerId, payoutAddress],
    );
  }

  find(sql: Sql, minerId: string): Promise<Miner | undefined> {
    return sql.one<Miner>(`SELECT * FROM miner WHERE miner_id = $1`, [minerId]);
  }
}

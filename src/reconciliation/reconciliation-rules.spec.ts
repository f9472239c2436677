import type { EscrowState } from '../wallet-daemon-client/wallet-daemon.client';
import { classify, CoordinatorSide, Verdict } from './reconciliation-rules';

const RELEASE_TX = 'a'.repeat(64);
const REFUND_TX = 'b'.repeat(64);

const row = (over: Partial<CoordinatorSide> = {}): CoordinatorSide => ({
  payment_id: 'p-1',
  status: 'escrowed',
  amount: '0.00100000',
  currency: 'BTC',
  escrow_id: 'e-1',
  transaction_hash: null,
  refund_transaction_hash: null,
  ...over,
});

const escrow = (over: Partial<EscrowState> = {}): EscrowState => ({
  escrow_id: 'e-1',
  payment_id: 'p-1',
  address: 'bcrt1qhold',
  amount: '0.00100000',
  currency: 'BTC',
  state: 'held',
  transaction_hash: null,
  released_amount: null,
  refunded_amount: null,
  ...over,
});
const released = (over: Partial<EscrowState> = {}) =>
  escrow({
    state: 'released',
    transaction_hash: RELEASE_TX,
    released_amount: '0.00100000',
    refunded_amount: '0.00000000',
    ...over,
  });
const refunded = (over: Partial<EscrowState> = {}) =>
  escrow({
    state: 'refunded',
    transaction_hash: REFUND_TX,
    released_amount: '0.00000000',
    refunded_amount: '0.00100000',
    ...over,
  });

const matched: Verdict = { verdict: 'matched' };
const mismatch = (kind: string) => ({ verdict: 'mismatch', kind });

describe('classify (coordinator row × daemon escrow)', () => {
  // [what, coordinator row, daemon escrow (undefined: unknown there), verdict]
  const table: [string, CoordinatorSide, EscrowState | undefined, Verdict | object][] = [
    // agreement
    ['escrowed × held', row(), escrow(), matched],
    ['releasing × held: in flight, left to the re-drive', row({ status: 'releasing' }), escrow(), matched],
    ['refunding × held: in flight', row({ status: 'refunding' }), escrow(), matched],
    ['released × released, same hash', row({ status: 'released', transaction_hash: RELEASE_TX }), released(), matched],
    [
      'refunded × refunded, same hash',
      row({ status: 'refunded', refund_transaction_hash: REFUND_TX }),
      refunded(),
      matched,
    ],
    [
      'failed (late hold refunded) × refunded',
      row({ status: 'failed', refund_transaction_hash: REFUND_TX }),
      refunded(),
      matched,
    ],
    ['amounts equal in another spelling', row({ amount: '0.001' }), escrow({ amount: '0.00100000' }), matched],
    [
      'a daemon without per-leg amounts: legs not compared',
      row({ status: 'released', transaction_hash: RELEASE_TX }),
      released({ released_amount: undefined, refunded_amount: undefined }),
      matched,
    ],
    [
      'partial release: the row records what the miner got, the rest is the refund leg',
      row({ status: 'released', transaction_hash: RELEASE_TX, released_amount: '0.0006' }),
      released({ released_amount: '0.00060000', refunded_amount: '0.00040000' }),
      matched,
    ],
    [
      'partial release recorded on both sides',
      row({
        status: 'released',
        transaction_hash: RELEASE_TX,
        released_amount: '0.0006',
        refunded_amount: '0.0004',
      }),
      released({ released_amount: '0.00060000', refunded_amount: '0.00040000' }),
      matched,
    ],
    // the coordinator behind the daemon: repaired by recording what the daemon did
    [
      'releasing × released',
      row({ status: 'releasing' }),
      released(),
      { verdict: 'repair', outcome: 'released', transactionHash: RELEASE_TX },
    ],
    [
      'refunding × refunded',
      row({ status: 'refunding' }),
      refunded(),
      { verdict: 'repair', outcome: 'refunded', transactionHash: REFUND_TX },
    ],
    // conflicts
    ['unknown at the daemon', row(), undefined, mismatch('unknown_at_daemon')],
    ['escrow of another payment', row(), escrow({ payment_id: 'p-2' }), mismatch('escrow_of_another_payment')],
    ['amount differs', row({ amount: '0.002' }), escrow(), mismatch('amount_mismatch')],
    ['currency differs', row({ currency: 'AITBC' }), escrow(), mismatch('amount_mismatch')],
    [
      'amount differs even though the outcomes agree',
      row({ status: 'releasing', amount: '0.002' }),
      released(),
      mismatch('amount_mismatch'),
    ],
    ['escrowed × released', row(), released(), mismatch('settled_at_daemon_only')],
    ['escrowed × refunded', row(), refunded(), mismatch('settled_at_daemon_only')],
    [
      'released × held',
      row({ status: 'released', transaction_hash: RELEASE_TX }),
      escrow(),
      mismatch('held_at_daemon_final_here'),
    ],
    [
      'refunded × held',
      row({ status: 'refunded', refund_transaction_hash: REFUND_TX }),
      escrow(),
      mismatch('held_at_daemon_final_here'),
    ],
    ['failed × held', row({ status: 'failed' }), escrow(), mismatch('held_at_daemon_final_here')],
    ['releasing × refunded', row({ status: 'releasing' }), refunded(), mismatch('outcome_mismatch')],
    ['refunding × released', row({ status: 'refunding' }), released(), mismatch('outcome_mismatch')],
    [
      'released × refunded',
      row({ status: 'released', transaction_hash: RELEASE_TX }),
      refunded(),
      mismatch('outcome_mismatch'),
    ],
    [
      'refunded × released',
      row({ status: 'refunded', refund_transaction_hash: REFUND_TX }),
      released(),
      mismatch('outcome_mismatch'),
    ],
    [
      'released × released, another hash',
      row({ status: 'released', transaction_hash: 'c'.repeat(64) }),
      released(),
      mismatch('transaction_mismatch'),
    ],
    [
      'refunded × refunded, no hash recorded',
      row({ status: 'refunded' }),
      refunded(),
      mismatch('transaction_mismatch'),
    ],
    [
      'releasing × released without a hash: nothing to record',
      row({ status: 'releasing' }),
      released({ transaction_hash: null }),
      mismatch('transaction_mismatch'),
    ],
    [
      'released whole here, partly refunded at the daemon',
      row({ status: 'released', transaction_hash: RELEASE_TX }),
      released({ released_amount: '0.00060000', refunded_amount: '0.00040000' }),
      mismatch('legs_mismatch'),
    ],
    [
      'releasing whole here, partly released at the daemon: never repaired',
      row({ status: 'releasing' }),
      released({ released_amount: '0.00060000', refunded_amount: '0.00040000' }),
      mismatch('legs_mismatch'),
    ],
  ];

  it.each(table)('%s', (_what, coordinator, daemon, verdict) => {
    expect(classify(coordinator, daemon)).toEqual(verdict);
  });
});

import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { Roles } from '../auth/auth.guard';
import { ApiErrors, KEYED } from '../common/api-errors';
import { ReconciliationReportView } from './dto/reconciliation.dto';
import { ReconciliationService } from './reconciliation.service';

@ApiTags('admin')
@ApiSecurity('api-key')
@Controller('v1/admin')
export class ReconciliationController {
  constructor(private readonly reconciliation: ReconciliationService) {}

  @Get('reconciliation')
  @Roles('admin')
  @ApiOperation({
    summary: "The last reconciliation pass's report (admin)",
    description:
      'The coordinator compares every payment whose escrow is not final, and every one settled in the last 24 hours, ' +
      "with the wallet daemon's escrow every RECONCILE_INTERVAL_MS. `repaired`: settlements the daemon carried out that " +
      'the coordinator had not recorded yet, recorded now (event actor `reconciliation`). Every other disagreement is a ' +
      'mismatch, listed here and never repaired by moving money. The same on every instance. ' +
      'Mismatch kinds: unknown_at_daemon, escrow_of_another_payment, amount_mismatch, settled_at_daemon_only, ' +
      'held_at_daemon_final_here, outcome_mismatch, transaction_mismatch, legs_mismatch (README "Reconciliation").',
  })
  @ApiOkResponse({
    type: ReconciliationReportView,
    example: {
      last_run_at: '2026-11-30T12:00:00.000Z',
      checked: 1204,
      matched: 1202,
      repaired: 1,
      mismatches: [
        {
          payment_id: '0193a5b0-7c1f-7000-8000-000000000001',
          kind: 'settled_at_daemon_only',
          coordinator: {
            status: 'escrowed',
            amount: '0.00100000',
            currency: 'BTC',
            escrow_id: '0193a5b0-7c1f-7000-8000-0000000000e1',
            transaction_hash: null,
            refund_transaction_hash: null,
          },
          daemon: {
            escrow_id: '0193a5b0-7c1f-7000-8000-0000000000e1',
            payment_id: '0193a5b0-7c1f-7000-8000-000000000001',
            state: 'refunded',
            amount: '0.00100000',
            currency: 'BTC',
            transaction_hash: '9f2c4e6a8b0d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a',
            released_amount: '0.00000000',
            refunded_amount: '0.00100000',
          },
        },
      ],
    },
  })
  @ApiErrors(KEYED)
  report(): Promise<ReconciliationReportView> {
    return this.reconciliation.lastReport();
  }
}

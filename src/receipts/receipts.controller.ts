import { Controller, Get, Param } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { Principal } from '../auth/api-keys';
import { CurrentPrincipal, Public, Roles } from '../auth/auth.guard';
import { ApiErrors, KEYED } from '../common/api-errors';
import { ReceiptKeysView, ReceiptView } from '../payments/dto/payment.dto';
import { ReceiptsService } from './receipts.service';

@ApiTags('receipts')
@Controller('v1')
export class ReceiptsController {
  constructor(private readonly receipts: ReceiptsService) {}

  @Get('payments/:payment_id/receipt')
  // The miner a payment was released to may read its receipt too.
  @Roles('client', 'miner', 'admin')
  @ApiSecurity('api-key')
  @ApiOperation({ summary: 'Signed receipt of a payment (verify offline with GET /v1/receipts/keys)' })
  @ApiOkResponse({ type: ReceiptView })
  @ApiErrors(KEYED, 'PAYMENT_NOT_FOUND')
  receipt(@CurrentPrincipal() principal: Principal, @Param('payment_id') paymentId: string) {
    return this.receipts.receipt(principal, paymentId);
  }

  @Get('receipts/keys')
  @Public()
  @ApiOperation({ summary: 'Public keys that sign receipts (old keys stay listed after a rotation)' })
  @ApiOkResponse({ type: ReceiptKeysView })
  // Public, yet rate limited per client IP like every route but the probes and /metrics.
  @ApiErrors('RATE_LIMITED')
  keys(): ReceiptKeysView {
    return { keys: this.receipts.keys() };
  }
}

import { ApiProperty } from '@nestjs/swagger';

/** One payment provider (wallet daemon) as an operator sees it. */
export class ProviderView {
  @ApiProperty({ example: 'backup' }) id: string;
  /** The currencies it holds. */
  @ApiProperty({ type: [String], example: ['BTC', 'AITBC'] }) currencies: string[];
  /** Lower is preferred by the `priority` strategy. */
  @ApiProperty({ example: 20 }) priority: number;
  /** Its share of new payments under `volume_split`. */
  @ApiProperty({ example: 1 }) weight: number;
  /** Largest single payment per currency (a currency not listed: the currency's own maximum). */
  @ApiProperty({ type: 'object', additionalProperties: { type: 'string' }, example: { BTC: '10.00000000' } })
  max_amount: Record<string, string>;
  /** Its circuit breaker: `open` takes no calls; `half_open` lets one probe through. */
  @ApiProperty({ enum: ['closed', 'open', 'half_open'], example: 'closed' }) state: 'closed' | 'open' | 'half_open';
  /** Draining: no new escrows; the ones it holds settle there. */
  @ApiProperty({ example: false }) draining: boolean;
  /** Calls made to it by every instance (added to the shared counter about once a second). */
  @ApiProperty({ example: '1520' }) calls: string;
  /** Calls without a definitive answer. */
  @ApiProperty({ example: '3' }) failures: string;
  /** What it holds now for this coordinator (escrowed, or decided and not yet settled), per currency, exact. */
  @ApiProperty({
    type: 'object',
    additionalProperties: { type: 'string' },
    example: { BTC: '0.25000000', AITBC: '0.00000000' },
  })
  held: Record<string, string>;
}

export class ProviderListView {
  @ApiProperty({ type: [ProviderView] }) items: ProviderView[];
}

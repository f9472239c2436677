import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { PageQuery } from '../../common/page.query';
import {
  ArrayMaxSize,
  ArrayMinSize,
  ArrayUnique,
  IsArray,
  IsIn,
  IsOptional,
  IsString,
  MaxLength,
} from 'class-validator';
import { WEBHOOK_EVENT_TYPES } from '../webhook-events';

export class CreateWebhookEndpointDto {
  /** `https`, or `http` to a public address. */
  @ApiProperty({ example: 'https://hooks.example.com/coordinator' })
  @IsString()
  @MaxLength(2000)
  url: string;

  /** Event types to receive; all of them when omitted. */
  @ApiPropertyOptional({ enum: WEBHOOK_EVENT_TYPES, isArray: true, example: ['payment.released', 'payment.refunded'] })
  @IsOptional()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(WEBHOOK_EVENT_TYPES.length)
  @ArrayUnique()
  @IsIn(WEBHOOK_EVENT_TYPES, { each: true })
  event_types?: string[];

  @ApiPropertyOptional({ example: 'settlement notifications for the billing service' })
  @IsOptional()
  @IsString()
  @MaxLength(500)
  description?: string;
}

export class ListWebhookQuery extends PageQuery {}

export class WebhookEndpointView {
  @ApiProperty({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' }) endpoint_id: string;
  @ApiProperty({ example: 'https://hooks.example.com/coordinator' }) url: string;
  @ApiProperty({ enum: WEBHOOK_EVENT_TYPES, isArray: true, example: ['payment.released', 'payment.refunded'] })
  event_types: string[];
  @ApiProperty({ nullable: true, type: String, example: 'settlement notifications for the billing service' })
  description: string | null;
  /** The client whose events it receives; null for an admin's endpoint (every event). */
  @ApiProperty({ nullable: true, type: String, example: 'acme' }) client_id: string | null;
  @ApiProperty({ example: true }) enabled: boolean;
  @ApiProperty({ nullable: true, type: String, example: null }) disabled_reason: string | null;
  @ApiProperty({ nullable: true, type: String, example: null }) failing_since: string | null;
  /** Until when the previous secret still signs after a rotation. */
  @ApiProperty({ nullable: true, type: String, example: null }) previous_secret_expires_at: string | null;
  @ApiProperty({ example: '2026-11-23T12:00:00.000Z' }) created_at: string;
}

/** Creation and rotation answers: the only times the secret is shown. */
export class WebhookEndpointWithSecretView extends WebhookEndpointView {
  @ApiProperty({ example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw1rrc9QZ0Q1g=' }) secret: string;
}

export class WebhookEndpointListView {
  @ApiProperty({ type: [WebhookEndpointView] }) items: WebhookEndpointView[];
  @ApiProperty({ nullable: true, type: String, example: null }) next_cursor: string | null;
}

export class WebhookAttemptView {
  @ApiProperty({ example: 1 }) attempt: number;
  @ApiProperty({ nullable: true, type: Number, example: 503 }) status_code: number | null;
  @ApiProperty({ nullable: true, type: String, example: 'answered 503' }) error: string | null;
  @ApiProperty({ example: 41 }) duration_ms: number;
  @ApiProperty({ example: '2026-11-23T12:00:00.000Z' }) at: string;
}

export class WebhookDeliveryView {
  @ApiProperty({ example: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5d' }) delivery_id: string;
  /** The `webhook-id` header of every attempt. */
  @ApiProperty({ example: '2f1e8d7a-6b5c-4c1e-9d2a-0193a5b07c1e' }) event_id: string;
  @ApiProperty({ example: 'payment.released' }) type: string;
  @ApiProperty({ enum: ['pending', 'delivered', 'failed'], example: 'pending' }) status: string;
  /** Attempts made so far. */
  @ApiProperty({ example: 2 }) attempt: number;
  @ApiProperty({ nullable: true, type: Number, example: 503 }) status_code: number | null;
  @ApiProperty({ nullable: true, type: String, example: 'answered 503' }) error: string | null;
  /** Time of the last attempt. */
  @ApiProperty({ nullable: true, type: String, example: '2026-11-23T12:00:05.000Z' }) attempted_at: string | null;
  @ApiProperty({ nullable: true, type: String, example: '2026-11-23T12:05:05.000Z' }) next_attempt_at: string | null;
  @ApiProperty({ nullable: true, type: String, example: null }) delivered_at: string | null;
  @ApiProperty({ example: '2026-11-23T12:00:00.000Z' }) created_at: string;
  /** The latest attempts, newest first. */
  @ApiProperty({ type: [WebhookAttemptView] }) attempts: WebhookAttemptView[];
}

export class WebhookDeliveryListView {
  @ApiProperty({ type: [WebhookDeliveryView] }) items: WebhookDeliveryView[];
  @ApiProperty({ nullable: true, type: String, example: null }) next_cursor: string | null;
}

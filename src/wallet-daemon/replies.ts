import { FastifyReply, FastifyRequest } from 'fastify';
import { WalletResponse } from './wallet-service';

/** Requests whose answer fault injection decided to lose after doing the work. */
export type DroppedAnswers = WeakSet<FastifyRequest>;

/** Closes the connection without answering, as if the network lost the response. */
export function dropAnswer(reply: FastifyReply): FastifyReply {
  reply.log.warn('fault injection: dropping the answer after the work was done');
  reply.hijack();
  reply.raw.destroy();
  return reply;
}

/** Sends a route's answer, unless fault injection drops it. */
export function sendAnswer(
  droppedAnswers: DroppedAnswers,
  request: FastifyRequest,
  reply: FastifyReply,
  response: WalletResponse,
): FastifyReply {
  if (droppedAnswers.has(request)) return dropAnswer(reply);
  if (response.replayed) reply.header('Idempotent-Replayed', 'true');
  return reply.code(response.statusCode).send(response.body);
}

import { validationError } from '../common/errors';

/** Opaque list cursors: the last id of the previous page, base64url-encoded. */
export const encodeCursor = (id: string) => Buffer.from(id, 'utf8').toString('base64url');

export function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) {
    throw validationError('cursor is not valid', { fields: { cursor: ['not a cursor from a previous page'] } });
  }
  return id;
}

/** Where a CSV byte stream is between chunks: inside a quoted field or not. */
export interface CsvLineState {
  quoted: boolean;
}

const CRLF = Buffer.from('\r\n');

/**
 * COPY's CSV lines end in LF; the export's (RFC 4180) in CRLF. Returns the chunk as
 * parts (views of it, no copy) with a CR before every LF outside a quoted field (a line
 * break inside a quoted reason stays as it was). The quote state is carried across
 * chunks in `state`: each `"` toggles it, so a doubled quote inside a field toggles twice.
 */
export function crlfParts(chunk: Buffer, state: CsvLineState): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  let i = 0;
  // Next quote and next LF at or after i; -1: none left in this chunk.
  let quote = chunk.indexOf(0x22, 0);
  let lf = chunk.indexOf(0x0a, 0);
  while (i < chunk.length) {
    if (quote !== -1 && quote < i) quote = chunk.indexOf(0x22, i);
    if (lf !== -1 && lf < i) lf = chunk.indexOf(0x0a, i);
    if (state.quoted) {
      if (quote === -1) break;
      state.quoted = false;
      i = quote + 1;
    } else if (lf !== -1 && (quote === -1 || lf < quote)) {
      parts.push(chunk.subarray(start, lf), CRLF);
      start = i = lf + 1;
    } else if (quote !== -1) {
      state.quoted = true;
      i = quote + 1;
    } else break;
  }
  if (start < chunk.length) parts.push(chunk.subarray(start));
  return parts;
}

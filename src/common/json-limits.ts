/**
 * Shape limits of a JSON request body, checked on the raw text before it is parsed.
 * Everything after parsing that walks a body (class-transformer, the payload rules,
 * idempotency hashing) is recursive, so a deep enough body would overflow the stack
 * there; a wide one only costs time, in proportion to its entries.
 */
export interface JsonShapeLimits {
  /** Deepest nesting of objects and arrays; the body object itself is level 1. */
  maxDepth: number;
  /** Most object members plus array elements in the whole body, at every level. */
  maxEntries: number;
}

export type JsonShapeProblem =
  { limit: 'depth'; max: number } | { limit: 'entries'; max: number } | { limit: 'unstorable' };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

const U = 0x75;
/** The code unit of the four hex digits at `at` (NaN when they are not hex: the parser rejects those). */
const hexUnit = (text: string, at: number) =>
  /^[0-9a-fA-F]{4}$/.test(text.slice(at, at + 4)) ? parseInt(text.slice(at, at + 4), 16) : NaN;
const isHighSurrogate = (unit: number) => unit >= 0xd800 && unit <= 0xdbff;
const isLowSurrogate = (unit: number) => unit >= 0xdc00 && unit <= 0xdfff;

const isWhitespace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * One linear pass over `text`, never recursive, stopping at the first limit crossed.
 * Only brackets, colons and commas outside strings are looked at; malformed JSON is
 * left to the parser, which runs afterwards and rejects it.
 */
export function jsonShapeProblem(text: string, limits: JsonShapeLimits): JsonShapeProblem | undefined {
  // Kind of each open container (1 = array); never deeper than maxDepth + 1.
  const arrays = new Uint8Array(limits.maxDepth + 2);
  let depth = 0;
  let entries = 0;
  let inString = false;
  // Just after `[`: the next significant character is the array's first element, or `]`.
  let arrayJustOpened = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) {
        // PostgreSQL's jsonb and text cannot hold U+0000 or an unpaired surrogate: refused
        // here, not as a 500 at INSERT (nor as one item's text failing a whole set statement).
        if (text.charCodeAt(i + 1) !== U) {
          i++;
          continue;
        }
        const unit = hexUnit(text, i + 2);
        if (unit === 0 || isLowSurrogate(unit)) return { limit: 'unstorable' };
        if (isHighSurrogate(unit)) {
          if (
            text.charCodeAt(i + 6) !== BACKSLASH ||
            text.charCodeAt(i + 7) !== U ||
            !isLowSurrogate(hexUnit(text, i + 8))
          )
            return { limit: 'unstorable' };
          i += 11;
        } else {
          i += 5;
        }
      } else if (c === QUOTE) inString = false;
      continue;
    }
    if (isWhitespace(c)) continue;
    if (arrayJustOpened) {
      arrayJustOpened = false;
      if (c !== CLOSE_ARRAY) entries++;
    }
    switch (c) {
      case QUOTE:
        inString = true;
        break;
      case OPEN_OBJECT:
      case OPEN_ARRAY:
        depth++;
        if (depth > limits.maxDepth) return { limit: 'depth', max: limits.maxDepth };
        arrays[depth] = c === OPEN_ARRAY ? 1 : 0;
        arrayJustOpened = c === OPEN_ARRAY;
        break;
      case CLOSE_OBJECT:
      case CLOSE_ARRAY:
        if (depth > 0) depth--;
        break;
      // A member has one colon; each further array element follows a comma.
      case COLON:
        entries++;
        break;
      case COMMA:
        if (arrays[depth] === 1) entries++;
        break;
    }
    if (entries > limits.maxEntries) return { limit: 'entries', max: limits.maxEntries };
  }
  return undefined;
}

/** The problem in words, for a 400's message. */
export function describeJsonShapeProblem(problem: JsonShapeProblem): string {
  if (problem.limit === 'unstorable')
    return 'must not contain U+0000 (\\u0000) or an unpaired surrogate (\\uD800–\\uDFFF) in any string';
  return problem.limit === 'depth'
    ? `must be nested at most ${problem.max} levels deep`
    : `must have at most ${problem.max} object members and array elements in all`;
}

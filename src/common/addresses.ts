import { bech32, bech32m, createBase58check } from '@scure/base';
import { sha256 } from '@noble/hashes/sha2.js';

/** How a currency writes its addresses. */
export type AddressFormat = 'btc' | 'aitbc';
export type BtcNetwork = 'mainnet' | 'testnet' | 'regtest';

export const BTC_NETWORKS: readonly BtcNetwork[] = ['mainnet', 'testnet', 'regtest'];

/** Longest address string we look at (BIP173 caps bech32 strings at 90). */
export const MAX_ADDRESS_LENGTH = 90;

const BTC_BECH32_HRP: Record<BtcNetwork, string> = {
  mainnet: 'bc',
  testnet: 'tb',
  regtest: 'bcrt',
};

/** Base58check version bytes: P2PKH and P2SH. Regtest shares testnet's. */
const BTC_BASE58_VERSIONS: Record<BtcNetwork, { p2pkh: number; p2sh: number }> = {
  mainnet: { p2pkh: 0x00, p2sh: 0x05 },
  testnet: { p2pkh: 0x6f, p2sh: 0xc4 },
  regtest: { p2pkh: 0x6f, p2sh: 0xc4 },
};

export const AITBC_HRP = 'aitbc';

const base58check = createBase58check(sha256);

export function isBtcNetwork(value: string): value is BtcNetwork {
  return (BTC_NETWORKS as readonly string[]).includes(value);
}

/**
 * True when `address` is a well-formed, checksummed address of `format` on `network`
 * (network is ignored for AITBC). Never throws.
 */
export function isValidAddress(address: string, format: AddressFormat, network: string): boolean {
  return normalizeAddress(address, format, network) !== null;
}

/**
 * The canonical spelling of a valid address (bech32 lower-cased, base58 unchanged),
 * or null when it is not valid. Use it as the ledger key so `BC1Q…` and `bc1q…`
 * are one account.
 */
export function normalizeAddress(address: unknown, format: AddressFormat, network: string): string | null {
  if (typeof address !== 'string' || address.length === 0 || address.length > MAX_ADDRESS_LENGTH) return null;
  try {
    if (format === 'aitbc') return isAitbcAddress(address) ? address.toLowerCase() : null;
    if (format !== 'btc' || !isBtcNetwork(network)) return null;
    if (isSegwitAddress(address, BTC_BECH32_HRP[network])) return address.toLowerCase();
    return isBase58Address(address, network) ? address : null;
  } catch {
    // Garbage input: the codecs throw on anything malformed.
    return null;
  }
}

/** Native segwit v0 pay-to-witness-pubkey-hash address for a 20-byte HASH160. */
export function p2wpkhAddress(pubkeyHash160: Uint8Array, format: AddressFormat, network: string): string {
  if (pubkeyHash160.length !== 20) throw new Error('P2WPKH needs a 20-byte pubkey hash');
  const hrp = bech32Hrp(format, network);
  return bech32.encode(hrp, [0, ...bech32.toWords(pubkeyHash160)]);
}

function bech32Hrp(format: AddressFormat, network: string): string {
  if (format === 'aitbc') return AITBC_HRP;
  if (format === 'btc' && isBtcNetwork(network)) return BTC_BECH32_HRP[network];
  throw new Error(`unknown address format/network: ${format}/${network}`);
}

interface WitnessProgram {
  version: number;
  program: Uint8Array;
}

/**
 * BIP173/BIP350 segwit decoding: version 0 must use the bech32 checksum, versions
 * 1..16 the bech32m one; returns null on any mismatch.
 */
function decodeWitnessProgram(address: string, expectedHrp: string): WitnessProgram | null {
  const asBech32 = bech32.decodeUnsafe(address, MAX_ADDRESS_LENGTH);
  const asBech32m = asBech32 ? undefined : bech32m.decodeUnsafe(address, MAX_ADDRESS_LENGTH);
  const decoded = asBech32 ?? asBech32m;
  if (!decoded || decoded.prefix !== expectedHrp || decoded.words.length === 0) return null;
  const version = decoded.words[0];
  if (version > 16) return null;
  // The checksum variant is bound to the witness version (BIP350).
  if ((version === 0) !== Boolean(asBech32)) return null;
  // fromWordsUnsafe rejects excess or non-zero padding bits.
  const program = bech32.fromWordsUnsafe(decoded.words.slice(1));
  if (!program) return null;
  return { version, program };
}

function isSegwitAddress(address: string, hrp: string): boolean {
  const witness = decodeWitnessProgram(address, hrp);
  if (!witness) return false;
  const { version, program } = witness;
  if (program.length < 2 || program.length > 40) return false;
  return version !== 0 || program.length === 20 || program.length === 32;
}

function isAitbcAddress(address: string): boolean {
  const witness = decodeWitnessProgram(address, AITBC_HRP);
  return witness !== null && witness.version === 0 && witness.program.length === 20;
}

function isBase58Address(address: string, network: BtcNetwork): boolean {
  // A version byte + 20-byte hash is 25..34 base58 characters; bound the work first.
  if (address.length < 25 || address.length > 35) return false;
  const payload = base58check.decode(address);
  if (payload.length !== 21) return false;
  const { p2pkh, p2sh } = BTC_BASE58_VERSIONS[network];
  return payload[0] === p2pkh || payload[0] === p2sh;
}

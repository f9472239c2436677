import { HDKey } from '@scure/bip32';
import { ripemd160 } from '@noble/hashes/legacy.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { p2wpkhAddress } from '../common/addresses';
import { Currency } from './currencies';

/** Highest non-hardened BIP32 child index. */
export const MAX_ADDRESS_INDEX = 0x7fffffff;

/** BIP84 (native segwit) external chain of account 0: `m/84'/<coin>'/0'/0`. */
export function externalChainPath(currency: Currency): string {
  return `m/84'/${currency.coinType}'/0'/0`;
}

/** HASH160 = RIPEMD160(SHA256(x)), the pubkey hash inside P2WPKH addresses. */
export function hash160(bytes: Uint8Array): Uint8Array {
  return ripemd160(sha256(bytes));
}

/**
 * Deterministic receive addresses from one master seed. The daemon never signs
 * anything, so it keeps only the derived chain nodes, not the keys' uses.
 */
export class HdWallet {
  private readonly master: HDKey;
  /** Chain nodes by derivation path. */
  private readonly chains = new Map<string, HDKey>();

  constructor(seed: Uint8Array) {
    this.master = HDKey.fromMasterSeed(seed);
  }

  /** Address number `index` of the currency's chain: `m/84'/<coin>'/0'/0/<index>`. */
  addressAt(currency: Currency, index: number): string {
    if (!Number.isInteger(index) || index < 0 || index > MAX_ADDRESS_INDEX) {
      throw new RangeError(`address index out of range: ${index}`);
    }
    const publicKey = this.chainOf(currency).deriveChild(index).publicKey;
    if (!publicKey) throw new Error('derived key has no public key');
    return p2wpkhAddress(hash160(publicKey), currency.format, currency.network);
  }

  // The hardened part of the path is the expensive one; derive it once per currency.
  private chainOf(currency: Currency): HDKey {
    const path = externalChainPath(currency);
    let chain = this.chains.get(path);
    if (!chain) {
      chain = this.master.derive(path);
      this.chains.set(path, chain);
    }
    return chain;
  }
}

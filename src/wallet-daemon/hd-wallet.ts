import { createHmac } from 'node:crypto';
import { HDKey } from '@scure/bip32';
import * as secp256k1 from 'tiny-secp256k1';
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

/** A chain node's parts that its non-hardened children are derived from. */
interface ChainNode {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
  chainCode: Uint8Array;
}

/**
 * BIP32 CKDpriv for a non-hardened index, returning the child's compressed public key.
 * Written out (HMAC-SHA512 from node:crypto, the curve from libsecp256k1 in WebAssembly)
 * instead of `HDKey.deriveChild`, whose pure-JS curve arithmetic cost about 0.5 ms per
 * escrow, half of the daemon's CPU per paid job; this costs about 0.13 ms. The spec
 * checks it against `@scure/bip32` index by index.
 */
function childPublicKey(node: ChainNode, index: number): Uint8Array {
  const data = Buffer.alloc(37);
  data.set(node.publicKey, 0);
  data.writeUInt32BE(index, 33);
  const I = createHmac('sha512', node.chainCode).update(data).digest();
  // BIP32: an IL ≥ n or a zero child key makes the index invalid (odds about 2^-127).
  let child: Uint8Array | null;
  try {
    child = secp256k1.privateAdd(node.privateKey, I.subarray(0, 32));
  } catch {
    child = null;
  }
  if (!child) throw new Error(`BIP32 child ${index} is invalid; use the next index`);
  const publicKey = secp256k1.pointFromScalar(child, true);
  if (!publicKey) throw new Error('derived key has no public key');
  return publicKey;
}

/**
 * Deterministic receive addresses from one master seed. The daemon never signs
 * anything, so it keeps only the derived chain nodes, not the keys' uses.
 */
export class HdWallet {
  private readonly master: HDKey;
  /** Chain nodes by derivation path. */
  private readonly chains = new Map<string, ChainNode>();

  constructor(seed: Uint8Array) {
    this.master = HDKey.fromMasterSeed(seed);
  }

  /** Address number `index` of the currency's chain: `m/84'/<coin>'/0'/0/<index>`. */
  addressAt(currency: Currency, index: number): string {
    if (!Number.isInteger(index) || index < 0 || index > MAX_ADDRESS_INDEX) {
      throw new RangeError(`address index out of range: ${index}`);
    }
    const publicKey = childPublicKey(this.chainOf(currency), index);
    return p2wpkhAddress(hash160(publicKey), currency.format, currency.network);
  }

  // The hardened part of the path is the expensive one; derive it once per currency.
  private chainOf(currency: Currency): ChainNode {
    const path = externalChainPath(currency);
    let chain = this.chains.get(path);
    if (!chain) {
      const { privateKey, publicKey, chainCode } = this.master.derive(path);
      if (!privateKey || !publicKey || !chainCode) throw new Error(`chain ${path} has no private key`);
      chain = { privateKey, publicKey, chainCode };
      this.chains.set(path, chain);
    }
    return chain;
  }
}

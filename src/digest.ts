/**
 * Hashing and verification of content by digest. Every byte that enters storage is
 * checked here, so adapters share one implementation instead of each hashing its own way.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { OciError } from './errors.js';
import { parseDigest, type Digest, type DigestAlgorithm } from './reference.js';

export function digestOf(data: Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/**
 * Counts content against the size it should have: fails as soon as it runs over, so that the
 * excess never reaches a file, and checks the exact size at the end.
 */
export class SizeCheck {
  private bytes = 0;

  constructor(readonly expectedSize: number | undefined) {}

  get size(): number {
    return this.bytes;
  }

  update(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    if (this.expectedSize !== undefined && this.bytes > this.expectedSize) {
      throw new OciError('SIZE_INVALID', `content is longer than the expected ${this.expectedSize} bytes`);
    }
  }

  /** Throws SIZE_INVALID; returns the size on success. */
  verify(): number {
    if (this.expectedSize !== undefined && this.bytes !== this.expectedSize) {
      throw new OciError('SIZE_INVALID', `content has ${this.bytes} bytes, expected ${this.expectedSize}`);
    }
    return this.bytes;
  }
}

/** Throws DIGEST_INVALID unless `hex`, a hash by `expected`'s algorithm, is `expected`. */
export function checkDigest(expected: Digest, hex: string): void {
  const actual = `${expected.algorithm}:${hex}`;
  if (actual !== expected.value) {
    throw new OciError('DIGEST_INVALID', `content digest ${actual} does not match ${expected.value}`);
  }
}

/** Incremental hasher that knows what it should end up as. */
export class DigestVerifier {
  readonly expected: Digest;
  private readonly sizeCheck: SizeCheck;
  private readonly hash: Hash;

  constructor(expected: string | Digest, expectedSize?: number) {
    this.expected = typeof expected === 'string' ? parseDigest(expected) : expected;
    this.sizeCheck = new SizeCheck(expectedSize);
    this.hash = createHash(this.expected.algorithm);
  }

  get expectedSize(): number | undefined {
    return this.sizeCheck.expectedSize;
  }

  get size(): number {
    return this.sizeCheck.size;
  }

  update(chunk: Uint8Array): void {
    this.sizeCheck.update(chunk);
    this.hash.update(chunk);
  }

  /** Throws SIZE_INVALID or DIGEST_INVALID; returns the size on success. Call once. */
  verify(): number {
    const size = this.sizeCheck.verify();
    checkDigest(this.expected, this.hash.digest('hex'));
    return size;
  }
}

/**
 * A pass-through stream that fails instead of ending when the bytes do not match.
 * Adapters put it in front of their write so that a mismatch aborts the write
 * before anything becomes visible.
 */
export function verifyingStream(expected: string | Digest, expectedSize?: number): Transform & { verifier: DigestVerifier } {
  const verifier = new DigestVerifier(expected, expectedSize);
  const t = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      try {
        verifier.update(chunk);
        cb(null, chunk);
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      try {
        verifier.verify();
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
  return Object.assign(t, { verifier });
}

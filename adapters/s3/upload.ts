/**
 * One blob's way into S3. Bytes are gathered into parts and sent as a multipart upload to the
 * blob's final key; S3 shows nothing under a key until its multipart upload is completed, so
 * the parts need no temporary key and no copy. A blob smaller than one part goes up as one
 * PutObject instead. Either way the object appears only in `complete()`, which the caller
 * calls once the digest has verified; `abort()` removes whatever was sent.
 *
 * Why not @aws-sdk/lib-storage's `Upload`: its `done()` rejects on abort before the
 * multipart upload has been aborted (the cleanup runs on behind the rejection), it does not
 * stop parts in flight, and its part size is fixed up front, which caps a body of unknown
 * length at 10 000 × 5 MiB. The store's contract needs cleanup finished before `put` rejects.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';

const MAX_PARTS = 10_000;
/** Parts per size step when the length is unknown: the part size doubles every this many parts. */
const PARTS_PER_STEP = 1_000;
const CONTENT_TYPE = 'application/octet-stream';

export interface UploadTarget {
  client: S3Client;
  bucket: string;
  key: string;
}

export interface UploadOptions {
  partSize: number;
  /** Parts in flight at once; each holds one part in memory. */
  concurrency: number;
  /** The declared size, when known: parts grow so that it fits in 10 000 of them. */
  expectedSize?: number;
  /** Called once, with the first failure of a request sent in the background. */
  onError(err: Error): void;
}

export class BlobUpload {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private nextPart = 1;
  private uploadId: Promise<string> | undefined;
  private readonly parts: CompletedPart[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly stop = new AbortController();
  private failure: Error | undefined;
  private readonly basePartSize: number;

  constructor(
    private readonly target: UploadTarget,
    private readonly options: UploadOptions,
  ) {
    const { partSize, expectedSize } = options;
    // Leave head room under the 10 000-part ceiling in case the declared size is short.
    this.basePartSize = Math.max(partSize, expectedSize ? Math.ceil(expectedSize / (MAX_PARTS - PARTS_PER_STEP)) : 0);
  }

  /** Takes one chunk; resolves when the next may come (no more than `concurrency` parts in flight). */
  async write(chunk: Buffer): Promise<void> {
    this.check();
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    if (this.bufferedBytes < this.partThreshold()) return;
    this.sendPart(this.takeBuffer());
    while (this.inflight.size >= this.options.concurrency) await Promise.race(this.inflight);
    this.check();
  }

  /** Makes the object visible: the last part and CompleteMultipartUpload, or one PutObject for a small blob. */
  async complete(): Promise<void> {
    this.check();
    const { client, bucket, key } = this.target;
    const last = this.takeBuffer();
    if (this.nextPart === 1) {
      await client.send(
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: last, ContentLength: last.length, ContentType: CONTENT_TYPE }),
        { abortSignal: this.stop.signal },
      );
      return;
    }
    if (last.length > 0) this.sendPart(last);
    await Promise.all(this.inflight);
    this.check();
    const parts = [...this.parts].sort((a, b) => a.PartNumber! - b.PartNumber!);
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: await this.uploadId!,
        MultipartUpload: { Parts: parts },
      }),
    );
  }

  /**
   * Stops the parts in flight and aborts the multipart upload. Rejects when S3 could not be
   * told (unreachable): the upload is then still there, and the caller retries later.
   */
  async abort(): Promise<void> {
    this.failure ??= new Error('upload aborted');
    this.stop.abort(this.failure);
    await Promise.all(this.inflight);
    const id = await this.startedId();
    if (id) await abortUpload(this.target, id);
  }

  /** The upload id once creation settled; undefined when none was created (or creation failed). */
  async startedId(): Promise<string | undefined> {
    try {
      return await this.uploadId;
    } catch {
      // A creation that failed may still have happened server-side: recover() finds those.
      return undefined;
    }
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private partThreshold(): number {
    return this.basePartSize * 2 ** Math.floor((this.nextPart - 1) / PARTS_PER_STEP);
  }

  private takeBuffer(): Buffer {
    const body = Buffer.concat(this.buffered, this.bufferedBytes);
    this.buffered = [];
    this.bufferedBytes = 0;
    return body;
  }

  private start(): Promise<string> {
    const { client, bucket, key } = this.target;
    // Not cancellable on purpose: an upload created after we stopped listening would dangle.
    this.uploadId ??= client
      .send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: CONTENT_TYPE }))
      .then(({ UploadId }) => {
        if (!UploadId) throw new Error(`S3 returned no UploadId for ${key}`);
        return UploadId;
      });
    return this.uploadId;
  }

  private sendPart(body: Buffer): void {
    const partNumber = this.nextPart++;
    if (partNumber > MAX_PARTS) throw new Error(`more than ${MAX_PARTS} parts for ${this.target.key}`);
    const { client, bucket, key } = this.target;
    const task = (async () => {
      const uploadId = await this.start();
      this.check();
      const { ETag } = await client.send(
        new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length }),
        { abortSignal: this.stop.signal },
      );
      if (!ETag) throw new Error(`S3 returned no ETag for part ${partNumber} of ${key}`);
      this.parts.push({ PartNumber: partNumber, ETag });
    })().catch((err: unknown) => {
      if (this.failure) return;
      this.failure = err instanceof Error ? err : new Error(String(err));
      this.options.onError(this.failure);
    });
    this.inflight.add(task);
    void task.finally(() => this.inflight.delete(task));
  }
}

export async function abortUpload({ client, bucket, key }: UploadTarget, uploadId: string): Promise<void> {
  try {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
  } catch (err) {
    // Already gone (aborted by someone else, or by an earlier try whose answer was lost).
    if ((err as { name?: string }).name !== 'NoSuchUpload') throw err;
  }
}

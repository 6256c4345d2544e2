/**
 * A real S3 API for tests: s3rver (npm) in this process, on 127.0.0.1 and a free port, over a
 * fresh temp dir, with one bucket. It can be stopped (every connection cut: S3 unreachable)
 * and started again on the same port over the same data.
 *
 * s3rver 3.7 implements multipart uploads but answers AbortMultipartUpload with 405 and
 * ListMultipartUploads with 501. Both are filled in here, in front of s3rver, on s3rver's own
 * on-disk layout (`<bucket>/._S3rver_uploads/<uploadId>/`); `uploadsOnDisk()` counts that
 * directory directly, so a test does not have to trust the shim to see a dangling upload.
 *
 * s3rver 3.7 also writes objects in place and answers PutObject, UploadPart and
 * CompleteMultipartUpload before the file is on disk (it resolves on its hashing Transform's
 * 'finish', not the file stream's): a read during or right after a write sees a short object,
 * where S3 shows the old object or the whole new one. Its store's two writers are replaced
 * here by ones that write a temporary file, wait for it, and rename it into place.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { freePort } from './registry.js';

/** Frozen: the AWS SDK marks a credentials object it is given, so a store must hand it a copy. */
export const S3RVER_CREDENTIALS = Object.freeze({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });

export interface S3Request {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
}

export interface RunningS3 {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly port: number;
  readonly bucket: string;
  /** s3rver's data directory. */
  readonly dir: string;
  /** Sees every request before s3rver does; for tests that act at a given moment. */
  onRequest: ((req: S3Request) => void) | undefined;
  /** Whether the missing multipart calls are filled in (default true); false shows s3rver as it is. */
  shim: boolean;
  /** A client for looking at the bucket from the outside; destroyed by `destroy()`. */
  readonly client: S3Client;
  /** Multipart uploads s3rver still holds on disk for keys under `prefix`: what no API can hide. */
  uploadsOnDisk(prefix?: string): Promise<number>;
  /** Stops listening and cuts every open connection. */
  stop(): Promise<void>;
  /** Starts again on the same port, over the same data. */
  start(): Promise<void>;
  /** Stops it and removes its data directory. */
  destroy(): Promise<void>;
}

interface StoredObject {
  bucket: string;
  key: string;
  content: Readable | Buffer;
  metadata: unknown;
}

interface FilesystemStore {
  getResourcePath(bucket: string, key: string | undefined, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
  putObject(object: StoredObject): Promise<{ size: number; md5: string }>;
  putPart(bucket: string, uploadId: string, partNumber: number, content: Readable): Promise<{ size: number; md5: string }>;
}

/** Writes `content` to `path` atomically and resolves once the file is complete, with its size and MD5. */
async function writeFileFully(path: string, content: Readable | Buffer): Promise<{ size: number; md5: string }> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomUUID()}.writing`;
  const md5 = createHash('md5');
  let size = 0;
  const source = Buffer.isBuffer(content) ? Readable.from([content]) : content;
  await pipeline(
    source,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        md5.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(tmp),
  ).catch(async (err: unknown) => {
    await rm(tmp, { force: true });
    throw err;
  });
  await rename(tmp, path);
  return { size, md5: md5.digest('hex') };
}

let patched = false;
function patchStore(): void {
  if (patched) return;
  patched = true;
  const store = (createRequire(import.meta.url)('s3rver/lib/stores/filesystem.js') as { prototype: FilesystemStore }).prototype;
  store.putObject = async function putObject(this: FilesystemStore, object) {
    const written = await writeFileFully(this.getResourcePath(object.bucket, object.key, 'object'), object.content);
    await this.putMetadata(object.bucket, object.key, object.metadata, written.md5);
    return written;
  };
  store.putPart = async function putPart(this: FilesystemStore, bucket, uploadId, partNumber, content) {
    const path = join(this.getResourcePath(bucket, undefined, 'uploads'), uploadId, String(partNumber));
    const written = await writeFileFully(path, content);
    await writeFile(`${path}.md5`, written.md5);
    return written;
  };
}

export async function startS3({ bucket = 'mirror' }: { bucket?: string } = {}): Promise<RunningS3> {
  patchStore();
  const dir = await mkdtemp(join(tmpdir(), 'oci-s3rver-'));
  const uploadsDir = join(dir, bucket, '._S3rver_uploads');
  let server: S3rver | undefined;
  // Fixed for the life of the helper, so that a restart comes back where clients expect it.
  const port = await freePort();

  const endpoint = `http://127.0.0.1:${port}`;
  const running: RunningS3 = {
    endpoint,
    port,
    bucket,
    dir,
    onRequest: undefined,
    shim: true,
    client: new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      // A copy: the SDK marks the credentials object it is given (a `$source` key).
      credentials: { ...S3RVER_CREDENTIALS },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    }),
    uploadsOnDisk: async (prefix = '') => (await uploadsUnder(uploadsDir, prefix)).length,
    async start() {
      const s3 = new S3rver({ address: '127.0.0.1', port, silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
      s3.middleware.unshift(async (ctx, next) => {
        running.onRequest?.({ method: ctx.method, path: ctx.path, query: ctx.query });
        if (!running.shim) return next();
        if (ctx.method === 'DELETE' && typeof ctx.query.uploadId === 'string') return abortUpload(ctx, uploadsDir, ctx.query.uploadId);
        if (ctx.method === 'GET' && /^\/[^/]+\/?$/.test(ctx.path) && 'uploads' in ctx.query) return listUploads(ctx, uploadsDir, bucket);
        return next();
      });
      await s3.run();
      server = s3;
    },
    async stop() {
      const s3 = server;
      server = undefined;
      if (!s3?.httpServer) return;
      const closed = s3.close();
      s3.httpServer.closeAllConnections();
      await closed;
    },
    async destroy() {
      running.client.destroy();
      await running.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await running.start();
  } catch (err) {
    running.client.destroy();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return running;
}

interface ShimContext {
  status: number;
  body: unknown;
  type: string;
}

/** AbortMultipartUpload: removes the upload's directory (parts and all). */
async function abortUpload(ctx: ShimContext, uploadsDir: string, uploadId: string): Promise<void> {
  if (!/^[a-f0-9]+$/.test(uploadId) || !(await exists(join(uploadsDir, uploadId)))) {
    return s3Error(ctx, 404, 'NoSuchUpload', 'The specified upload does not exist.');
  }
  await rm(join(uploadsDir, uploadId), { recursive: true, force: true });
  ctx.status = 204;
}

/** ListMultipartUploads: every upload in one page (tests never hold a thousand). */
async function listUploads(ctx: ShimContext & S3Request, uploadsDir: string, bucket: string): Promise<void> {
  const prefix = typeof ctx.query.prefix === 'string' ? ctx.query.prefix : '';
  const uploads: string[] = [];
  for (const { id, key, initiated } of await uploadsUnder(uploadsDir, prefix)) {
    uploads.push(`<Upload><Key>${xml(key)}</Key><UploadId>${id}</UploadId><Initiated>${initiated.toISOString()}</Initiated></Upload>`);
  }
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${xml(bucket)}</Bucket>` +
    `<Prefix>${xml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${uploads.join('')}` +
    '</ListMultipartUploadsResult>';
}

/** The uploads in s3rver's upload directory whose key starts with `prefix`. */
async function uploadsUnder(uploadsDir: string, prefix: string): Promise<Array<{ id: string; key: string; initiated: Date }>> {
  const found = [];
  for (const id of await readdir(uploadsDir).catch(() => [])) {
    // A directory without its key file is an upload too (half created or half removed): count it.
    const key = await readFile(join(uploadsDir, id, 'key'), 'utf8').catch(() => '');
    if (key !== '' && !key.startsWith(prefix)) continue;
    const initiated = await stat(join(uploadsDir, id)).then((s) => s.mtime, () => new Date(0));
    found.push({ id, key, initiated });
  }
  return found;
}

function s3Error(ctx: ShimContext, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xml(message)}</Message></Error>`;
}

function xml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

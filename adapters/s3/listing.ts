/** The store as a whole: every committed blob, and the uploads a killed process left behind. */
import { ListMultipartUploadsCommand, paginateListObjectsV2 } from '@aws-sdk/client-s3';
import { parseDigest } from '../../src/reference.js';
import { uploadTarget, type S3Blobs } from './objects.js';
import { abortUpload } from './upload.js';

export async function* listBlobs({ client, bucket, blobsPrefix }: S3Blobs): AsyncGenerator<{ digest: string; size: number }> {
  for await (const page of paginateListObjectsV2({ client }, { Bucket: bucket, Prefix: blobsPrefix })) {
    for (const object of page.Contents ?? []) {
      // Skip whatever is not a blob we could have written.
      const digest = digestAt(object.Key?.slice(blobsPrefix.length));
      if (digest) yield { digest, size: object.Size ?? 0 };
    }
  }
}

/** Aborts the multipart uploads under the store's keys that started at least `olderThan` ms ago. */
export async function abortStaleUploads(blobs: S3Blobs, olderThan: number): Promise<void> {
  const { client, bucket, blobsPrefix } = blobs;
  const cutoff = Date.now() - olderThan;
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    let page;
    try {
      page = await client.send(
        new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: blobsPrefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      );
    } catch (err) {
      // A store that cannot list uploads (s3rver, some gateways) leaves them to its own lifecycle rules.
      if (isUnsupported(err)) return;
      throw err;
    }
    for (const { Key, UploadId, Initiated } of page.Uploads ?? []) {
      if (!Key || !UploadId || (Initiated && Initiated.getTime() > cutoff)) continue;
      await abortUpload(uploadTarget(blobs, Key), UploadId);
    }
    if (!page.IsTruncated) return;
    keyMarker = page.NextKeyMarker;
    uploadIdMarker = page.NextUploadIdMarker;
  }
}

/** The digest that `<alg>/<hex>` (a key below `blobs/`) stands for, if it is one. */
function digestAt(path: string | undefined): string | undefined {
  const slash = path?.indexOf('/') ?? -1;
  if (!path || slash < 0) return undefined;
  const value = `${path.slice(0, slash)}:${path.slice(slash + 1)}`;
  try {
    return parseDigest(value).value;
  } catch {
    return undefined;
  }
}

function isUnsupported(err: unknown): boolean {
  const { name, $metadata } = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return name === 'NotImplemented' || name === 'MethodNotAllowed' || $metadata?.httpStatusCode === 501;
}

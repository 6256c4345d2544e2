/**
 * Fixture images, built in code and pushed into a registry over its HTTP API, so that the
 * repository holds no binary fixtures. Layers are real tars (gzip-compressed when the media
 * type says so) with configs whose diff_ids match; content is deterministic, so a fixture
 * has the same digests on every run.
 *
 * Each push returns a `Fixture`: everything a test needs to check a pull.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack, type Header as TarHeader } from 'tar-stream';
import { request } from 'undici';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export type Format = 'oci' | 'docker';

const FORMATS = {
  oci: {
    manifest: MediaType.ociManifest,
    index: MediaType.ociIndex,
    config: MediaType.ociConfig,
    layer: MediaType.ociLayer,
    layerGzip: MediaType.ociLayerGzip,
  },
  docker: {
    manifest: MediaType.dockerManifest,
    index: MediaType.dockerManifestList,
    config: MediaType.dockerConfig,
    layer: MediaType.dockerLayer,
    layerGzip: MediaType.dockerLayerGzip,
  },
} as const;

export interface Platform {
  os: string;
  architecture: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** One image manifest of a fixture: the fixture itself, or one child of its index. */
export interface FixtureImage extends Descriptor {
  platform: Platform;
  config: Descriptor;
  layers: Descriptor[];
}

export interface Fixture extends Descriptor {
  /** Repository name, e.g. `e2e/tiny`. */
  name: string;
  tag: string;
  /** `name:tag` */
  ref: string;
  /** True for an OCI index or a Docker manifest list (pull with `--all` to get every child). */
  multiPlatform: boolean;
  /** The image manifests: the fixture's own, or each child of its index, in index order. */
  images: FixtureImage[];
  /** Every config and layer blob of every image, each once. */
  blobs: Descriptor[];
}

/** Where to push: a registry's base URL and headers to send with every request (e.g. Authorization). */
export interface PushTarget {
  url: string;
  headers?: Record<string, string>;
}

/** A blob's bytes: in memory, or (for big layers) a file on disk. */
export interface Content {
  digest: string;
  size: number;
  bytes?: Buffer;
  path?: string;
}

export interface Layer extends Content {
  /** Digest of the uncompressed tar, for the config's `rootfs.diff_ids`. */
  diffId: string;
  gzip: boolean;
}

export interface TarFile {
  path: string;
  content: string | Buffer;
}

const MTIME = new Date('2024-01-01T00:00:00Z');
const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const ARM64: Platform = { os: 'linux', architecture: 'arm64' };
const REQUEST_TIMEOUT_MS = 120_000;

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function content(bytes: Buffer): Content {
  return { digest: sha256(bytes), size: bytes.length, bytes };
}

/** A tar of `files` (with their parent directories), gzip-compressed unless `gzip` is false. */
export async function tarLayer(files: TarFile[], { gzip = true }: { gzip?: boolean } = {}): Promise<Layer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of p) chunks.push(chunk as Buffer);
  })();
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const d of [...dirs].sort()) p.entry({ name: `${d}/`, type: 'directory', mode: 0o755, mtime: MTIME });
  for (const f of files) p.entry({ name: f.path, mode: 0o644, mtime: MTIME }, Buffer.from(f.content));
  p.finalize();
  await collected;
  const tar = Buffer.concat(chunks);
  const diffId = sha256(tar);
  const bytes = gzip ? gzipSync(tar, { level: 6 }) : tar;
  return { ...content(bytes), diffId, gzip };
}

/** Deterministic pseudo-random bytes: AES-CTR keystream keyed by `seed`. Incompressible, ~1 GB/s. */
function keystream(seed: string): (n: number) => Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (n) => cipher.update(Buffer.alloc(n));
}

/** A small gzip layer whose content is unique to `label`. */
function smallLayer(label: string, extraBytes = 2048): Promise<Layer> {
  return tarLayer([
    { path: 'etc/fixture', content: `${label}\n` },
    { path: `opt/${label.replace(/[^a-z0-9]+/gi, '-')}.bin`, content: keystream(label)(extraBytes) },
  ]);
}

const bigLayers = new Map<string, Promise<Layer>>();

/**
 * An uncompressed tar layer holding one file of `size` pseudo-random bytes, written to
 * os.tmpdir() and reused by every test (and every worker, and later runs) that asks for the
 * same size and seed: the content is deterministic, so the file is written once, to a temp
 * name and renamed into place, and its digest is kept beside it.
 */
export function bigLayer(size = 200 * 1024 * 1024, seed = 'big'): Promise<Layer> {
  const key = `${seed}-${size}`;
  let layer = bigLayers.get(key);
  if (!layer) {
    layer = loadOrWriteBigLayer(size, seed);
    bigLayers.set(key, layer);
    layer.catch(() => bigLayers.delete(key));
  }
  return layer;
}

async function loadOrWriteBigLayer(size: number, seed: string): Promise<Layer> {
  const base = join(tmpdir(), `koa-oci-mirror-layer-v1-${seed.replace(/[^a-z0-9]+/gi, '_')}-${size}`);
  const path = `${base}.tar`;
  const metaPath = `${base}.json`;
  try {
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as { digest: string; size: number };
    if ((await stat(path)).size === meta.size) {
      return { path, digest: meta.digest, size: meta.size, diffId: meta.digest, gzip: false };
    }
  } catch {
    // not written yet (or half-written by a run that died): write it
  }
  const tmp = `${base}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const { digest, size: written } = await writeRandomTar(tmp, size, seed);
    await rename(tmp, path);
    await writeFile(`${metaPath}.${process.pid}.tmp`, JSON.stringify({ digest, size: written }));
    await rename(`${metaPath}.${process.pid}.tmp`, metaPath);
    return { path, digest, size: written, diffId: digest, gzip: false };
  } finally {
    await rm(tmp, { force: true });
  }
}

async function writeRandomTar(path: string, size: number, seed: string): Promise<{ digest: string; size: number }> {
  const p = pack();
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  let written = 0;
  const drained = (async () => {
    for await (const c of p) {
      const chunk = c as Buffer;
      hash.update(chunk);
      written += chunk.length;
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
  })();
  const header: Partial<TarHeader> & { name: string } = { name: 'data/random.bin', size, mode: 0o644, mtime: MTIME };
  const entry = p.entry(header);
  const next = keystream(seed);
  const CHUNK = 1024 * 1024;
  let left = size;
  for (; left > CHUNK; left -= CHUNK) {
    if (!entry.write(next(CHUNK))) await new Promise<void>((resolve) => entry.once('drain', () => resolve()));
  }
  entry.end(next(left));
  p.finalize();
  await drained;
  return { digest: `sha256:${hash.digest('hex')}`, size: written };
}

/** An image built in memory: its manifest and config bytes, and its layers. */
export interface BuiltImage {
  format: Format;
  platform: Platform;
  manifest: Content;
  config: Content;
  layers: Layer[];
}

export function buildImage(format: Format, layers: Layer[], platform: Platform = AMD64): BuiltImage {
  const types = FORMATS[format];
  const config = content(
    Buffer.from(
      JSON.stringify({
        created: MTIME.toISOString(),
        architecture: platform.architecture,
        os: platform.os,
        config: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin'], Cmd: ['/bin/true'] },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
        history: layers.map(() => ({ created: MTIME.toISOString(), created_by: 'koa-oci-mirror test fixture' })),
      }),
    ),
  );
  const manifest = {
    schemaVersion: 2,
    mediaType: types.manifest,
    config: { mediaType: types.config, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.gzip ? types.layerGzip : types.layer, digest: l.digest, size: l.size })),
  };
  return { format, platform, manifest: content(Buffer.from(JSON.stringify(manifest, null, 3))), config, layers };
}

export function buildIndex(format: Format, images: BuiltImage[]): Content {
  const types = FORMATS[format];
  const index = {
    schemaVersion: 2,
    mediaType: types.index,
    manifests: images.map((i) => ({
      mediaType: types.manifest,
      digest: i.manifest.digest,
      size: i.manifest.size,
      platform: i.platform,
    })),
  };
  return content(Buffer.from(JSON.stringify(index, null, 3)));
}

function describeImage(image: BuiltImage): FixtureImage {
  const types = FORMATS[image.format];
  return {
    mediaType: types.manifest,
    digest: image.manifest.digest,
    size: image.manifest.size,
    platform: image.platform,
    config: { mediaType: types.config, digest: image.config.digest, size: image.config.size },
    layers: image.layers.map((l) => ({
      mediaType: l.gzip ? types.layerGzip : types.layer,
      digest: l.digest,
      size: l.size,
    })),
  };
}

// --- the registry API -------------------------------------------------------------------

function headerValue(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}

async function call(
  target: PushTarget,
  method: 'HEAD' | 'POST' | 'PUT',
  url: string,
  expected: number[],
  options: { headers?: Record<string, string>; body?: Buffer | Readable } = {},
): Promise<Record<string, string | string[] | undefined>> {
  const res = await request(url, {
    method,
    headers: { ...target.headers, ...options.headers },
    body: options.body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  let text = '';
  if (method === 'HEAD') await res.body.dump();
  else text = await res.body.text();
  if (!expected.includes(res.statusCode)) {
    throw new Error(`${method} ${url} answered ${res.statusCode}, expected ${expected.join(' or ')}: ${text.slice(0, 500)}`);
  }
  return { ...res.headers, ':status': String(res.statusCode) };
}

/** Pushes one blob with a monolithic upload (POST, then PUT with the whole body), unless the repository has it. */
export async function pushBlob(target: PushTarget, name: string, blob: Content): Promise<void> {
  const head = await call(target, 'HEAD', `${target.url}/v2/${name}/blobs/${blob.digest}`, [200, 404]);
  if (head[':status'] === '200') return;
  const started = await call(target, 'POST', `${target.url}/v2/${name}/blobs/uploads/`, [202]);
  const location = headerValue(started.location);
  if (!location) throw new Error(`POST /v2/${name}/blobs/uploads/ gave no Location`);
  const upload = new URL(location, target.url).toString();
  const put = `${upload}${upload.includes('?') ? '&' : '?'}digest=${encodeURIComponent(blob.digest)}`;
  const body = blob.bytes ?? (blob.path ? createReadStream(blob.path) : undefined);
  if (!body) throw new Error(`blob ${blob.digest} has neither bytes nor a path`);
  await call(target, 'PUT', put, [201], {
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
    body,
  });
}

/** Pushes a manifest under `reference` (a tag or its digest); checks the registry computed our digest. */
export async function pushManifest(
  target: PushTarget,
  name: string,
  reference: string,
  mediaType: string,
  manifest: Content,
): Promise<void> {
  const res = await call(target, 'PUT', `${target.url}/v2/${name}/manifests/${reference}`, [201], {
    headers: { 'content-type': mediaType },
    body: manifest.bytes,
  });
  const digest = headerValue(res['docker-content-digest']);
  if (digest !== manifest.digest) {
    throw new Error(`registry stored ${name}:${reference} as ${digest ?? '(no digest)'}, expected ${manifest.digest}`);
  }
}

async function pushImageBlobs(target: PushTarget, name: string, image: BuiltImage): Promise<void> {
  for (const layer of image.layers) await pushBlob(target, name, layer);
  await pushBlob(target, name, image.config);
}

function uniqueBlobs(images: FixtureImage[]): Descriptor[] {
  const seen = new Map<string, Descriptor>();
  for (const i of images) for (const b of [i.config, ...i.layers]) if (!seen.has(b.digest)) seen.set(b.digest, b);
  return [...seen.values()];
}

/** Pushes an image's blobs and manifest and tags it. */
export async function pushImage(target: PushTarget, name: string, tag: string, image: BuiltImage): Promise<Fixture> {
  await pushImageBlobs(target, name, image);
  const described = describeImage(image);
  await pushManifest(target, name, tag, described.mediaType, image.manifest);
  return {
    name,
    tag,
    ref: `${name}:${tag}`,
    mediaType: described.mediaType,
    digest: described.digest,
    size: described.size,
    multiPlatform: false,
    images: [described],
    blobs: uniqueBlobs([described]),
  };
}

/** Pushes every image (each manifest by digest), then their index or manifest list under `tag`. */
export async function pushIndex(target: PushTarget, name: string, tag: string, format: Format, images: BuiltImage[]): Promise<Fixture> {
  const described = images.map(describeImage);
  for (const [i, image] of images.entries()) {
    await pushImageBlobs(target, name, image);
    await pushManifest(target, name, image.manifest.digest, described[i]!.mediaType, image.manifest);
  }
  const index = buildIndex(format, images);
  const mediaType = FORMATS[format].index;
  await pushManifest(target, name, tag, mediaType, index);
  return {
    name,
    tag,
    ref: `${name}:${tag}`,
    mediaType,
    digest: index.digest,
    size: index.size,
    multiPlatform: true,
    images: described,
    blobs: uniqueBlobs(described),
  };
}

// --- the fixtures ------------------------------------------------------------------------

export interface FixtureOptions {
  name?: string;
  tag?: string;
}

/** An OCI image with one small gzip layer. */
export async function pushTinyImage(target: PushTarget, { name = 'e2e/tiny', tag = 'v1' }: FixtureOptions = {}): Promise<Fixture> {
  return pushImage(target, name, tag, buildImage('oci', [await smallLayer(`${name} tiny`)]));
}

/** An OCI image with four gzip layers of different sizes. */
export async function pushMultiLayerImage(target: PushTarget, { name = 'e2e/multi', tag = 'v1' }: FixtureOptions = {}): Promise<Fixture> {
  const layers = await Promise.all([1, 2, 3, 4].map((i) => smallLayer(`${name} layer ${i}`, 1024 * 16 ** (i - 1))));
  return pushImage(target, name, tag, buildImage('oci', layers));
}

/** An OCI image whose second layer is an uncompressed tar of `size` (200 MiB by default) pseudo-random bytes. */
export async function pushBigImage(
  target: PushTarget,
  { name = 'e2e/big', tag = 'v1', size = 200 * 1024 * 1024, seed = 'big' }: FixtureOptions & { size?: number; seed?: string } = {},
): Promise<Fixture> {
  const layers = [await smallLayer(`${name} base`), await bigLayer(size, seed)];
  return pushImage(target, name, tag, buildImage('oci', layers));
}

/** An image pushed with `pushUniqueImage`: its fixture, and the built image, whose blobs' bytes can be pushed elsewhere. */
export interface UniqueImage {
  fixture: Fixture;
  image: BuiltImage;
}

/**
 * An OCI image of `layers` small gzip layers whose content is fresh random bytes: unlike the
 * other fixtures it differs on every call, so that two such images share no blob (and no run
 * shares one with another).
 */
export async function pushUniqueImage(
  target: PushTarget,
  { name = 'e2e/unique', tag = 'v1', layers = 2 }: FixtureOptions & { layers?: number } = {},
): Promise<UniqueImage> {
  const nonce = randomBytes(8).toString('hex');
  const built = await Promise.all(Array.from({ length: layers }, (_, i) => smallLayer(`${name} ${nonce} layer ${i}`, 1024 * 4 ** i)));
  const image = buildImage('oci', built);
  return { fixture: await pushImage(target, name, tag, image), image };
}

/** An OCI image index of two OCI images, linux/amd64 and linux/arm64. */
export async function pushOciIndex(target: PushTarget, { name = 'e2e/index', tag = 'v1' }: FixtureOptions = {}): Promise<Fixture> {
  return pushIndex(target, name, tag, 'oci', await platformImages('oci', name));
}

/** A Docker manifest list of two Docker schema2 images, linux/amd64 and linux/arm64. */
export async function pushDockerManifestList(target: PushTarget, { name = 'e2e/list', tag = 'v1' }: FixtureOptions = {}): Promise<Fixture> {
  return pushIndex(target, name, tag, 'docker', await platformImages('docker', name));
}

async function platformImages(format: Format, name: string): Promise<BuiltImage[]> {
  return Promise.all(
    [AMD64, ARM64].map(async (platform) => {
      const label = `${name} ${platform.os}/${platform.architecture}`;
      return buildImage(format, [await smallLayer(`${label} base`), await smallLayer(`${label} app`)], platform);
    }),
  );
}

/** A Docker schema2 image (Docker config and tar.gzip layer media types). */
export async function pushDockerImage(target: PushTarget, { name = 'e2e/docker', tag = 'v1' }: FixtureOptions = {}): Promise<Fixture> {
  const layers = [await smallLayer(`${name} base`), await smallLayer(`${name} app`)];
  return pushImage(target, name, tag, buildImage('docker', layers));
}

/** A tiny OCI image under a three-component repository name. */
export function pushNestedImage(target: PushTarget, { name = 'team/sub/app', tag = 'v1' }: FixtureOptions = {}): Promise<Fixture> {
  return pushTinyImage(target, { name, tag });
}

export interface Fixtures {
  tiny: Fixture;
  multiLayer: Fixture;
  big: Fixture;
  ociIndex: Fixture;
  dockerManifestList: Fixture;
  dockerImage: Fixture;
  nested: Fixture;
}

/** The keys of `Fixtures`, in push order, for `it.each`. */
export const FIXTURE_KEYS = [
  'tiny',
  'multiLayer',
  'big',
  'ociIndex',
  'dockerManifestList',
  'dockerImage',
  'nested',
] as const satisfies readonly (keyof Fixtures)[];

/** Pushes every fixture under its default name. */
export async function pushAllFixtures(target: PushTarget): Promise<Fixtures> {
  return {
    tiny: await pushTinyImage(target),
    multiLayer: await pushMultiLayerImage(target),
    big: await pushBigImage(target),
    ociIndex: await pushOciIndex(target),
    dockerManifestList: await pushDockerManifestList(target),
    dockerImage: await pushDockerImage(target),
    nested: await pushNestedImage(target),
  };
}

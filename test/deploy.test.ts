/**
 * The deployment recipes under deploy/ parse, agree with each other, and carry configs that
 * `oci-mirror check` accepts (the files they name created in a temp dir), so that they cannot
 * drift from the config schema.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import bcrypt from 'bcryptjs';
import { parse as parseToml } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { parseConfig, parseListen, type MirrorConfig } from '../src/config.js';
import { SERVER_NODE_FLAGS } from '../src/node-flags.js';

const DEPLOY = join(import.meta.dirname, '..', 'deploy');
const CLI = join(import.meta.dirname, '..', 'src', 'cli.ts');
const work = mkdtempSync(join(tmpdir(), 'oci-mirror-deploy-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const read = (path: string) => readFileSync(join(DEPLOY, path), 'utf8');

/** systemd's unit syntax, as far as these units use it: sections, `Key=value`, repeated keys, comments. */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const unit: Record<string, Record<string, string[]>> = {};
  let section: Record<string, string[]> | undefined;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      section = unit[header[1]!] ??= {};
      continue;
    }
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!m || !section) throw new Error(`line ${i + 1} is not Key=value in a section: ${line}`);
    (section[m[1]!] ??= []).push(m[2]!);
  }
  return unit;
}

/** Every absolute path a config names, as [key, path]. */
function pathsIn(value: unknown, key = ''): Array<[string, string]> {
  if (typeof value === 'string') return value.startsWith('/') ? [[key, value]] : [];
  if (Array.isArray(value)) return value.flatMap((v) => pathsIn(v, key));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => pathsIn(v, k));
  return [];
}

/**
 * Runs `oci-mirror check` on a recipe's config, with every path it names moved under a temp
 * dir and every file it names created there.
 */
function check(label: string, text: string): { code: number | null; output: string } {
  const root = join(work, label);
  const moved = text.replace(/(?<=[\s"'])\/(?=[A-Za-z])/g, `${root}/`);
  for (const [key, path] of pathsIn(parseYaml(moved))) {
    if (!/File$|^htpasswd$/.test(key)) continue;
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, key === 'htpasswd' ? `alice:${bcrypt.hashSync('x', 4)}\n` : 'a-secret-of-more-than-16-characters\n');
  }
  const file = join(work, `${label}.yaml`);
  writeFileSync(file, moved);
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'check', '--config', file], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, output: r.stdout + r.stderr };
}

describe('deploy/systemd', () => {
  const unit = parseUnit(read('systemd/oci-mirror.service'));
  const configText = read('systemd/mirror.yaml');
  const config = parseConfig(parseYaml(configText));
  const service = unit.Service!;
  const one = (key: string) => service[key]?.at(-1);

  it('is hardened as the house wants', () => {
    expect(Object.keys(unit)).toEqual(['Unit', 'Service', 'Install']);
    for (const [key, value] of Object.entries({ NoNewPrivileges: 'yes', ProtectSystem: 'strict', PrivateTmp: 'yes', ProtectHome: 'yes', DynamicUser: 'yes', Restart: 'on-failure' })) {
      expect([key, one(key)]).toEqual([key, value]);
    }
    expect(Number(one('LimitNOFILE'))).toBeGreaterThanOrEqual(65536);
    expect(service.ExecReload).toBeUndefined(); // the mirror has no reload; see the unit's comment
  });

  it('runs the config it ships, with room for its cache and time for its shutdown', () => {
    const installed = /^# (\/[^\s:]+)/.exec(configText)![1]!;
    // Through node, with the server's flags (src/node-flags.ts), which only node's own command line takes.
    expect(one('ExecStart')).toBe(`/usr/bin/node ${SERVER_NODE_FLAGS.join(' ')} /usr/bin/oci-mirror --config ${installed}`);
    expect(one('ExecStartPre')).toBe(`/usr/bin/oci-mirror check --config ${installed}`);
    expect(config.storage).toMatchObject({ type: 'fs' });
    const cache = (config.storage as { path: string }).path;
    expect(service.ReadWritePaths?.join(' ').split(/\s+/)).toContain(cache);
    expect(`/var/lib/${one('StateDirectory')}`).toBe(cache);
    expect(Number(one('TimeoutStopSec')) * 1000).toBeGreaterThan(config.shutdownGrace);
    // Every file the config names is a credential the unit loads.
    const credentials = (service.LoadCredential ?? []).map((c) => `/run/credentials/oci-mirror.service/${c.split(':')[0]}`);
    const files = pathsIn(parseYaml(configText)).filter(([k]) => k.endsWith('File')).map(([, p]) => p);
    expect(files.length).toBeGreaterThan(0);
    expect(credentials.sort()).toEqual(files.sort());
  });

  it("starts as npm start does, with the server's node flags", () => {
    const scripts = (JSON.parse(readFileSync(join(DEPLOY, '..', 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.start).toContain(`node ${SERVER_NODE_FLAGS.join(' ')} dist/src/cli.js`);
  });

  it('carries a config oci-mirror check accepts', () => {
    expect(check('systemd', configText)).toMatchObject({ code: 0 });
  });
});

/** What the test reads of the Kubernetes objects. */
interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string };
  persistentVolumeClaim?: { claimName: string };
}
interface Container {
  args: string[];
  ports: Array<{ name: string; containerPort: number }>;
  readinessProbe: { httpGet: { path: string } };
  livenessProbe: { httpGet: { path: string } };
  resources: { requests: Record<string, string> };
  volumeMounts: Array<{ name: string; mountPath: string }>;
}
interface K8sObject {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec: {
    clusterIP?: string;
    ports: Array<{ port: number; targetPort: string }>;
    template: { spec: { containers: Container[]; volumes: Volume[]; terminationGracePeriodSeconds: number } };
  };
}

describe('deploy/kubernetes', () => {
  const docs = readdirSync(join(DEPLOY, 'kubernetes'))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(read(`kubernetes/${f}`)).map((d) => {
      expect(d.errors).toEqual([]);
      return d.toJS() as K8sObject;
    }));
  const of = (kind: string) => docs.find((d) => d.kind === kind)!;
  const configText = of('ConfigMap').data!['mirror.yaml']!;
  const config: MirrorConfig = parseConfig(parseYaml(configText));
  const pod = of('Deployment').spec.template.spec;
  const container = pod.containers[0]!;
  const mountOf = (volume: string) => container.volumeMounts.find((m) => m.name === volume)!.mountPath;
  const volume = (pred: (v: Volume) => unknown) => pod.volumes.find(pred)!.name;

  it('has every part: config, secret, volume claim, deployment and service', () => {
    expect(docs.map((d) => d.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'PersistentVolumeClaim', 'Secret', 'Service']);
  });

  it('probes /readyz and /healthz on the port the config listens on, with resource requests', () => {
    const port = parseListen(config.listen)!.port;
    expect(container.ports[0]!.containerPort).toBe(port);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    expect(container.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(of('Service').spec.ports[0]!.targetPort).toBe(container.ports[0]!.name);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.shutdownGrace);
  });

  it('mounts the config, each secret file it names, and the cache on the claim', () => {
    const configDir = mountOf(volume((v) => v.configMap?.name === of('ConfigMap').metadata.name));
    expect(container.args).toEqual(['--config', posix.join(configDir, 'mirror.yaml')]);
    const secretDir = mountOf(volume((v) => v.secret?.secretName === of('Secret').metadata.name));
    const files = pathsIn(parseYaml(configText)).filter(([k]) => k.endsWith('File')).map(([, p]) => p);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      expect(posix.dirname(f)).toBe(secretDir);
      expect(Object.keys(of('Secret').stringData!)).toContain(posix.basename(f));
    }
    const cacheDir = mountOf(volume((v) => v.persistentVolumeClaim?.claimName === of('PersistentVolumeClaim').metadata.name));
    expect(config.storage).toMatchObject({ type: 'fs', path: cacheDir });
  });

  it('carries a config oci-mirror check accepts', () => {
    expect(check('kubernetes', configText)).toMatchObject({ code: 0 });
  });

  describe('deploy/containerd', () => {
    const hosts = readdirSync(join(DEPLOY, 'containerd'));
    it.each(hosts)('%s/hosts.toml sends pulls of an upstream the config mirrors to the Service', (registry) => {
      const toml = parseToml(read(`containerd/${registry}/hosts.toml`)) as { server: string; host: Record<string, { capabilities: string[] }> };
      expect(config.upstreams.flatMap((u) => [u.name, ...u.aliases])).toContain(registry);
      expect(toml.server).toMatch(/^https:\/\//);
      const service = of('Service').spec;
      expect(Object.keys(toml.host)).toEqual([`http://${service.clusterIP}:${service.ports[0]!.port}`]);
      expect(Object.values(toml.host)[0]!.capabilities.sort()).toEqual(['pull', 'resolve']);
    });
  });
});

// A real nginx (Debian's package) serving Bazel's HTTP cache protocol on 127.0.0.1 for tests and benchmarks: WebDAV
// PUT into its own prefix, with its own config, pid, logs and temp paths, started and stopped by the caller. The
// config is the one README.md recommends, with writes open, refused (403) or behind basic auth.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p)) ?? 'nginx';

/** Who may PUT: anyone, nobody (403), or one user with basic auth. */
export type Writes = 'open' | 'deny' | { user: string; password: string };

/** true when an nginx with the DAV module (PUT) is installed. */
export function nginxAvailable(): boolean {
  const r = spawnSync(NGINX, ['-V'], { encoding: 'utf8' });
  return r.status === 0 && /with-http_dav_module/.test(`${r.stdout}${r.stderr}`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function config(prefix: string, port: number, writes: Writes): string {
  const guard =
    writes === 'open'
      ? ''
      : writes === 'deny'
        ? '      limit_except GET HEAD { deny all; }\n'
        : `      limit_except GET HEAD {\n        auth_basic "wg-cache";\n        auth_basic_user_file ${prefix}/htpasswd;\n      }\n`;
  // Workers run as root only when the test does: the prefix is a private temp folder nobody else may enter.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log;
events { worker_connections 256; }
http {
  access_log ${prefix}/access.log;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${port};
    location /cache/ {
      root ${prefix}/data;
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
      client_max_body_size 0;
${guard}    }
  }
}
`;
}

// A test process that ends without its `after` hooks (a failed assertion in a hook, a timeout) must not leave
// servers behind.
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export class NginxCache {
  private child: ChildProcess | null = null;

  private constructor(
    readonly prefix: string,
    readonly port: number,
  ) {}

  /** Base URL of the cache (`{url}/ac/…`, `{url}/cas/…`). */
  get url(): string {
    return `http://127.0.0.1:${this.port}/cache`;
  }

  /** The file nginx serves for `{url}/{area}/{hash}`. */
  file(area: 'ac' | 'cas', hash: string): string {
    return path.join(this.prefix, 'data', 'cache', area, hash);
  }

  static async start(writes: Writes = 'open'): Promise<NginxCache> {
    const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-nginx-'));
    for (const d of ['data/cache', 'body']) fs.mkdirSync(path.join(prefix, d), { recursive: true });
    if (typeof writes === 'object') fs.writeFileSync(path.join(prefix, 'htpasswd'), `${writes.user}:{PLAIN}${writes.password}\n`);
    const n = new NginxCache(prefix, await freePort());
    fs.writeFileSync(path.join(prefix, 'nginx.conf'), config(prefix, n.port, writes));
    await n.resume();
    return n;
  }

  /** Starts (again) the same server on the same port and data. */
  async resume(): Promise<void> {
    if (this.child) return;
    const child = spawn(NGINX, ['-p', this.prefix, '-c', path.join(this.prefix, 'nginx.conf'), '-e', path.join(this.prefix, 'error.log'), '-g', 'daemon off;'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    this.child = child;
    running.add(child);
    child.once('exit', () => running.delete(child));
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(this.port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        this.child = null;
        child.kill('SIGKILL');
        const log = fs.existsSync(path.join(this.prefix, 'error.log')) ? fs.readFileSync(path.join(this.prefix, 'error.log'), 'utf8') : '';
        throw new Error(`nginx did not start on port ${this.port}: ${stderr}${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the server (fast shutdown) and waits until it is gone and its port is closed. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  }

  /** The access log's request lines as `METHOD /path STATUS`. */
  requests(): { method: string; path: string; status: number }[] {
    const file = path.join(this.prefix, 'access.log');
    if (!fs.existsSync(file)) return [];
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) /.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ method: m[1]!, path: m[2]!, status: Number(m[3]) }));
  }

  /** PUT requests that nginx accepted. */
  successfulWrites(): number {
    return this.requests().filter((r) => r.method === 'PUT' && r.status >= 200 && r.status < 300).length;
  }

  async remove(): Promise<void> {
    await this.stop();
    fs.rmSync(this.prefix, { recursive: true, force: true });
  }
}

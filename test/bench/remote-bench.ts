// `npm run bench` (second half): upload and download of one large blob (1 GiB by default) through wg's remote
// cache client and through curl, against the same real nginx on 127.0.0.1, as a ratio, with the peak RSS of the
// process running wg's client (streaming means it stays flat whatever the blob's size). wg's download hashes
// (sha256) every byte as it arrives; curl's does not.
// WG_BENCH_REMOTE=0 skips it; WG_BENCH_REMOTE_SIZE=256M changes the size; WG_BENCH_REMOTE_REPEATS=3 the repeats.

import { spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RemoteHttp } from '../../cache/remote-http.js';
import { parseQuantity } from '../../engine/load.js';
import { NginxCache, nginxAvailable } from '../nginx-rig.js';

const SELF = fileURLToPath(import.meta.url);

/** The child: one transfer through RemoteHttp, then its timing and peak RSS as JSON on stdout. */
async function child(op: string, url: string, hash: string, file: string, size: number): Promise<void> {
  const client = new RemoteHttp({ url: new URL(url), headers: {}, connectTimeoutMs: 5000, idleTimeoutMs: 30_000, attempts: 1 });
  const t0 = performance.now();
  if (op === 'put') await client.putFile('cas', hash, file, size);
  else {
    const got = await client.getToFile('cas', hash, file, size);
    if (!got.found || got.digest !== hash) throw new Error(`download did not verify: ${JSON.stringify(got)}`);
  }
  const ms = performance.now() - t0;
  client.close();
  process.stdout.write(JSON.stringify({ ms, maxRssKiB: process.resourceUsage().maxRSS }));
}

function run(cmd: string, args: string[]): { ms: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, stdout: r.stdout };
}

/** Best of the repeats: on a shared machine the fastest run is the one least disturbed by others. */
function best(xs: number[]): number {
  return Math.min(...xs);
}

function makeBlob(file: string, size: number): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.allocUnsafe(16 << 20);
  for (let left = size; left > 0; ) {
    const n = Math.min(left, chunk.length);
    randomFillSync(chunk, 0, n);
    fs.writeSync(fd, chunk, 0, n);
    hash.update(chunk.subarray(0, n));
    left -= n;
  }
  fs.closeSync(fd);
  return hash.digest('hex');
}

async function main(): Promise<void> {
  if (process.env['WG_BENCH_REMOTE'] === '0') return void console.log('remote cache benchmark skipped (WG_BENCH_REMOTE=0)');
  if (!nginxAvailable()) return void console.log('remote cache benchmark skipped: nginx with the DAV module is not installed (Debian package nginx)');
  if (spawnSync('curl', ['--version']).status !== 0) return void console.log('remote cache benchmark skipped: curl is not installed');
  const size = parseQuantity(process.env['WG_BENCH_REMOTE_SIZE'] ?? '1G');
  const repeats = Number(process.env['WG_BENCH_REMOTE_REPEATS'] ?? 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wg-remote-bench-'));
  const nginx = await NginxCache.start('open');
  try {
    const blob = path.join(dir, 'blob');
    const hash = makeBlob(blob, size);
    const url = `${nginx.url}/cas/${hash}`;
    const served = nginx.file('cas', hash);
    const down = path.join(dir, 'down');
    const times = { curlPut: [] as number[], wgPut: [] as number[], curlGet: [] as number[], wgGet: [] as number[] };
    let rssPut = 0;
    let rssGet = 0;
    const wg = (op: 'put' | 'get', file: string): { ms: number; rss: number } => {
      const r = run(process.execPath, [SELF, 'child', op, nginx.url, hash, file, String(size)]);
      const out = JSON.parse(r.stdout) as { maxRssKiB: number };
      return { ms: r.ms, rss: out.maxRssKiB * 1024 };
    };
    for (let i = 0; i < repeats; i++) {
      // Each upload writes a fresh file on the server, and each client goes first every other round.
      const order = i % 2 === 0 ? ['curl', 'wg'] : ['wg', 'curl'];
      for (const who of order) {
        fs.rmSync(served, { force: true });
        if (who === 'curl') times.curlPut.push(run('curl', ['-sS', '-f', '-T', blob, url]).ms);
        else {
          const r = wg('put', blob);
          times.wgPut.push(r.ms);
          rssPut = Math.max(rssPut, r.rss);
        }
        if (fs.statSync(served).size !== size) throw new Error('the upload did not land whole');
      }
      for (const who of order) {
        fs.rmSync(down, { force: true });
        if (who === 'curl') times.curlGet.push(run('curl', ['-sS', '-f', '-o', down, url]).ms);
        else {
          const r = wg('get', down);
          times.wgGet.push(r.ms);
          rssGet = Math.max(rssGet, r.rss);
        }
        if (fs.statSync(down).size !== size) throw new Error('the download did not land whole');
      }
    }
    const gib = (size / 1024 ** 3).toFixed(2);
    const s = (ms: number): string => `${(ms / 1000).toFixed(2)}s`.padStart(8);
    const mib = (b: number): string => `${(b / 1024 ** 2).toFixed(0)} MiB`.padStart(12);
    const rate = (ms: number): string => `${(size / 1024 ** 2 / (ms / 1000)).toFixed(0)} MiB/s`.padStart(11);
    console.log(`\nremote cache transfer: one ${gib} GiB blob, nginx on 127.0.0.1, best of ${repeats}`);
    console.log('               curl        wg  wg/curl    wg rate  wg peak RSS');
    for (const [name, c, w, rss] of [
      ['upload (PUT)', best(times.curlPut), best(times.wgPut), rssPut],
      ['download (GET)', best(times.curlGet), best(times.wgGet), rssGet],
    ] as const) {
      console.log(`${name.padEnd(14)}${s(c)}  ${s(w)}  ${`${(w / c).toFixed(2)}x`.padStart(7)}${rate(w)}${mib(rss)}`);
    }
    console.log("(wg's times include starting node; its download verifies sha256 while streaming, curl's does not)");
  } finally {
    await nginx.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'child') {
  const [op, url, hash, file, size] = process.argv.slice(3);
  await child(op!, url!, hash!, file!, Number(size));
} else {
  await main();
}

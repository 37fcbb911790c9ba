// npm links the bins of dependencies into node_modules/.bin but never the project's own, so inside a checkout
// `npx wg` would look for a registry package named "wg". Linking ours there makes `npx wg` run this checkout.
import * as fs from 'node:fs';
import * as path from 'node:path';

const binDir = path.join('node_modules', '.bin');
const link = path.join(binDir, 'wg');
fs.mkdirSync(binDir, { recursive: true });
fs.rmSync(link, { force: true });
fs.symlinkSync(path.join('..', '..', 'bin', 'wg.js'), link);

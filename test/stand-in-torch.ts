// A stand-in torch for toolchain tests: a plain package with torch's version, CUDA and C++11-ABI attributes and a
// dist-info, written straight into a venv's site-packages. Replacing it as `pip install torch==…` would (old
// dist-info gone, new one there) changes the folder's stat, which is what the toolchain probe cache watches.

import * as fs from 'node:fs';
import * as path from 'node:path';

export interface TorchShape {
  /** `torch.version.cuda`; null for a CPU build. */
  cuda?: string | null;
  /** `torch._C._GLIBCXX_USE_CXX11_ABI`. */
  cxx11abi?: boolean;
  /** The whole `torch/__init__.py`, for a torch whose import misbehaves. */
  initBody?: string;
}

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

export function installTorch(siteDir: string, version: string, shape: TorchShape = {}): void {
  for (const entry of fs.readdirSync(siteDir)) {
    if (/^torch-.*\.dist-info$/.test(entry)) fs.rmSync(path.join(siteDir, entry), { recursive: true });
  }
  const cuda = shape.cuda ?? null;
  write(path.join(siteDir, 'torch', '__init__.py'), shape.initBody ?? `__version__ = ${JSON.stringify(version)}\n`);
  write(path.join(siteDir, 'torch', 'version.py'), `cuda = ${cuda === null ? 'None' : JSON.stringify(cuda)}\n`);
  write(path.join(siteDir, 'torch', '_C.py'), `_GLIBCXX_USE_CXX11_ABI = ${shape.cxx11abi ?? true ? 'True' : 'False'}\n`);
  const distInfo = path.join(siteDir, `torch-${version}.dist-info`);
  write(path.join(distInfo, 'METADATA'), `Metadata-Version: 2.1\nName: torch\nVersion: ${version}\n`);
  const files = ['torch/__init__.py', 'torch/version.py', 'torch/_C.py', `torch-${version}.dist-info/METADATA`];
  write(path.join(distInfo, 'RECORD'), `${files.map((f) => `${f},,`).join('\n')}\n`);
}

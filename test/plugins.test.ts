// Plugins named in BUILD.yaml: a custom rule kind checked and built like a built-in one, post-build hooks told what
// was built, the plugin file's digest in the keys of its rule's targets only, and every loading mistake reported at
// its `plugins` entry before anything runs.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { statuses, TempWorkspace, type BuildJson } from './rig.js';

const keys = (r: BuildJson): Record<string, string> => Object.fromEntries(r.targets.map((t) => [t.label, t.key]));

/** A plugin with a `text_file` rule (writes its `text` attribute into a file) and a hook that logs each call. */
const RULE_PLUGIN = `import * as fs from 'node:fs';
import * as path from 'node:path';

export default {
  name: 'text-files',
  setup(api) {
    api.registerRule({
      kind: 'text_file',
      version: 1,
      doc: 'writes a text file',
      needsToolchain: false,
      attrs: { text: { schema: { type: 'string' }, required: true, doc: 'what the file holds' } },
      plan(target) {
        return {
          mnemonic: 'Text',
          keyAttrs: { text: target.attrs.text },
          async execute(ctx) {
            await ctx.exec(['sh', '-c', 'printf %s "$TEXT" > "$WG_OUT/out.txt"'], { step: 'write', cwd: ctx.sandbox, env: { TEXT: target.attrs.text, WG_OUT: ctx.outDir } });
            return [{ path: 'out.txt', kind: 'file' }];
          },
        };
      },
    });
  },
};
`;

const HOOK_PLUGIN = `import * as fs from 'node:fs';

export default {
  name: 'publish',
  setup(api) {
    api.onPostBuild(async ({ label, package: pkg, variant, wheels, files }) => {
      if (pkg === 'broken') throw new Error('index refused the upload');
      fs.appendFileSync(new URL('./hook-calls.txt', import.meta.url), JSON.stringify({ label, pkg, variant, wheels: wheels.length, files: files.map((f) => f.split('/wg-out/')[1]) }) + '\\n');
    });
  },
};
`;

const BUILD_YAML = `plugins: [plugins/text.mjs, plugins/publish.mjs]
variants:
  v1: {}
packages:
  note:
    rule: text_file
    text: hello
  plain:
    rule: command
    cmd: echo plain > out.txt
    outs: [out.txt]
`;

describe('plugins', () => {
  it('adds a rule kind and post-build hooks; the plugin digest keys only its rule targets', async () => {
    const ws = TempWorkspace.create({ 'BUILD.yaml': BUILD_YAML, 'plugins/text.mjs': RULE_PLUGIN, 'plugins/publish.mjs': HOOK_PLUGIN });
    try {
      const first = await ws.build();
      assert.deepEqual(statuses(first), { '//note:v1': 'built', '//plain:v1': 'built' });
      assert.equal(ws.read('wg-out/out/note.v1.out.txt'), 'hello');
      assert.deepEqual(ws.read('plugins/hook-calls.txt').trimEnd().split('\n').map((l) => JSON.parse(l)), [
        { label: '//note:v1', pkg: 'note', variant: 'v1', wheels: 0, files: ['out/note.v1.out.txt'] },
        { label: '//plain:v1', pkg: 'plain', variant: 'v1', wheels: 0, files: ['out/plain.v1.out.txt'] },
      ]);

      // Cached targets were published when they were built: no hook call.
      const again = await ws.build();
      assert.deepEqual(statuses(again), { '//note:v1': 'cached', '//plain:v1': 'cached' });
      assert.equal(ws.read('plugins/hook-calls.txt').trimEnd().split('\n').length, 2);

      // The rule plugin's bytes are its rule's implementation: a change rebuilds its targets, and only those.
      ws.write('plugins/text.mjs', `${RULE_PLUGIN}// a comment\n`);
      const changedRule = await ws.build(['--dry-run']);
      assert.deepEqual(statuses(changedRule), { '//note:v1': 'would-build', '//plain:v1': 'cached' });
      assert.notEqual(keys(changedRule)['//note:v1'], keys(first)['//note:v1']);
      assert.equal(keys(changedRule)['//plain:v1'], keys(first)['//plain:v1']);

      // A hook-only plugin changes no output, so no key.
      ws.write('plugins/text.mjs', RULE_PLUGIN);
      ws.write('plugins/publish.mjs', `${HOOK_PLUGIN}// another comment\n`);
      assert.deepEqual(keys(await ws.build(['--dry-run'])), keys(first));

      // query and explain load the plugins too: its rule is known, and explain keys targets as a build does.
      const q = await ws.run(['query', 'targets', '//...']);
      assert.equal(q.stdout, '//note:v1\n//plain:v1\n', q.stderr);
      const ex = await ws.run(['explain', '//note:v1']);
      assert.equal(ex.stdout, `//note:v1 is cached (key ${keys(first)['//note:v1']!.slice(0, 12)})\n`, ex.stderr);
    } finally {
      ws.remove();
    }
  });

  it('a failing hook is a warning and exit 1; the built result stays cached', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `plugins: [plugins/publish.mjs]
variants:
  v1: {}
packages:
  broken:
    rule: command
    cmd: echo x > out.txt
    outs: [out.txt]
`,
      'plugins/publish.mjs': HOOK_PLUGIN,
    });
    try {
      const r = await ws.build([], { expectCode: 1 });
      assert.deepEqual(statuses(r), { '//broken:v1': 'built' });
      const message = 'post_build hook of plugin "publish" (plugins/publish.mjs) failed for //broken:v1: index refused the upload';
      assert.equal(r.targets[0]!.error, message);
      assert.match(r.stderr, new RegExp(`warning: ${message.replace(/[()/.]/g, '\\$&')}`));
      assert.deepEqual(statuses(await ws.build()), { '//broken:v1': 'cached' });
    } finally {
      ws.remove();
    }
  });

  it('reports plugins that cannot be loaded, and custom rule attributes, at their BUILD.yaml positions', async () => {
    const ws = TempWorkspace.create({
      'BUILD.yaml': `plugins:
  - plugins/missing.mjs
  - plugins/no-default.mjs
  - plugins/throws.mjs
  - plugins/bad-rule.mjs
  - ../outside.mjs
  - plugins/syntax.mjs
  - plugins/text.mjs
variants:
  v1: {}
packages:
  note:
    rule: text_file
    txt: hello
`,
      'plugins/no-default.mjs': 'export const name = "x";\n',
      'plugins/throws.mjs': 'export default { name: "thrower", setup() { throw new Error("no API key in the environment"); } };\n',
      'plugins/bad-rule.mjs': 'export default { name: "bad", setup(api) { api.registerRule({ kind: "python_wheel", version: 1 }); api.registerRule({ kind: "odd", version: 1, doc: "", needsToolchain: false, attrs: { deps: { schema: { type: "string" }, doc: "" } }, plan() {} }); api.registerRule({ kind: "leaves", version: 1, doc: "", needsToolchain: false, attrs: {}, fileOutputs: { attr: "outs" }, plan() {} }); } };\n',
      'plugins/syntax.mjs': 'export default {\n',
      'plugins/text.mjs': RULE_PLUGIN,
    });
    try {
      const r = await ws.run(['build']);
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr,
        `BUILD.yaml:2:5: error: plugin "plugins/missing.mjs": cannot read it: no such file
 2 |   - plugins/missing.mjs
   |     ~~~~~~~~~~~~~~~~~~~
BUILD.yaml:3:5: error: plugin "plugins/no-default.mjs": has no default export; it must \`export default { name, setup(api) { … } }\`
 3 |   - plugins/no-default.mjs
   |     ~~~~~~~~~~~~~~~~~~~~~~
BUILD.yaml:4:5: error: plugin "plugins/throws.mjs": setup failed: no API key in the environment
 4 |   - plugins/throws.mjs
   |     ~~~~~~~~~~~~~~~~~~
BUILD.yaml:5:5: error: plugin "plugins/bad-rule.mjs": registerRule: rule "python_wheel" already exists (built in)
 5 |   - plugins/bad-rule.mjs
   |     ~~~~~~~~~~~~~~~~~~~~
BUILD.yaml:5:5: error: plugin "plugins/bad-rule.mjs": registerRule: rule "odd" declares attribute "deps", which every package already has
 5 |   - plugins/bad-rule.mjs
   |     ~~~~~~~~~~~~~~~~~~~~
BUILD.yaml:5:5: error: plugin "plugins/bad-rule.mjs": registerRule: "fileOutputs" of rule "leaves" must be { attr: the attribute's name, paths(attrs): a list }
 5 |   - plugins/bad-rule.mjs
   |     ~~~~~~~~~~~~~~~~~~~~
BUILD.yaml:6:5: error: plugin "../outside.mjs": must be a path inside the workspace, relative to it
 6 |   - ../outside.mjs
   |     ~~~~~~~~~~~~~~
BUILD.yaml:7:5: error: plugin "plugins/syntax.mjs": cannot load it: Unexpected end of input
 7 |   - plugins/syntax.mjs
   |     ~~~~~~~~~~~~~~~~~~
BUILD.yaml:12:3: error: package "note" is missing the required field "text"
 12 |   note:
    |   ~~~~
BUILD.yaml:14:5: error: unknown field "txt" in package "note" (did you mean "text"?)
 14 |     txt: hello
    |     ~~~
wg: 10 errors in BUILD.yaml; nothing was built
`,
      );
    } finally {
      ws.remove();
    }
  });
});

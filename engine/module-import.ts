// import() of a user's ES module (a plugin). bin/wg.cjs runs the CLI bundle through V8's code cache (vm.Script,
// engine/code-cache.ts), and code compiled that way has no module loader on Node 20: import() there needs
// --experimental-vm-modules, or a constant that prints an experimental warning. So the shim, a module Node loaded
// itself, hands over its own import().

export type ModuleImporter = (url: string) => Promise<unknown>;

let importer: ModuleImporter = (url) => import(url);

/** Makes `importer` the one importModule uses (set once, before any plugin is loaded). */
export function useImporter(f: ModuleImporter): void {
  importer = f;
}

export function importModule(url: string): Promise<unknown> {
  return importer(url);
}

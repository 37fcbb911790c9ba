// Sorting short string arrays in UTF-16 code-unit order, the default sort's order (the same on every machine and
// locale), without the work array Array.prototype.sort allocates on every call. Keys, labels and folder names are
// sorted once per target on every build: for 10,000 targets those work arrays were a sixth of all allocation.

/** Longer arrays go to Array.prototype.sort: insertion sort is quadratic. */
const INSERTION_MAX = 16;

/** Sorts `items` in place, like `items.sort()`, and returns it. */
export function sortCodeUnits<T extends string>(items: T[]): T[] {
  if (items.length > INSERTION_MAX) return items.sort();
  for (let i = 1; i < items.length; i++) {
    const item = items[i]!;
    let j = i - 1;
    for (; j >= 0 && items[j]! > item; j--) items[j + 1] = items[j]!;
    items[j + 1] = item;
  }
  return items;
}

/** Sorts `items` in place by the code-unit order of `key(item)`, as sortCodeUnits sorts strings, and returns it. */
export function sortCodeUnitsBy<T>(items: T[], key: (item: T) => string): T[] {
  if (items.length > INSERTION_MAX) return items.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  for (let i = 1; i < items.length; i++) {
    const item = items[i]!;
    const k = key(item);
    let j = i - 1;
    for (; j >= 0 && key(items[j]!) > k; j--) items[j + 1] = items[j]!;
    items[j + 1] = item;
  }
  return items;
}

/**
 * Problem field paths -> the page's inputs. The API names a field as a JSON path
 * ("models[1].grounding[0].box", "aggregation.window", "header Authorization"); every
 * input on the page carries the path it fills in `data-field`. An error goes to the input
 * with its exact path, else to the nearest enclosing one ("models[1].grounding[0]", then
 * "models[1].grounding", ...), else only to the summary at the top.
 */

/** 'models[1].grounding[0].box' -> 'models[1].grounding[0]' -> ... -> 'models' -> null */
export function parentField(path: string): string | null {
  const m = /^(.*?)(\[\d+\]|\.[^.[\]]+)$/.exec(path);
  return m && m[1] ? m[1] : null;
}

/** The path of the nearest input for an error's field, or null when nothing on the page fits. */
export function fieldTarget(path: string, exists: (field: string) => boolean): string | null {
  for (let p: string | null = path; p !== null; p = parentField(p)) {
    if (exists(p)) return p;
  }
  return null;
}

#!/usr/bin/env python3
"""The shape rules of src/ that rustfmt and clippy do not check; exits 1 on any breach.

1. No import circle between files: the file-level graph of `use` paths, `crate::`/`super::`
   paths in code and a parent's `child::` paths (declaring `mod child;` is not an import) has
   no cycle. Test modules (`#[cfg(test)] mod ... { }`) are left out.
2. Layers: `evaluation/` imports nothing from `synthesis/`; `engine/` nothing from `model/`,
   `generation/`, `synthesis/`, `evaluation/`; `store/` nothing from those either.
3. No function over MAX_LINES lines (after rustfmt; tests excepted), except those in ALLOWED
   (with the reason).
"""
import os
import re
import sys

MAX_LINES = 80
ALLOWED = {
    # name: reason
}
LAYERS = {
    "evaluation": {"synthesis"},
    "engine": {"recipe", "model", "generation", "synthesis", "evaluation", "store", "output"},
    "store": {"model", "generation", "synthesis", "evaluation", "output"},
    "generation": {"synthesis", "evaluation"},
}


def blank(match):
    return re.sub(r"[^\n]", " ", match.group(0))


def strip_literals(src):
    """Comments, strings and char literals replaced by spaces (line numbers kept)."""
    src = re.sub(r"(?<![A-Za-z0-9_])r(#*)\"(?:.|\n)*?\"\1", blank, src)
    src = re.sub(r"'(?:\\.|[^'\\])'", "' '", src)
    src = re.sub(r"(?s)\"(?:\\.|[^\"\\])*\"", blank, src)
    return re.sub(r"//[^\n]*", "", src)


def block_end(src, open_at):
    depth = 0
    for j in range(open_at, len(src)):
        if src[j] == "{":
            depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(src) - 1


def without_tests(src):
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while (m := pattern.search(src)):
        end = block_end(src, m.end() - 1)
        src = src[: m.start()] + blank(re.match(r"(?s).*", src[m.start() : end + 1])) + src[end + 1 :]
    return src


def modules(root):
    found = {}
    for d, _, names in os.walk(root):
        for name in names:
            path = os.path.join(d, name)
            if not name.endswith(".rs") or path == os.path.join(root, "main.rs"):
                continue
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] == "mod" or parts == ["lib"]:
                parts = parts[:-1]
            found[tuple(parts)] = path
    return found


def imports(module, path, files):
    src = without_tests(strip_literals(open(path).read()))
    is_dir = path.endswith("mod.rs") or path.endswith("lib.rs")
    # Inside an inline `mod x { }`, `super::` is this file.
    for m in list(re.finditer(r"\bmod\s+\w+\s*\{", src))[::-1]:
        end = block_end(src, m.end() - 1)
        src = src[: m.end()] + src[m.end() : end].replace("super::", "self::") + src[end:]
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", src):
        body = " ".join(m.group(1).split())
        braced = re.match(r"([\w:]+?)::\{(.*)\}$", body)
        if braced:
            for part in re.split(r",(?![^{]*\})", braced.group(2)):
                if (word := re.match(r"\s*([\w:]+)", part)):
                    paths.append(braced.group(1) + "::" + word.group(1))
        else:
            paths.append(body.split(" as ")[0])
    paths += [m.group(1) for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", src)]
    if is_dir:
        paths += ["self::" + m.group(1) for m in re.finditer(r"(?<![:\w])(\w+)::\w", src) if module + (m.group(1),) in files]
    targets = set()
    for p in paths:
        segs = [s for s in p.split("::") if s]
        if segs[0] == "crate":
            base, segs = (), segs[1:]
        elif segs[0] == "self":
            base, segs = module, segs[1:]
        elif segs[0] == "super":
            base, segs = module, segs
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
        elif is_dir and module + tuple(segs[:1]) in files:
            base = module
        else:
            continue
        full = tuple(base) + tuple(segs)
        for i in range(len(full), 0, -1):
            if full[:i] in files:
                if full[:i] != module:
                    targets.add(full[:i])
                break
    return targets


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def long_functions(path):
    src = without_tests(strip_literals(open(path).read()))
    for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:unsafe\s+)?fn\s+(\w+)", src, re.M):
        open_at, semi = src.find("{", m.end()), src.find(";", m.end())
        if open_at < 0 or 0 <= semi < open_at:
            continue
        first = src.count("\n", 0, m.start()) + 1
        lines = src.count("\n", 0, block_end(src, open_at)) + 1 - first + 1
        if lines > MAX_LINES:
            yield m.group(1), first, lines


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "src"
    files = modules(root)
    graph = {m: imports(m, p, files) for m, p in files.items()}
    problems = []
    for comp in cycles(graph):
        problems.append("import circle: " + " <-> ".join(sorted(files[m] for m in comp)))
    for m, targets in graph.items():
        banned = LAYERS.get(m[0] if m else "", set())
        for t in targets:
            if t and t[0] in banned:
                problems.append(f"layer: {files[m]} imports {files[t]}")
    for path in sorted(files.values()):
        for name, line, lines in long_functions(path):
            if name not in ALLOWED:
                problems.append(f"long function: {path}:{line} `{name}` is {lines} lines (most {MAX_LINES})")
    for p in problems:
        print(p)
    print(f"check-shape: {len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

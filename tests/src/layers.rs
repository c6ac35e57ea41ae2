//! The core's module imports, read from its source: which file imports which, the layer of each
//! file, imports that break the layer rule and import cycles (issue 16: dependencies run one way).
//!
//! Every `.rs` file under a `src` directory is parsed with `syn` and mapped to its module path
//! (`lib.rs` is the crate root, `a/mod.rs` is `a`, `a/b.rs` is `a::b`; inline `mod x { }` blocks,
//! `#[cfg(test)] mod tests` included, belong to their file). An import is any `use` item (groups,
//! globs, renames, `pub use`, in any module or function body) and any path of two or more
//! segments that names a module of the crate: `crate::`, `self::` and `super::` paths, and paths
//! that start with a child module or a name a `use` brought into scope, in types, expressions,
//! patterns and parseable macro arguments (other macro bodies, `macro_rules!` included, are
//! scanned for `crate::`/`$crate::`/`self::`/`super::` token sequences). `mod x;` declarations,
//! visibility paths (`pub(super)`) and attributes (doc links) are not imports.
//!
//! Each import is resolved to the file that defines the item: the longest module path that is a
//! file (`crate::model::event::Action` is `model/event.rs`, `crate::model::Foo` is
//! `model/mod.rs`), and when that module only re-exports the name (`pub use`, a private `use`
//! seen by a child through `super::`, or a glob), on to the file the re-export names; the files
//! passed through are kept as the import's `via`. Imports of a file's own items (its inline
//! modules included) do not count, except a file that imports its own item back through another
//! file's re-export: that self-loop is a cycle.
//!
//! The layer of a file is the first segment of its path under `src` (`lib.rs`, the root, has none
//! and is exempt); [`LAYERS`] says which layers each layer may import.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};

/// The layer rule: each layer and the other layers it may import (a layer may always import
/// itself). functions -> edge -> app -> pipeline -> ports -> model; adapters implement ports.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("auth", &["model"]),
    ("providers", &["model"]),
    ("ports", &["model"]),
    ("pipeline", &["ports", "model", "providers"]),
    ("adapters", &["ports", "model"]),
    (
        "app",
        &[
            "pipeline",
            "adapters",
            "ports",
            "model",
            "auth",
            "providers",
        ],
    ),
    (
        "edge",
        &["app", "pipeline", "ports", "model", "auth", "providers"],
    ),
];

/// The crate root: it declares the layers and is exempt from the rule.
pub const ROOT: &str = "lib.rs";

/// How far re-exports and `use` bindings are followed before giving up on a name.
const MAX_DEPTH: usize = 32;

/// The layers `layer` may import besides itself, or `None` when it is not in [`LAYERS`].
pub fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    LAYERS.iter().find(|(l, _)| *l == layer).map(|(_, a)| *a)
}

/// The rule for one layer, as a sentence.
pub fn rule_of(layer: &str) -> String {
    match allowed(layer) {
        None => format!(
            "`{layer}` is not a layer (layers: {})",
            LAYERS
                .iter()
                .map(|(l, _)| *l)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some([]) => format!("{layer} may import only itself"),
        Some(a) => format!("{layer} may import only itself and {}", a.join(", ")),
    }
}

/// The layer of a file (a path relative to `src`, with `/`): its first path segment; `None` for
/// the root.
pub fn layer_of(file: &str) -> Option<String> {
    if file == ROOT {
        return None;
    }
    let first = file.split('/').next().unwrap_or(file);
    Some(first.strip_suffix(".rs").unwrap_or(first).to_owned())
}

/// The layer name to print for a file: its layer, or `(root)`.
pub fn layer_name(file: &str) -> String {
    layer_of(file).unwrap_or_else(|| "(root)".to_owned())
}

/// One import, as written in the importing file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Import {
    pub line: usize,
    /// The path as written (`crate::app::Function`, `super::*`).
    pub path: String,
    /// The files whose re-exports (or `use` bindings) the path went through.
    pub via: Vec<String>,
}

impl fmt::Display for Import {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (line {}", self.path, self.line)?;
        if !self.via.is_empty() {
            write!(f, ", via {}", self.via.join(", "))?;
        }
        write!(f, ")")
    }
}

/// Imports as a list, one entry per path (with every line it is on), at most `max` entries.
pub fn list_imports(imports: &[Import], max: usize) -> String {
    let mut groups: Vec<(&str, &[String], Vec<usize>)> = Vec::new();
    for i in imports {
        match groups
            .iter_mut()
            .find(|(path, via, _)| *path == i.path && *via == i.via.as_slice())
        {
            Some((_, _, lines)) => lines.push(i.line),
            None => groups.push((&i.path, &i.via, vec![i.line])),
        }
    }
    let mut list: Vec<String> = groups
        .iter()
        .take(max)
        .map(|(path, via, lines)| {
            let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
            let mut entry = format!(
                "`{path}` (line{} {}",
                if lines.len() == 1 { "" } else { "s" },
                lines.join(", ")
            );
            if !via.is_empty() {
                let _ = write!(entry, ", via {}", via.join(", "));
            }
            entry.push(')');
            entry
        })
        .collect();
    if groups.len() > max {
        list.push(format!("and {} more", groups.len() - max));
    }
    list.join(", ")
}

/// A source file and its place in the crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path relative to `src`, with `/`.
    pub path: String,
    /// The module path, `crate` for the root.
    pub module: String,
    /// The first path segment; `None` for the root.
    pub layer: Option<String>,
}

/// A break of the layer rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A file outside every layer of [`LAYERS`].
    UnknownLayer { file: String, layer: String },
    /// A file that imports a file of a layer its own layer may not import.
    Forbidden {
        from: String,
        from_layer: String,
        to: String,
        to_layer: String,
        imports: Vec<Import>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnknownLayer { file, layer } => {
                write!(
                    f,
                    "{file}: unknown layer `{layer}` (not in the layer table)"
                )
            }
            Violation::Forbidden {
                from,
                from_layer,
                to,
                to_layer,
                imports,
            } => write!(
                f,
                "{from} imports {to} ({from_layer} -> {to_layer}): {}; rule: {}",
                list_imports(imports, 6),
                rule_of(from_layer)
            ),
        }
    }
}

/// One edge of a cycle, with the import that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub from: String,
    pub to: String,
    pub import: Import,
}

/// A strongly connected component of the file graph (two or more files, or one file that imports
/// itself through a re-export) and one cycle through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// Every file of the component, sorted.
    pub files: Vec<String>,
    /// One cycle, from the component's first file back to it.
    pub path: Vec<Step>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} file{} ({})",
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            self.files.join(", ")
        )?;
        if let Some(first) = self.path.first() {
            write!(f, "; for instance {}", first.from)?;
            for step in &self.path {
                write!(f, " -> {} {}", step.to, step.import)?;
            }
        }
        Ok(())
    }
}

/// What [`check`] found in a source tree.
#[derive(Debug, Clone)]
pub struct Report {
    pub src: PathBuf,
    /// Every file, sorted by path.
    pub files: Vec<SourceFile>,
    /// File-level imports: (importing file, imported file) and the imports that make the edge.
    pub edges: BTreeMap<(String, String), Vec<Import>>,
    pub violations: Vec<Violation>,
    pub cycles: Vec<Cycle>,
}

impl Report {
    /// No violation and no cycle.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.cycles.is_empty()
    }

    /// Whether `from` imports `to` (file paths relative to `src`).
    pub fn imports(&self, from: &str, to: &str) -> bool {
        self.edges.contains_key(&(from.to_owned(), to.to_owned()))
    }

    /// File-level imports per pair of layers (the printed layer names: the first path segment
    /// whether or not it is in [`LAYERS`], `(root)` for the root): (file edges, import paths).
    pub fn layer_pairs(&self) -> BTreeMap<(String, String), (usize, usize)> {
        let mut pairs: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
        for ((from, to), imports) in &self.edges {
            let e = pairs.entry((layer_name(from), layer_name(to))).or_default();
            e.0 += 1;
            e.1 += imports.len();
        }
        pairs
    }

    /// The message of a failed check: every violation (file, import, rule) and every cycle.
    pub fn failure_message(&self) -> String {
        let mut out = format!(
            "{}: {} layer violation(s), {} import cycle(s)\n",
            self.src.display(),
            self.violations.len(),
            self.cycles.len()
        );
        for v in &self.violations {
            let _ = writeln!(out, "  violation: {v}");
        }
        for c in &self.cycles {
            let _ = writeln!(out, "  cycle: {c}");
        }
        out.push_str(&rule_table());
        out
    }

    /// The structure for humans: files per layer, imports per pair of layers, violations, cycles
    /// and, with `files`, every file-level import.
    pub fn render(&self, files: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "imports of {}: {} files, {} file-level imports",
            self.src.display(),
            self.files.len(),
            self.edges.len()
        );

        let mut by_layer: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for f in &self.files {
            by_layer
                .entry(layer_name(&f.path))
                .or_default()
                .push(&f.path);
        }
        out.push_str("\nlayers (the first path segment under src; * = not in the layer table):\n");
        for (layer, list) in &by_layer {
            let mark = if layer == "(root)" || allowed(layer).is_some() {
                ""
            } else {
                "*"
            };
            let _ = writeln!(
                out,
                "  {:<14} {:>3}  {}",
                format!("{layer}{mark}"),
                list.len(),
                list.join(" ")
            );
        }

        out.push_str(
            "\nimports between layers: file-level imports (import paths); ! = not allowed\n",
        );
        for ((from, to), (edges, paths)) in self.layer_pairs() {
            let mark = if from == "(root)" || from == to || to == "(root)" {
                ""
            } else {
                match allowed(&from) {
                    Some(a) if a.contains(&to.as_str()) => "",
                    _ => "  !",
                }
            };
            let _ = writeln!(out, "  {from} -> {to}: {edges} ({paths}){mark}");
        }

        let _ = writeln!(out, "\nviolations: {}", self.violations.len());
        for v in &self.violations {
            let _ = writeln!(out, "  {v}");
        }
        let _ = writeln!(out, "\ncycles: {}", self.cycles.len());
        for c in &self.cycles {
            let _ = writeln!(out, "  {} file(s): {}", c.files.len(), c.files.join(", "));
            if let Some(first) = c.path.first() {
                let _ = writeln!(out, "    {}", first.from);
                for step in &c.path {
                    let _ = writeln!(out, "      -> {}  {}", step.to, step.import);
                }
            }
        }

        if files {
            out.push_str("\nfile-level imports:\n");
            for ((from, to), imports) in &self.edges {
                let _ = writeln!(
                    out,
                    "  {from} -> {to}: {}",
                    list_imports(imports, usize::MAX)
                );
            }
        }
        out.push('\n');
        out.push_str(&rule_table());
        out
    }
}

/// [`LAYERS`] as text.
pub fn rule_table() -> String {
    let mut out =
        String::from("layer rule (a layer may always import itself; lib.rs is exempt):\n");
    for (layer, allowed) in LAYERS {
        let to = if allowed.is_empty() {
            "(nothing else)".to_owned()
        } else {
            allowed.join(", ")
        };
        let _ = writeln!(out, "  {layer:<10} -> {to}");
    }
    out
}

/// Reads every `.rs` file under `src` and checks its imports against [`LAYERS`] and for cycles.
/// Fails only when a file cannot be read or parsed.
pub fn check(src: &Path) -> Result<Report, String> {
    let mut paths = Vec::new();
    rust_files(src, src, &mut paths)?;
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{}: no .rs files", src.display()));
    }

    let mut parsed = Vec::new();
    for rel in &paths {
        let full = src.join(rel);
        let text =
            std::fs::read_to_string(&full).map_err(|e| format!("{}: {e}", full.display()))?;
        let file = syn::parse_file(&text).map_err(|e| {
            format!(
                "{}:{}: cannot parse: {e}",
                full.display(),
                e.span().start().line
            )
        })?;
        let module = module_of(rel);
        let mut c = Collector {
            ctx: module.clone(),
            in_block: 0,
            scopes: BTreeMap::new(),
            found: Vec::new(),
        };
        c.scopes.entry(module.clone()).or_default();
        c.visit_file(&file);
        parsed.push((rel.clone(), module, c));
    }

    let mut krate = Crate {
        modules: BTreeMap::new(),
    };
    for (rel, _, c) in &mut parsed {
        for (path, scope) in std::mem::take(&mut c.scopes) {
            krate.modules.insert(
                path,
                Module {
                    file: rel.clone(),
                    scope,
                },
            );
        }
    }

    let mut edges: BTreeMap<(String, String), BTreeSet<Import>> = BTreeMap::new();
    for (rel, _, c) in &parsed {
        for o in &c.found {
            let Some(abs) = krate.absolutize(&o.ctx, &o.segs, o.global, 0) else {
                continue;
            };
            let mut seen = BTreeSet::new();
            let Some(t) = krate.resolve(&abs, &mut seen) else {
                continue;
            };
            let mut via: Vec<String> = Vec::new();
            for v in t.via {
                if v != *rel && v != t.file && !via.contains(&v) {
                    via.push(v);
                }
            }
            if t.file == *rel && via.is_empty() {
                continue;
            }
            edges
                .entry((rel.clone(), t.file))
                .or_default()
                .insert(Import {
                    line: o.line,
                    path: o.text.clone(),
                    via,
                });
        }
    }
    let edges: BTreeMap<(String, String), Vec<Import>> = edges
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect();

    let files: Vec<SourceFile> = parsed
        .iter()
        .map(|(rel, module, _)| SourceFile {
            path: rel.clone(),
            module: std::iter::once("crate".to_owned())
                .chain(module.iter().cloned())
                .collect::<Vec<_>>()
                .join("::"),
            layer: layer_of(rel),
        })
        .collect();

    let violations = violations(&files, &edges);
    let cycles = cycles(&files, &edges);
    Ok(Report {
        src: src.to_path_buf(),
        files,
        edges,
        violations,
        cycles,
    })
}

fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = entry.path();
        if path.is_dir() {
            rust_files(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

/// `lib.rs` -> [], `a/mod.rs` -> [a], `a/b.rs` -> [a, b].
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    match parts.pop() {
        Some(last) if last == ROOT && parts.is_empty() => {}
        Some(last) if last == "mod.rs" => {}
        Some(last) => parts.push(last.strip_suffix(".rs").unwrap_or(&last).to_owned()),
        None => {}
    }
    parts
}

fn violations(
    files: &[SourceFile],
    edges: &BTreeMap<(String, String), Vec<Import>>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for f in files {
        if let Some(layer) = &f.layer
            && allowed(layer).is_none()
        {
            out.push(Violation::UnknownLayer {
                file: f.path.clone(),
                layer: layer.clone(),
            });
        }
    }
    for ((from, to), imports) in edges {
        let (Some(from_layer), Some(to_layer)) = (layer_of(from), layer_of(to)) else {
            continue;
        };
        let Some(may) = allowed(&from_layer) else {
            continue;
        };
        if from_layer != to_layer && !may.contains(&to_layer.as_str()) {
            out.push(Violation::Forbidden {
                from: from.clone(),
                from_layer,
                to: to.clone(),
                to_layer,
                imports: imports.clone(),
            });
        }
    }
    out
}

/// Strongly connected components (Tarjan) of more than one file, or of one file with an edge to
/// itself, each with one concrete cycle.
fn cycles(files: &[SourceFile], edges: &BTreeMap<(String, String), Vec<Import>>) -> Vec<Cycle> {
    let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let index = |name: &str| names.iter().position(|n| *n == name);
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (from, to) in edges.keys() {
        if let (Some(a), Some(b)) = (index(from), index(to)) {
            next[a].push(b);
        }
    }

    struct Tarjan<'a> {
        next: &'a [Vec<usize>],
        counter: usize,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        sccs: Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.counter);
            self.low[v] = self.counter;
            self.counter += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in &self.next[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                self.sccs.push(scc);
            }
        }
    }
    let n = names.len();
    let mut t = Tarjan {
        next: &next,
        counter: 0,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        sccs: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }

    let mut out = Vec::new();
    for mut scc in t.sccs {
        scc.sort_unstable();
        let start = scc[0];
        if scc.len() == 1 && !next[start].contains(&start) {
            continue;
        }
        // The shortest way from the first file back to it, inside the component.
        let inside: BTreeSet<usize> = scc.iter().copied().collect();
        let mut prev: Vec<Option<usize>> = vec![None; n];
        let mut queue = VecDeque::from([start]);
        let mut back = None;
        'bfs: while let Some(v) = queue.pop_front() {
            for &w in &next[v] {
                if w == start {
                    back = Some(v);
                    break 'bfs;
                }
                if inside.contains(&w) && prev[w].is_none() {
                    prev[w] = Some(v);
                    queue.push_back(w);
                }
            }
        }
        let mut order = vec![start];
        let mut at = back;
        while let Some(v) = at {
            if v == start {
                break;
            }
            order.push(v);
            at = prev[v];
        }
        order[1..].reverse();
        order.push(start);
        let path = order
            .windows(2)
            .map(|w| {
                let (from, to) = (names[w[0]].to_owned(), names[w[1]].to_owned());
                let import = edges
                    .get(&(from.clone(), to.clone()))
                    .and_then(|i| i.first().cloned())
                    .unwrap_or(Import {
                        line: 0,
                        path: String::new(),
                        via: Vec::new(),
                    });
                Step { from, to, import }
            })
            .collect();
        out.push(Cycle {
            files: scc.iter().map(|&i| names[i].to_owned()).collect(),
            path,
        });
    }
    out.sort_by(|a, b| {
        b.files
            .len()
            .cmp(&a.files.len())
            .then_with(|| a.files.cmp(&b.files))
    });
    out
}

/// The names a module defines and brings into scope.
#[derive(Debug, Default)]
struct Scope {
    /// Items defined here (types, functions, constants, macros, inline modules).
    items: BTreeSet<String>,
    /// Names bound by module-level `use` items, and the path each names.
    uses: BTreeMap<String, Raw>,
    /// Module-level glob imports.
    globs: Vec<Raw>,
}

/// A path as written, with the module it was written in.
#[derive(Debug, Clone)]
struct Raw {
    ctx: Vec<String>,
    segs: Vec<String>,
    /// A leading `::`: another crate.
    global: bool,
}

#[derive(Debug)]
struct Found {
    ctx: Vec<String>,
    segs: Vec<String>,
    global: bool,
    text: String,
    line: usize,
}

/// Walks one file: its module scopes and every path that may be an import.
struct Collector {
    /// The module being walked (the file's module, then its inline modules).
    ctx: Vec<String>,
    /// Inside a block (function body, constant initialiser): `use` items there bind no module
    /// names, and items there are not the module's.
    in_block: usize,
    scopes: BTreeMap<Vec<String>, Scope>,
    found: Vec<Found>,
}

impl Collector {
    fn scope(&mut self) -> &mut Scope {
        self.scopes.entry(self.ctx.clone()).or_default()
    }

    fn define(&mut self, name: &syn::Ident) {
        if self.in_block == 0 {
            let name = name.to_string();
            self.scope().items.insert(name);
        }
    }

    fn found(&mut self, segs: Vec<String>, global: bool, line: usize, text: String) {
        self.found.push(Found {
            ctx: self.ctx.clone(),
            segs,
            global,
            text,
            line,
        });
    }

    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>, global: bool) {
        let text = |segs: &[String], tail: &str| {
            let mut t = if global {
                "::".to_owned()
            } else {
                String::new()
            };
            t.push_str(&segs.join("::"));
            if !tail.is_empty() {
                if !segs.is_empty() {
                    t.push_str("::");
                }
                t.push_str(tail);
            }
            t
        };
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix, global);
                prefix.pop();
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(t, prefix, global);
                }
            }
            syn::UseTree::Name(n) => {
                self.use_name(&n.ident, &n.ident, prefix, global, &text);
            }
            syn::UseTree::Rename(r) => {
                self.use_name(&r.ident, &r.rename, prefix, global, &text);
            }
            syn::UseTree::Glob(g) => {
                let line = g.star_token.spans[0].start().line;
                self.found(prefix.clone(), global, line, text(prefix, "*"));
                if self.in_block == 0 {
                    let raw = Raw {
                        ctx: self.ctx.clone(),
                        segs: prefix.clone(),
                        global,
                    };
                    self.scope().globs.push(raw);
                }
            }
        }
    }

    fn use_name(
        &mut self,
        ident: &syn::Ident,
        binding: &syn::Ident,
        prefix: &[String],
        global: bool,
        text: &dyn Fn(&[String], &str) -> String,
    ) {
        let name = ident.to_string();
        // `use a::b::{self}` names the module `a::b`.
        let mut segs = prefix.to_vec();
        if name != "self" {
            segs.push(name.clone());
        }
        let line = ident.span().start().line;
        self.found(segs.clone(), global, line, text(&segs, ""));
        let bound = if binding == ident && name == "self" {
            prefix.last().cloned()
        } else {
            Some(binding.to_string())
        };
        if let Some(bound) = bound
            && bound != "_"
            && self.in_block == 0
        {
            let raw = Raw {
                ctx: self.ctx.clone(),
                segs,
                global,
            };
            self.scope().uses.entry(bound).or_insert(raw);
        }
    }

    /// `crate::a::b`, `$crate::a`, `self::a`, `super::super::a` token sequences in a macro body.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => {
                    self.scan_tokens(g.stream());
                    i += 1;
                }
                TokenTree::Ident(id)
                    if matches!(id.to_string().as_str(), "crate" | "self" | "super") =>
                {
                    let line = id.span().start().line;
                    let mut segs = vec![id.to_string()];
                    let mut j = i + 1;
                    while let (
                        Some(TokenTree::Punct(a)),
                        Some(TokenTree::Punct(b)),
                        Some(TokenTree::Ident(next)),
                    ) = (tokens.get(j), tokens.get(j + 1), tokens.get(j + 2))
                    {
                        if a.as_char() != ':' || a.spacing() != Spacing::Joint || b.as_char() != ':'
                        {
                            break;
                        }
                        segs.push(next.to_string());
                        j += 3;
                    }
                    if segs.len() > 1 {
                        let text = segs.join("::");
                        self.found(segs, false, line, text);
                    }
                    i = j;
                }
                _ => i += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        match item {
            syn::Item::Const(i) => self.define(&i.ident),
            syn::Item::Enum(i) => self.define(&i.ident),
            syn::Item::ExternCrate(i) => {
                self.define(i.rename.as_ref().map_or(&i.ident, |(_, r)| r));
            }
            syn::Item::Fn(i) => self.define(&i.sig.ident),
            syn::Item::Macro(i) => {
                if let Some(id) = &i.ident {
                    self.define(id);
                }
            }
            syn::Item::Mod(i) => self.define(&i.ident),
            syn::Item::Static(i) => self.define(&i.ident),
            syn::Item::Struct(i) => self.define(&i.ident),
            syn::Item::Trait(i) => self.define(&i.ident),
            syn::Item::TraitAlias(i) => self.define(&i.ident),
            syn::Item::Type(i) => self.define(&i.ident),
            syn::Item::Union(i) => self.define(&i.ident),
            _ => {}
        }
        visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // `mod x;` declares a child file: not an import.
        let Some((_, items)) = &m.content else {
            return;
        };
        self.ctx.push(m.ident.to_string());
        if self.in_block == 0 {
            self.scope();
        }
        // A module starts a new item scope even inside a block.
        let outer = std::mem::replace(&mut self.in_block, 0);
        let is_module = outer == 0;
        if is_module {
            for item in items {
                self.visit_item(item);
            }
        } else {
            // A module inside a function body is not reachable by path from outside; its
            // imports count, its names do not.
            self.in_block = 1;
            for item in items {
                self.visit_item(item);
            }
        }
        self.in_block = outer;
        self.ctx.pop();
    }

    fn visit_block(&mut self, b: &'ast syn::Block) {
        self.in_block += 1;
        visit::visit_block(self, b);
        self.in_block -= 1;
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&u.tree, &mut Vec::new(), u.leading_colon.is_some());
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.segments.len() > 1 {
            let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            let line = p.segments[0].ident.span().start().line;
            let global = p.leading_colon.is_some();
            let text = format!("{}{}", if global { "::" } else { "" }, segs.join("::"));
            self.found(segs, global, line, text);
        }
        visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        match m.parse_body_with(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated) {
            Ok(exprs) => {
                for e in &exprs {
                    self.visit_expr(e);
                }
            }
            Err(_) => self.scan_tokens(m.tokens.clone()),
        }
    }

    // `pub(super)`, `pub(in crate::a)` restrict visibility; they import nothing.
    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {}

    // Attributes (`#[doc]` links, `#[cfg]`) import nothing.
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
}

struct Module {
    file: String,
    scope: Scope,
}

/// Every module of the crate (files and inline modules), by module path.
struct Crate {
    modules: BTreeMap<Vec<String>, Module>,
}

/// Where a path leads.
struct Target {
    file: String,
    via: Vec<String>,
    /// The name was found defined (not only the module that should hold it).
    found: bool,
}

impl Crate {
    /// The absolute module path (without `crate`) a path written in module `ctx` names, or `None`
    /// when it names another crate (or nothing this check can see).
    fn absolutize(
        &self,
        ctx: &[String],
        segs: &[String],
        global: bool,
        depth: usize,
    ) -> Option<Vec<String>> {
        if global || segs.is_empty() || depth > MAX_DEPTH {
            return None;
        }
        let first = segs[0].as_str();
        if matches!(first, "crate" | "$crate") {
            return Some(segs[1..].to_vec());
        }
        if matches!(first, "self" | "super") {
            let mut base = ctx.to_vec();
            let mut i = 0;
            while i < segs.len() && matches!(segs[i].as_str(), "self" | "super") {
                if segs[i] == "super" {
                    base.pop()?;
                }
                i += 1;
            }
            base.extend_from_slice(&segs[i..]);
            return Some(base);
        }
        let joined = |base: &[String], rest: &[String]| {
            let mut v = base.to_vec();
            v.extend_from_slice(rest);
            v
        };
        let mut child = ctx.to_vec();
        child.push(first.to_owned());
        if self.modules.contains_key(&child) {
            return Some(joined(ctx, segs));
        }
        let scope = &self.modules.get(ctx)?.scope;
        if scope.items.contains(first) {
            return Some(joined(ctx, segs));
        }
        if let Some(b) = scope.uses.get(first) {
            let target = self.absolutize(&b.ctx, &b.segs, b.global, depth + 1)?;
            return Some(joined(&target, &segs[1..]));
        }
        for g in &scope.globs {
            let Some(base) = self.absolutize(&g.ctx, &g.segs, g.global, depth + 1) else {
                continue;
            };
            let mut child = base.clone();
            child.push(first.to_owned());
            let has = self.modules.contains_key(&child)
                || self.modules.get(&base).is_some_and(|m| {
                    m.scope.items.contains(first) || m.scope.uses.contains_key(first)
                });
            if has {
                return Some(joined(&base, segs));
            }
        }
        None
    }

    /// The file that defines what an absolute path names, following re-exports.
    fn resolve(&self, abs: &[String], seen: &mut BTreeSet<Vec<String>>) -> Option<Target> {
        if seen.len() > MAX_DEPTH * 8 || !seen.insert(abs.to_vec()) {
            return None;
        }
        let k = (0..=abs.len())
            .rev()
            .find(|k| self.modules.contains_key(&abs[..*k]))?;
        let module = &self.modules[&abs[..k]];
        let here = |found| Target {
            file: module.file.clone(),
            via: Vec::new(),
            found,
        };
        let rest = &abs[k..];
        let Some(name) = rest.first() else {
            return Some(here(true));
        };
        if module.scope.items.contains(name) {
            return Some(here(true));
        }
        let through = |mut t: Target| {
            t.via.insert(0, module.file.clone());
            t
        };
        if let Some(b) = module.scope.uses.get(name) {
            let Some(mut target) = self.absolutize(&b.ctx, &b.segs, b.global, 0) else {
                // An item of another crate, re-exported here.
                return Some(here(true));
            };
            target.extend_from_slice(&rest[1..]);
            return Some(match self.resolve(&target, seen) {
                Some(t) => through(t),
                None => here(false),
            });
        }
        for g in &module.scope.globs {
            let Some(mut base) = self.absolutize(&g.ctx, &g.segs, g.global, 0) else {
                continue;
            };
            base.extend_from_slice(rest);
            if let Some(t) = self.resolve(&base, seen)
                && t.found
            {
                return Some(through(t));
            }
        }
        Some(here(false))
    }
}

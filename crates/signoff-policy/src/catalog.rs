//! The resource catalog (`catalog.toml` beside the policies): what the
//! operator protects, with the facts policies should trust instead of the
//! requester's claims, and an optional registry of actions.
//!
//! ```toml
//! [[resource]]
//! name = "prod"                  # an exact resource name (also a parent)
//! environment = "prod"
//!
//! [[resource]]
//! name = "customers"
//! parent = "prod"                # `resource in Resource::"prod"`; unset
//! classification = "pii"         # environment, classification and owner
//! owner = "data-owners"          # are inherited from the parent chain
//! tags = ["postgres"]
//!
//! [[resource]]
//! pattern = "s3://finance-*"     # `*` matches any run of characters
//! environment = "prod"
//! classification = "financial"
//!
//! [[action]]                     # optional: the action registry
//! name = "db.export"
//! context = { rows = "long" }    # context keys policies may read (string, long, bool)
//! ```
//!
//! A resource resolves to its exact entry if there is one, otherwise to the
//! first pattern (in file order) that matches it, otherwise it is unknown
//! (`resource.known == false`, every other attribute empty).

use crate::diag;
use crate::Diagnostic;
use serde::Deserialize;
use signoff_core::action::{is_valid_action, RESERVED_CONTEXT_KEYS};
use signoff_core::principal::validate_name;
use signoff_core::ResourceFacts;
use std::collections::{BTreeMap, HashMap};
use toml::Spanned;

/// The catalog's file name in a policy directory.
pub const CATALOG_FILE: &str = "catalog.toml";

/// The type of a registered context key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextType {
    String,
    Long,
    Bool,
}

impl ContextType {
    pub(crate) fn cedar(self) -> &'static str {
        match self {
            ContextType::String => "String",
            ContextType::Long => "Long",
            ContextType::Bool => "Bool",
        }
    }
}

/// One resolved catalog entry: the facts every resource it matches gets.
#[derive(Debug, Clone)]
struct Entry {
    pattern: Option<String>,
    facts: ResourceFacts,
}

/// A validated catalog.
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    entries: Vec<Entry>,
    exact: HashMap<String, usize>,
    /// Entry positions of patterns, in file order.
    patterns: Vec<usize>,
    /// The action registry: action → its context keys. Empty when none
    /// is configured.
    pub(crate) actions: BTreeMap<String, BTreeMap<String, ContextType>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default, rename = "resource")]
    resources: Vec<Spanned<EntrySpec>>,
    #[serde(default, rename = "action")]
    actions: Vec<Spanned<ActionSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    name: Option<Spanned<String>>,
    pattern: Option<Spanned<String>>,
    environment: Option<Spanned<String>>,
    classification: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    parent: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSpec {
    name: Spanned<String>,
    #[serde(default)]
    context: BTreeMap<String, Spanned<String>>,
}

/// Longest resource name, as for requests.
const MAX_RESOURCE: usize = signoff_core::action::limits::RESOURCE;

impl Catalog {
    /// Parses and validates `text` (from `file`), reporting every problem
    /// at its line and column.
    pub(crate) fn parse(file: &str, text: &str) -> Result<Catalog, Vec<Diagnostic>> {
        let spec: CatalogFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let message = format!("invalid catalog: {}", e.message().trim());
            vec![match offset {
                Some(o) => diag::at(file, text, o, message),
                None => diag::unlocated(file, message),
            }]
        })?;
        let mut problems = Vec::new();
        let at = |offset: usize, message: String| diag::at(file, text, offset, message);
        let check_value = |what: &str, v: &Spanned<String>, problems: &mut Vec<Diagnostic>| {
            if let Err(m) = validate_name(what, v.get_ref()) {
                problems.push(at(v.span().start, m));
            }
        };

        // First pass: every entry on its own.
        struct Raw {
            key: String,
            pattern: bool,
            line: usize,
            spec: EntrySpec,
        }
        let mut raws: Vec<Raw> = Vec::new();
        let mut seen: HashMap<(bool, String), usize> = HashMap::new();
        for entry in spec.resources {
            let offset = entry.span().start;
            let spec = entry.into_inner();
            let (key, pattern, key_offset) = match (&spec.name, &spec.pattern) {
                (Some(n), None) => (n.get_ref().clone(), false, n.span().start),
                (None, Some(p)) => (p.get_ref().clone(), true, p.span().start),
                _ => {
                    problems.push(at(
                        offset,
                        "a [[resource]] needs exactly one of `name` or `pattern`".into(),
                    ));
                    continue;
                }
            };
            if key.is_empty() || key.len() > MAX_RESOURCE {
                problems.push(at(
                    key_offset,
                    format!("resource name or pattern must be 1-{MAX_RESOURCE} characters"),
                ));
                continue;
            }
            if pattern && !key.contains('*') {
                problems.push(at(
                    key_offset,
                    format!(
                        "pattern `{key}` has no `*`; use `name = \"{key}\"` for an exact resource"
                    ),
                ));
                continue;
            }
            if !pattern && key.contains('*') {
                problems.push(at(
                    key_offset,
                    format!("name `{key}` contains `*`; use `pattern = \"{key}\"` to match several resources"),
                ));
                continue;
            }
            let (line, _) = diag::line_col(text, key_offset);
            if let Some(first) = seen.get(&(pattern, key.clone())) {
                problems.push(at(
                    key_offset,
                    format!(
                        "{} `{key}` is listed twice (first at line {first})",
                        if pattern { "pattern" } else { "resource" }
                    ),
                ));
                continue;
            }
            seen.insert((pattern, key.clone()), line);
            for (what, v) in [
                ("environment", &spec.environment),
                ("classification", &spec.classification),
                ("owner", &spec.owner),
            ] {
                if let Some(v) = v {
                    check_value(what, v, &mut problems);
                }
            }
            for t in &spec.tags {
                check_value("tag", t, &mut problems);
            }
            raws.push(Raw {
                key,
                pattern,
                line,
                spec,
            });
        }

        // Parents must be exact entries; the chain must end.
        let names: HashMap<&str, usize> = raws
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.pattern)
            .map(|(i, r)| (r.key.as_str(), i))
            .collect();
        let mut chains: Vec<Vec<usize>> = Vec::with_capacity(raws.len());
        for (i, raw) in raws.iter().enumerate() {
            let mut chain = Vec::new();
            let mut current = i;
            let mut broken = false;
            while let Some(parent) = &raws[current].spec.parent {
                match names.get(parent.get_ref().as_str()) {
                    Some(&p) if p == i || chain.contains(&p) => {
                        if current == i || p == i {
                            problems.push(at(
                                parent.span().start,
                                format!(
                                    "parent chain of `{}` loops back to `{}`",
                                    raw.key, raws[p].key
                                ),
                            ));
                        }
                        broken = true;
                        break;
                    }
                    Some(&p) => {
                        chain.push(p);
                        current = p;
                    }
                    None => {
                        if current == i {
                            problems.push(at(
                                parent.span().start,
                                format!(
                                    "parent `{}` of `{}` is not a resource `name` in the catalog",
                                    parent.get_ref(),
                                    raw.key
                                ),
                            ));
                        }
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                chain.clear();
            }
            chains.push(chain);
        }

        let mut catalog = Catalog::default();
        for (i, raw) in raws.iter().enumerate() {
            let inherited = |pick: fn(&EntrySpec) -> &Option<Spanned<String>>| {
                std::iter::once(i)
                    .chain(chains[i].iter().copied())
                    .find_map(|j| pick(&raws[j].spec).as_ref().map(|v| v.get_ref().clone()))
            };
            let mut tags: Vec<String> = raw.spec.tags.iter().map(|t| t.get_ref().clone()).collect();
            tags.sort();
            tags.dedup();
            let facts = ResourceFacts {
                known: true,
                entry: Some(raw.key.clone()),
                defined_at: Some(format!("{file}:{}", raw.line)),
                environment: inherited(|s| &s.environment),
                classification: inherited(|s| &s.classification),
                owner: inherited(|s| &s.owner),
                tags,
                ancestors: chains[i].iter().map(|&j| raws[j].key.clone()).collect(),
            };
            let pos = catalog.entries.len();
            if raw.pattern {
                catalog.patterns.push(pos);
            } else {
                catalog.exact.insert(raw.key.clone(), pos);
            }
            catalog.entries.push(Entry {
                pattern: raw.pattern.then(|| raw.key.clone()),
                facts,
            });
        }

        for action in spec.actions {
            let name = action.get_ref().name.get_ref().clone();
            if !is_valid_action(&name) {
                problems.push(at(
                    action.get_ref().name.span().start,
                    format!("invalid action `{name}`: use dot-separated segments, e.g. db.export"),
                ));
                continue;
            }
            if catalog.actions.contains_key(&name) {
                problems.push(at(
                    action.get_ref().name.span().start,
                    format!("action `{name}` is listed twice"),
                ));
                continue;
            }
            let mut keys = BTreeMap::new();
            for (key, ty) in &action.get_ref().context {
                let ok_key = !key.is_empty()
                    && key
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok_key {
                    problems.push(at(
                        ty.span().start,
                        format!("context key `{key}` of action `{name}` must be letters, digits and '_'"),
                    ));
                    continue;
                }
                if RESERVED_CONTEXT_KEYS.contains(&key.as_str()) {
                    problems.push(at(
                        ty.span().start,
                        format!("context key `{key}` is signoff's own; it cannot be declared"),
                    ));
                    continue;
                }
                let t = match ty.get_ref().as_str() {
                    "string" => ContextType::String,
                    "long" => ContextType::Long,
                    "bool" => ContextType::Bool,
                    other => {
                        problems.push(at(
                            ty.span().start,
                            format!("unknown type `{other}` for context key `{key}` (expected string, long or bool)"),
                        ));
                        continue;
                    }
                };
                keys.insert(key.clone(), t);
            }
            catalog.actions.insert(name, keys);
        }

        problems.sort_by_key(|d| (d.line, d.column));
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems)
        }
    }

    /// The catalog's facts for `resource`.
    pub(crate) fn resolve(&self, resource: &str) -> ResourceFacts {
        if let Some(&i) = self.exact.get(resource) {
            return self.entries[i].facts.clone();
        }
        for &i in &self.patterns {
            if let Some(p) = &self.entries[i].pattern {
                if glob_match(p, resource) {
                    return self.entries[i].facts.clone();
                }
            }
        }
        ResourceFacts::default()
    }

    /// Whether the catalog has an action registry.
    pub(crate) fn has_registry(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Number of resource entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (including none and `/`). Linear in practice: the classic
/// backtrack-to-last-star algorithm.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"
[[resource]]
name = "prod"
environment = "prod"

[[resource]]
name = "customers"
parent = "prod"
classification = "pii"
owner = "data-owners"
tags = ["postgres", "crm"]

[[resource]]
pattern = "s3://finance-*"
parent = "prod"
classification = "financial"

[[resource]]
pattern = "prod/*"
parent = "prod"

[[resource]]
name = "scratch"
environment = "staging"

[[action]]
name = "db.export"
context = { rows = "long" }
"#;

    #[test]
    fn resolves_exact_then_patterns_with_inheritance() {
        let c = Catalog::parse("catalog.toml", CATALOG).unwrap();
        let customers = c.resolve("customers");
        assert!(customers.known);
        assert_eq!(customers.environment.as_deref(), Some("prod"));
        assert_eq!(customers.classification.as_deref(), Some("pii"));
        assert_eq!(customers.owner.as_deref(), Some("data-owners"));
        assert_eq!(customers.tags, ["crm", "postgres"]);
        assert_eq!(customers.ancestors, ["prod"]);
        assert_eq!(customers.defined_at.as_deref(), Some("catalog.toml:7"));
        let bucket = c.resolve("s3://finance-q3");
        assert_eq!(bucket.entry.as_deref(), Some("s3://finance-*"));
        assert_eq!(bucket.environment.as_deref(), Some("prod"));
        assert_eq!(bucket.classification.as_deref(), Some("financial"));
        assert_eq!(c.resolve("prod/api").entry.as_deref(), Some("prod/*"));
        assert_eq!(c.resolve("scratch").environment.as_deref(), Some("staging"));
        let unknown = c.resolve("customers2");
        assert_eq!(unknown, ResourceFacts::default());
        assert!(!unknown.known);
        assert_eq!(c.actions["db.export"]["rows"], ContextType::Long);
    }

    #[test]
    fn problems_are_located() {
        let bad = "[[resource]]\nname = \"a\"\nparent = \"nope\"\n\n[[resource]]\npattern = \"x\"\n\n[[resource]]\nname = \"b\"\nenvironment = \"pr od\"\n\n[[action]]\nname = \"db.export\"\ncontext = { rows = \"float\" }\n";
        let problems = Catalog::parse("catalog.toml", bad).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "catalog.toml:3:10: parent `nope` of `a` is not a resource `name` in the catalog",
                "catalog.toml:6:11: pattern `x` has no `*`; use `name = \"x\"` for an exact resource",
                "catalog.toml:10:15: invalid environment `pr od`: use 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit",
                "catalog.toml:14:20: unknown type `float` for context key `rows` (expected string, long or bool)",
            ]
            .map(String::from)
            .to_vec(),
            "{shown:#?}"
        );
        let err = Catalog::parse("catalog.toml", "[[resource]]\nnam = \"a\"\n").unwrap_err();
        assert!(
            err[0]
                .to_string()
                .starts_with("catalog.toml:2:1: invalid catalog: unknown field `nam`"),
            "{err:?}"
        );
        let looped = "[[resource]]\nname = \"a\"\nparent = \"b\"\n[[resource]]\nname = \"b\"\nparent = \"a\"\n";
        let err = Catalog::parse("catalog.toml", looped).unwrap_err();
        assert!(err[0].message.contains("loops back"), "{err:?}");
    }

    #[test]
    fn glob() {
        assert!(glob_match("prod/*", "prod/a/b"));
        assert!(!glob_match("prod/*", "production"));
        assert!(glob_match("s3://finance-*", "s3://finance-"));
        assert!(glob_match("*-db-*", "eu-db-1"));
        assert!(!glob_match("*-db-*", "eu-db"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }
}

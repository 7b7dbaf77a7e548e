//! Reading, parsing, annotating, validating and indexing a policy directory.

use crate::annotations::{parse_approval, parse_ttl};
use crate::catalog::{Catalog, CATALOG_FILE};
use crate::diag;
use crate::explain::Effect;
use crate::index::{ActionIndex, CandidateCache};
use crate::{Diagnostic, PolicyError, PolicySources};
use cedar_policy::{EntityTypeName, PolicyId, Schema, ValidationMode, Validator};
use sha2::{Digest as _, Sha256};
use signoff_core::Requirement;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;

/// One loaded policy and what signoff read from its annotations.
#[derive(Debug)]
pub(crate) struct PolicyMeta {
    /// `@id`, or `FILE:INDEX`.
    pub(crate) id: String,
    /// File name the policy came from.
    pub(crate) file: String,
    /// 1-based position of the policy's first character.
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) effect: Effect,
    pub(crate) approval: Option<Requirement>,
    pub(crate) ttl_seconds: Option<u64>,
    pub(crate) reason: Option<String>,
    /// Every annotation, signoff's and the author's own, by key.
    pub(crate) annotations: BTreeMap<String, String>,
    /// The policy under its signoff id.
    pub(crate) policy: cedar_policy::Policy,
    /// Whether the policy names any `Group::"…"`; only then can the
    /// principal's group memberships matter to it.
    pub(crate) mentions_group: bool,
    /// The `Action::"…"` ids the policy names; only when one is a dotted
    /// prefix of the request's action does the action hierarchy matter.
    pub(crate) action_literals: Vec<String>,
    /// Whether the conditions read `principal` (its attributes, or
    /// compare it): only then must the principal entity carry them.
    pub(crate) reads_principal: bool,
    /// Whether the policy can observe the resource entity (attributes or
    /// `in` its catalog parents).
    pub(crate) reads_resource: bool,
}

/// Cedar entity type names, parsed once instead of per request.
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) agent: EntityTypeName,
    pub(crate) user: EntityTypeName,
    pub(crate) group: EntityTypeName,
    pub(crate) action: EntityTypeName,
    pub(crate) resource: EntityTypeName,
}

impl Names {
    fn new() -> Result<Self, String> {
        let parse = |s: &str| {
            EntityTypeName::from_str(s)
                .map_err(|e| format!("internal error: entity type `{s}`: {e}"))
        };
        Ok(Names {
            agent: parse("Agent")?,
            user: parse("User")?,
            group: parse("Group")?,
            action: parse("Action")?,
            resource: parse("Resource")?,
        })
    }
}

/// A loaded policy set with everything evaluation needs.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) hash: String,
    /// The files it was built from, so other replicas can build the same set.
    pub(crate) sources: crate::PolicySources,
    /// In load order: files by name, then position in file.
    pub(crate) policies: Vec<PolicyMeta>,
    pub(crate) by_id: HashMap<String, usize>,
    /// Every policy; the reference the index is tested against.
    pub(crate) full: cedar_policy::PolicySet,
    pub(crate) index: ActionIndex,
    pub(crate) cache: CandidateCache,
    /// Principal, resource and action entities built for earlier requests.
    pub(crate) entities: crate::entities::EntityCache,
    pub(crate) names: Names,
    pub(crate) authorizer: cedar_policy::Authorizer,
    /// The resource catalog (empty when the directory has none).
    pub(crate) catalog: Catalog,
    /// Problems that do not stop the set from loading.
    pub(crate) warnings: Vec<Diagnostic>,
}

/// Reads `*.cedar` files and at most one `*.cedarschema` from `dir`.
pub(crate) fn load_dir(dir: &Path) -> Result<Compiled, PolicyError> {
    let shown = dir.display().to_string();
    let fail = |message: String| PolicyError {
        diagnostics: vec![diag::unlocated(&shown, message)],
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(format!("policy directory {shown} does not exist")))
        }
        Err(e) => return Err(fail(format!("cannot read policy directory {shown}: {e}"))),
    };
    let mut diagnostics = Vec::new();
    let mut names: Vec<(String, std::path::PathBuf)> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let wanted = name.ends_with(".cedar")
                    || name.ends_with(".cedarschema")
                    || name == CATALOG_FILE;
                if wanted && path.is_file() {
                    names.push((name, path));
                }
            }
            Err(e) => diagnostics.push(diag::unlocated(
                &shown,
                format!("cannot list policy directory {shown}: {e}"),
            )),
        }
    }
    names.sort();
    let mut files = Vec::new();
    let mut schemas: Vec<(String, String)> = Vec::new();
    let mut catalog = None;
    for (name, path) in names {
        match std::fs::read_to_string(&path) {
            Ok(text) if name.ends_with(".cedarschema") => schemas.push((name, text)),
            Ok(text) if name == CATALOG_FILE => catalog = Some((name, text)),
            Ok(text) => files.push((name, text)),
            Err(e) => diagnostics.push(diag::unlocated(
                &name,
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }
    if files.is_empty() && diagnostics.is_empty() {
        return Err(fail(format!("no *.cedar files in {shown}")));
    }
    if schemas.len() > 1 {
        let listed = schemas
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        diagnostics.push(diag::unlocated(
            &shown,
            format!("more than one *.cedarschema file in {shown}: {listed}"),
        ));
    }
    let schema = if schemas.len() == 1 {
        schemas.pop()
    } else {
        None
    };
    let sources = PolicySources {
        files,
        schema,
        catalog,
    };
    match compile(&sources) {
        Ok(compiled) if diagnostics.is_empty() => Ok(compiled),
        Ok(_) => Err(PolicyError { diagnostics }),
        Err(e) => {
            diagnostics.extend(e.diagnostics);
            Err(PolicyError { diagnostics })
        }
    }
}

/// Parses, annotates, validates and indexes in-memory files.
pub(crate) fn compile(sources: &PolicySources) -> Result<Compiled, PolicyError> {
    compile_with(sources, true)
}

/// [`compile`], optionally without the schema check: the evaluation-rule
/// tests load policies the schema would reject, to prove evaluation alone
/// still fails closed (an operator's own schema may be laxer).
pub(crate) fn compile_with(
    sources: &PolicySources,
    check_schema: bool,
) -> Result<Compiled, PolicyError> {
    let files = &sources.files;
    let schema = &sources.schema;
    let mut diagnostics = Vec::new();
    let mut warnings = Vec::new();
    let catalog = match &sources.catalog {
        Some((name, text)) => match Catalog::parse(name, text) {
            Ok(c) => c,
            Err(problems) => {
                diagnostics.extend(problems);
                Catalog::default()
            }
        },
        None => Catalog::default(),
    };
    if files.is_empty() {
        return Err(PolicyError {
            diagnostics: vec![diag::unlocated("", "no *.cedar files")],
        });
    }
    let names = Names::new().map_err(|m| PolicyError {
        diagnostics: vec![diag::unlocated("", m)],
    })?;

    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));

    let mut policies: Vec<PolicyMeta> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (file, text) in &sorted {
        for parsed in parse_file(file, text, &mut diagnostics) {
            if let Some(&first) = by_id.get(&parsed.id) {
                let f = &policies[first];
                diagnostics.push(Diagnostic {
                    file: parsed.file.clone(),
                    line: parsed.line,
                    column: parsed.column,
                    message: format!(
                        "duplicate policy id `{}`: also defined at {}:{}:{}",
                        parsed.id, f.file, f.line, f.column
                    ),
                });
                continue;
            }
            by_id.insert(parsed.id.clone(), policies.len());
            policies.push(parsed);
        }
    }

    let mut full = cedar_policy::PolicySet::new();
    for meta in &policies {
        if let Err(e) = full.add(meta.policy.clone()) {
            diagnostics.push(Diagnostic {
                file: meta.file.clone(),
                line: meta.line,
                column: meta.column,
                message: format!("cannot add policy `{}`: {e}", meta.id),
            });
        }
    }

    for meta in &mut policies {
        for uid in meta.policy.entity_literals() {
            if uid.type_name() == &names.group {
                meta.mentions_group = true;
            } else if uid.type_name() == &names.action {
                meta.action_literals.push(uid.id().unescaped().to_owned());
            }
        }
        meta.action_literals.sort();
        meta.action_literals.dedup();
        (meta.reads_principal, meta.reads_resource) = observes(&meta.policy);
    }
    let literals: std::collections::BTreeSet<String> = policies
        .iter()
        .flat_map(|m| m.action_literals.iter().cloned())
        .collect();

    // The operator's own schema replaces the generated one; without one,
    // every set is checked against signoff's.
    let (schema_file, schema_text) = match schema {
        Some((f, t)) => (f.clone(), t.clone()),
        None => (
            "(signoff schema)".to_owned(),
            crate::schema::full_schema(&literals, &catalog),
        ),
    };
    if check_schema {
        validate(
            &schema_file,
            &schema_text,
            &full,
            &policies,
            &by_id,
            &sorted,
            &mut diagnostics,
            &mut warnings,
        );
    }
    if catalog.has_registry() {
        for meta in &policies {
            for a in &meta.action_literals {
                let registered = catalog.actions.keys().any(|r| {
                    r == a
                        || (r.starts_with(a.as_str()) && r.as_bytes().get(a.len()) == Some(&b'.'))
                });
                if !registered {
                    warnings.push(Diagnostic {
                        file: meta.file.clone(),
                        line: meta.line,
                        column: meta.column,
                        message: format!(
                            "warning: policy `{}` names action `{a}`, which is not in the action registry of {CATALOG_FILE}",
                            meta.id
                        ),
                    });
                }
            }
        }
    }

    if !diagnostics.is_empty() {
        // Reading order: by file, then position; cedar reports some parse
        // errors out of order.
        diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        return Err(PolicyError { diagnostics });
    }

    let mut index = ActionIndex::default();
    for (pos, meta) in policies.iter().enumerate() {
        index.insert(pos, &meta.policy.action_constraint(), &names.action);
    }

    let mut hashed: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    if let Some((n, t)) = &schema {
        hashed.push((n, t));
    }
    if let Some((n, t)) = &sources.catalog {
        hashed.push((n, t));
    }
    warnings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Ok(Compiled {
        hash: hash_files(&mut hashed),
        sources: sources.clone(),
        catalog,
        warnings,
        policies,
        by_id,
        full,
        index,
        cache: CandidateCache::default(),
        entities: Default::default(),
        names,
        authorizer: cedar_policy::Authorizer::new(),
    })
}

/// SHA-256 hex over `name 0x00 content 0x00` for each file, sorted by name.
pub(crate) fn hash_files(files: &mut [(&str, &str)]) -> String {
    files.sort();
    let mut h = Sha256::new();
    for (name, text) in files.iter() {
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(text.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Parses one file into policies with signoff ids and annotations, pushing
/// every problem to `diagnostics` and keeping the policies that are sound.
fn parse_file(file: &str, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<PolicyMeta> {
    let pset = match cedar_policy::PolicySet::from_str(text) {
        Ok(pset) => pset,
        Err(errs) => {
            diagnostics.extend(errs.iter().map(|e| diag::from_miette(file, text, e)));
            return Vec::new();
        }
    };
    let count = pset.num_of_policies() + pset.num_of_templates();
    let mut out = Vec::with_capacity(count);
    // Cedar keeps each policy's own source text but not its offset; policies
    // come in file order, so each one is found after the previous one.
    let mut cursor = 0;
    for index in 0..count {
        // Cedar names the statements of one parse `policy0`, `policy1`, … in
        // file order, templates included.
        let cedar_id = PolicyId::new(format!("policy{index}"));
        if let Some(template) = pset.template(&cedar_id) {
            let start = locate(text, &mut cursor, &template.to_cedar());
            diagnostics.push(diag::at(
                file,
                text,
                start,
                "policy templates (?principal / ?resource slots) are not supported; write a static policy",
            ));
            continue;
        }
        let Some(policy) = pset.policy(&cedar_id) else {
            continue;
        };
        let source = policy.to_cedar().unwrap_or_default();
        let start = locate(text, &mut cursor, &source);
        let problem = |key: &str, message: String| {
            let at = source.find(&format!("@{key}")).map_or(start, |o| start + o);
            diag::at(file, text, at, message)
        };
        let annotations: BTreeMap<String, String> = policy
            .annotations()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let id = match annotations.get("id") {
            Some(id) if id.trim().is_empty() => {
                diagnostics.push(problem("id", "@id must not be empty".into()));
                continue;
            }
            Some(id) => id.clone(),
            None => format!("{file}:{index}"),
        };
        let effect = match policy.effect() {
            cedar_policy::Effect::Permit => Effect::Permit,
            cedar_policy::Effect::Forbid => Effect::Forbid,
        };
        let mut sound = true;
        let mut approval = None;
        let mut ttl_seconds = None;
        for key in ["approval", "ttl"] {
            if effect == Effect::Forbid && annotations.contains_key(key) {
                diagnostics.push(problem(
                    key,
                    format!(
                        "@{key} on forbid policy `{id}`: only permit policies can require approval"
                    ),
                ));
                sound = false;
            }
        }
        if let Some(text) = annotations.get("approval") {
            match parse_approval(text) {
                Ok(r) => approval = Some(r),
                Err(m) => {
                    diagnostics.push(problem("approval", m));
                    sound = false;
                }
            }
        }
        if let Some(text) = annotations.get("ttl") {
            match parse_ttl(text) {
                Ok(t) => ttl_seconds = Some(t),
                Err(m) => {
                    diagnostics.push(problem("ttl", m));
                    sound = false;
                }
            }
        }
        if !sound {
            continue;
        }
        let (line, column) = diag::line_col(text, start);
        out.push(PolicyMeta {
            policy: policy.new_id(PolicyId::new(&id)),
            id,
            file: file.to_owned(),
            line,
            column,
            effect,
            approval,
            ttl_seconds,
            reason: annotations.get("reason").cloned(),
            annotations,
            mentions_group: false,
            action_literals: Vec::new(),
            reads_principal: false,
            reads_resource: false,
        });
    }
    out
}

/// Byte offset of `needle` at or after `cursor`, advancing the cursor past it.
/// Falls back to the cursor itself, which still points near the policy.
fn locate(text: &str, cursor: &mut usize, needle: &str) -> usize {
    let from = (*cursor).min(text.len());
    match text.get(from..).and_then(|rest| rest.find(needle)) {
        Some(rel) if !needle.is_empty() => {
            let start = from + rel;
            *cursor = start + needle.len();
            start
        }
        _ => from,
    }
}

/// Whether a policy's conditions mention `principal` and whether it can
/// observe the resource entity, read from its JSON form. Errs on the side
/// of yes: a needless entity costs time, a missing one a wrong verdict.
fn observes(policy: &cedar_policy::Policy) -> (bool, bool) {
    let Ok(json) = policy.to_json() else {
        return (true, true);
    };
    fn mentions(v: &serde_json::Value, var: &str) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                m.get("Var").and_then(|x| x.as_str()) == Some(var)
                    || m.values().any(|x| mentions(x, var))
            }
            serde_json::Value::Array(a) => a.iter().any(|x| mentions(x, var)),
            _ => false,
        }
    }
    let conditions = json.get("conditions").cloned().unwrap_or_default();
    let resource_scope = !matches!(
        policy.resource_constraint(),
        cedar_policy::ResourceConstraint::Any | cedar_policy::ResourceConstraint::Eq(_)
    );
    (
        mentions(&conditions, "principal"),
        resource_scope || mentions(&conditions, "resource"),
    )
}

/// Strict validation against the schema; every error located in its file.
#[allow(clippy::too_many_arguments)]
fn validate(
    schema_file: &str,
    schema_text: &str,
    full: &cedar_policy::PolicySet,
    policies: &[PolicyMeta],
    by_id: &HashMap<String, usize>,
    files: &[&(String, String)],
    diagnostics: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) {
    let schema = match Schema::from_cedarschema_str(schema_text) {
        Ok((schema, _warnings)) => schema,
        Err(e) => {
            diagnostics.push(diag::from_miette(schema_file, schema_text, &e));
            return;
        }
    };
    let result = Validator::new(schema).validate(full, ValidationMode::Strict);
    let locate = |policy_id: &PolicyId, offset: Option<usize>, message: String| {
        let meta = by_id
            .get(AsRef::<str>::as_ref(policy_id))
            .and_then(|&i| policies.get(i));
        let Some(meta) = meta else {
            return diag::unlocated(schema_file, message);
        };
        let text = files
            .iter()
            .find(|(n, _)| *n == meta.file)
            .map_or("", |(_, t)| t.as_str());
        match offset {
            Some(offset) => diag::at(&meta.file, text, offset, message),
            None => Diagnostic {
                file: meta.file.clone(),
                line: meta.line,
                column: meta.column,
                message,
            },
        }
    };
    for w in result.validation_warnings() {
        let mut message = format!("warning: {}", diag::message(w));
        if matches!(w, cedar_policy::ValidationWarning::ImpossiblePolicy(_)) {
            message.push_str(
                " (a context key the request sends must be declared for its action in catalog.toml: [[action]] name = \"…\" context = { key = \"long\" })",
            );
        }
        warnings.push(locate(w.policy_id(), diag::first_offset(w), message));
    }
    for err in result.validation_errors() {
        diagnostics.push(locate(
            err.policy_id(),
            diag::first_offset(err),
            diag::message(err),
        ));
    }
}

//! What `signoff exec` binds besides the command line: the executable that
//! will really run, the working directory, the contents of files named as
//! arguments, and the environment the child gets.
//!
//! A command line alone can be approved and then mean something else:
//! `sh job.sh` after `job.sh` was rewritten, `sh -c 'echo $EVIL'` with a
//! value the reviewer never saw, `pg_dump` resolving to another binary
//! through `PATH`. The binding is put in the request's context (so it is in
//! the digest and shown to reviewers) and taken again right before the
//! claim; any difference changes the digest, the gateway refuses the claim,
//! and [`Binding::differences`] says which part changed.
//!
//! Like sudo's `env_reset`, the child gets a minimal environment: the
//! variables in [`BASE_ENV`] that are set, plus those the caller names with
//! `--pass-env`. Values of names that look like secrets are bound by their
//! SHA-256 instead of shown.

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Variables every child gets when they are set (as sudo keeps them).
pub const BASE_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TERM", "USER"];

/// Files named as arguments are bound up to this size; a larger one is
/// recorded as not bound, so reviewers see that it could change.
pub const MAX_BOUND_FILE: u64 = 16 * 1024 * 1024;

/// The executable is hashed up to this size (larger ones are refused: an
/// executable the gate cannot bind is not run).
pub const MAX_EXECUTABLE: u64 = 512 * 1024 * 1024;

/// Everything `exec` binds about one run of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The absolute, symlink-free path that will be executed.
    pub executable: PathBuf,
    /// SHA-256 of the executable's contents.
    pub executable_sha256: String,
    /// The working directory the child starts in.
    pub cwd: PathBuf,
    /// One entry per argument that names a regular file, by argument index.
    pub files: BTreeMap<usize, FileBinding>,
    /// The child's whole environment, name → value as bound.
    pub env: BTreeMap<String, EnvValue>,
    /// The environment the child actually gets (plain values).
    child_env: Vec<(String, String)>,
}

/// How an argument that names a file is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileBinding {
    /// Its contents hash to this.
    Sha256 {
        /// The argument as given.
        path: PathBuf,
        /// SHA-256 of the contents, hex.
        sha256: String,
    },
    /// It is larger than [`MAX_BOUND_FILE`]: its contents are not bound.
    TooLarge {
        /// The argument as given.
        path: PathBuf,
        /// Its size when the binding was taken.
        size: u64,
    },
}

/// An environment value as the binding holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// Shown and bound as is.
    Plain(String),
    /// The name looks like a secret: bound by the value's SHA-256.
    Secret {
        /// SHA-256 of the value, hex.
        sha256: String,
    },
}

impl Binding {
    /// Takes the binding of `argv` run from the current directory with the
    /// caller's environment plus `pass_env`. Fails (with a message for the
    /// user) when the executable cannot be found or read, or a named
    /// variable is not set.
    pub fn take(argv: &[String], pass_env: &[String]) -> Result<Binding, String> {
        let cwd = std::env::current_dir()
            .map_err(|e| format!("cannot read the working directory: {e}"))?;
        let vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Binding::take_in(argv, pass_env, &cwd, &vars)
    }

    /// [`Binding::take`] with the directory and environment given.
    pub fn take_in(
        argv: &[String],
        pass_env: &[String],
        cwd: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<Binding, String> {
        let program = argv.first().ok_or("no command given after `--`")?;
        let mut child_env = Vec::new();
        let mut env = BTreeMap::new();
        for name in BASE_ENV {
            if let Some(v) = vars.get(name) {
                child_env.push((name.to_owned(), v.clone()));
            }
        }
        for name in pass_env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!("--pass-env `{name}` is not a variable name"));
            }
            let value = vars
                .get(name)
                .ok_or_else(|| format!("--pass-env {name}: the variable is not set"))?;
            if !child_env.iter().any(|(k, _)| k == name) {
                child_env.push((name.clone(), value.clone()));
            }
        }
        for (k, v) in &child_env {
            let bound = if looks_secret(k) {
                EnvValue::Secret {
                    sha256: hex::encode(Sha256::digest(v.as_bytes())),
                }
            } else {
                EnvValue::Plain(v.clone())
            };
            env.insert(k.clone(), bound);
        }
        let search_path = child_env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let executable = resolve(program, cwd, search_path)?;
        let executable_sha256 = match hash_file(&executable, MAX_EXECUTABLE) {
            Ok(Hashed::Sha256(h)) => h,
            Ok(Hashed::TooLarge(size)) => {
                return Err(format!(
                    "`{}` is {size} bytes, more than the gate can bind",
                    executable.display()
                ))
            }
            Err(e) => return Err(format!("cannot read `{}`: {e}", executable.display())),
        };
        let mut files = BTreeMap::new();
        for (i, arg) in argv.iter().enumerate().skip(1) {
            if arg.is_empty() {
                continue;
            }
            let path = cwd.join(arg);
            // only regular files (following links): directories, devices and
            // missing paths are plain arguments
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {}
                _ => continue,
            }
            let bound = match hash_file(&path, MAX_BOUND_FILE) {
                Ok(Hashed::Sha256(sha256)) => FileBinding::Sha256 {
                    path: PathBuf::from(arg),
                    sha256,
                },
                Ok(Hashed::TooLarge(size)) => FileBinding::TooLarge {
                    path: PathBuf::from(arg),
                    size,
                },
                Err(e) => return Err(format!("cannot read argument file `{arg}`: {e}")),
            };
            files.insert(i, bound);
        }
        Ok(Binding {
            executable,
            executable_sha256,
            cwd: cwd.to_owned(),
            files,
            env,
            child_env,
        })
    }

    /// The environment the child gets.
    pub fn child_env(&self) -> &[(String, String)] {
        &self.child_env
    }

    /// The binding as it goes into the request's `context.exec`.
    pub fn to_context(&self) -> Value {
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|(i, f)| match f {
                FileBinding::Sha256 { path, sha256 } => json!({
                    "arg": i, "path": path.display().to_string(), "sha256": sha256,
                }),
                FileBinding::TooLarge { path, size } => json!({
                    "arg": i, "path": path.display().to_string(), "bound": false,
                    "size": size,
                    "reason": format!("larger than {MAX_BOUND_FILE} bytes: its contents are not bound"),
                }),
            })
            .collect();
        let env: Map<String, Value> = self
            .env
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    EnvValue::Plain(s) => Value::String(s.clone()),
                    EnvValue::Secret { sha256 } => json!({ "secret_sha256": sha256 }),
                };
                (k.clone(), v)
            })
            .collect();
        json!({
            "executable": self.executable.display().to_string(),
            "executable_sha256": self.executable_sha256,
            "cwd": self.cwd.display().to_string(),
            "files": files,
            "env": env,
        })
    }

    /// What differs between the binding recorded in a request
    /// (`context.exec`, as [`Binding::to_context`] wrote it) and `self`,
    /// taken right before the claim: one phrase per difference, for the
    /// message that explains a refused claim.
    pub fn differences_from(&self, approved: &Value) -> Vec<String> {
        let now = self.to_context();
        let mut out = Vec::new();
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let (was_exe, now_exe) = (text(approved, "executable"), text(&now, "executable"));
        if was_exe != now_exe {
            out.push(format!(
                "the executable now resolves to `{}`, not `{}`",
                now_exe.unwrap_or_default(),
                was_exe.unwrap_or_default()
            ));
        } else if text(approved, "executable_sha256") != text(&now, "executable_sha256") {
            out.push(format!(
                "the executable `{}` changed",
                now_exe.unwrap_or_default()
            ));
        }
        if text(approved, "cwd") != text(&now, "cwd") {
            out.push(format!(
                "the working directory is `{}`, not `{}`",
                text(&now, "cwd").unwrap_or_default(),
                text(approved, "cwd").unwrap_or_default()
            ));
        }
        let by_arg = |v: &Value| -> BTreeMap<u64, Value> {
            v.get("files")
                .and_then(Value::as_array)
                .map(|files| {
                    files
                        .iter()
                        .filter_map(|f| Some((f.get("arg")?.as_u64()?, f.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (was_files, now_files) = (by_arg(approved), by_arg(&now));
        let args: std::collections::BTreeSet<&u64> =
            was_files.keys().chain(now_files.keys()).collect();
        for i in args {
            let path = |f: &Value| text(f, "path").unwrap_or_default();
            match (was_files.get(i), now_files.get(i)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(_)) => out.push(format!("the file `{}` changed", path(a))),
                (Some(a), None) => out.push(format!(
                    "the file `{}` (argument {i}) is gone or no longer a regular file",
                    path(a)
                )),
                (None, Some(b)) => out.push(format!("argument {i} `{}` now names a file", path(b))),
                (None, None) => {}
            }
        }
        let env = |v: &Value| {
            v.get("env")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (was_env, now_env) = (env(approved), env(&now));
        let names: std::collections::BTreeSet<&String> =
            was_env.keys().chain(now_env.keys()).collect();
        for name in names {
            match (was_env.get(name), now_env.get(name)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(_), Some(_)) => out.push(format!("environment variable {name} changed")),
                (Some(_), None) => {
                    out.push(format!("environment variable {name} is no longer passed"))
                }
                (None, Some(_)) => out.push(format!("environment variable {name} is now passed")),
                (None, None) => {}
            }
        }
        out
    }
}

/// Whether a variable's value should be bound by hash rather than shown.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "CREDENTIAL",
        "PRIVATE",
        "API_KEY",
        "APIKEY",
        "_KEY",
    ]
    .iter()
    .any(|s| upper.contains(s))
        || upper.ends_with("KEY")
}

/// The absolute, symlink-free path `program` runs as: a name with a `/` is
/// taken relative to `cwd`, any other is looked up in `path` (as execvp
/// does, skipping entries that are not executable regular files).
fn resolve(program: &str, cwd: &Path, path: &str) -> Result<PathBuf, String> {
    let found = if program.contains('/') {
        Some(cwd.join(program))
    } else {
        path.split(':')
            .map(|dir| {
                if dir.is_empty() {
                    cwd.to_owned()
                } else {
                    cwd.join(dir)
                }
            })
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable_file(candidate))
    };
    let found = found.ok_or_else(|| format!("`{program}` is not found in PATH"))?;
    if !is_executable_file(&found) {
        return Err(format!("`{}` is not an executable file", found.display()));
    }
    std::fs::canonicalize(&found).map_err(|e| format!("cannot resolve `{}`: {e}", found.display()))
}

#[cfg(unix)]
fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

enum Hashed {
    Sha256(String),
    TooLarge(u64),
}

fn hash_file(path: &Path, limit: u64) -> std::io::Result<Hashed> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Ok(Hashed::TooLarge(size));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > limit {
            // it grew while we read it
            return Ok(Hashed::TooLarge(read));
        }
        hasher.update(&buf[..n]);
    }
    Ok(Hashed::Sha256(hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_rewritten_script_is_a_difference() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("job.sh"), "echo hello\n").unwrap();
        let env = vars(&[("PATH", "/usr/bin:/bin")]);
        let a = Binding::take_in(&argv(&["sh", "job.sh"]), &[], dir.path(), &env).unwrap();
        assert!(matches!(a.files.get(&1), Some(FileBinding::Sha256 { .. })));
        std::fs::write(dir.path().join("job.sh"), "rm -rf /\n").unwrap();
        let b = Binding::take_in(&argv(&["sh", "job.sh"]), &[], dir.path(), &env).unwrap();
        assert_ne!(a, b);
        let diff = b.differences_from(&a.to_context());
        assert_eq!(diff, ["the file `job.sh` changed"]);
        assert!(a.differences_from(&a.to_context()).is_empty());
        assert_ne!(a.to_context(), b.to_context());
    }

    #[test]
    fn the_environment_is_reset_and_passed_variables_are_bound() {
        let dir = tempfile::tempdir().unwrap();
        let env = vars(&[
            ("PATH", "/usr/bin:/bin"),
            ("EVIL", "DROP DATABASE prod"),
            ("SIGNOFF_TOKEN", "so_x"),
            ("PGPASSWORD", "hunter2"),
        ]);
        let plain = Binding::take_in(&argv(&["true"]), &[], dir.path(), &env).unwrap();
        let names: Vec<&str> = plain.child_env().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH"], "only the base variables reach the child");
        let passed = Binding::take_in(
            &argv(&["true"]),
            &["EVIL".into(), "PGPASSWORD".into()],
            dir.path(),
            &env,
        )
        .unwrap();
        let ctx = passed.to_context();
        assert_eq!(ctx["env"]["EVIL"], "DROP DATABASE prod", "reviewers see it");
        assert!(ctx["env"]["PGPASSWORD"]["secret_sha256"].is_string());
        assert!(
            !ctx.to_string().contains("hunter2"),
            "secrets are not shown"
        );
        let mut changed = env.clone();
        changed.insert("EVIL".into(), "something else".into());
        let later = Binding::take_in(
            &argv(&["true"]),
            &["EVIL".into(), "PGPASSWORD".into()],
            dir.path(),
            &changed,
        )
        .unwrap();
        assert_eq!(
            later.differences_from(&passed.to_context()),
            ["environment variable EVIL changed"]
        );
        assert_eq!(
            plain.differences_from(&passed.to_context()),
            [
                "environment variable EVIL is no longer passed",
                "environment variable PGPASSWORD is no longer passed"
            ]
        );
        let err =
            Binding::take_in(&argv(&["true"]), &["NOPE".into()], dir.path(), &env).unwrap_err();
        assert!(err.contains("NOPE"), "{err}");
    }

    #[test]
    fn the_executable_is_resolved_through_path_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\necho one\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let env = vars(&[("PATH", &format!("{}:/usr/bin:/bin", bin.display()))]);
        let a = Binding::take_in(&argv(&["tool"]), &[], dir.path(), &env).unwrap();
        assert_eq!(a.executable, std::fs::canonicalize(&tool).unwrap());
        std::fs::write(&tool, "#!/bin/sh\necho two\n").unwrap();
        let b = Binding::take_in(&argv(&["tool"]), &[], dir.path(), &env).unwrap();
        let diff = b.differences_from(&a.to_context());
        assert_eq!(
            diff,
            [format!(
                "the executable `{}` changed",
                a.executable.display()
            )]
        );
        let missing =
            Binding::take_in(&argv(&["no-such-tool-xyz"]), &[], dir.path(), &env).unwrap_err();
        assert!(missing.contains("not found in PATH"), "{missing}");
    }

    #[test]
    fn large_files_are_marked_unbound() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.bin");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_BOUND_FILE + 1).unwrap();
        let env = vars(&[("PATH", "/usr/bin:/bin")]);
        let b = Binding::take_in(&argv(&["cat", "big.bin"]), &[], dir.path(), &env).unwrap();
        assert!(matches!(
            b.files.get(&1),
            Some(FileBinding::TooLarge { .. })
        ));
        assert_eq!(b.to_context()["files"][0]["bound"], false);
    }

    #[test]
    fn secret_looking_names() {
        for n in [
            "PGPASSWORD",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "API_KEY",
            "SSH_KEY",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["PATH", "EVIL", "LANG", "KEYBOARD"] {
            assert!(!looks_secret(n), "{n}");
        }
    }
}
